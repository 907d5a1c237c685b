"""``agentenv report``: the seed paper's numbers as data, our grids mapped onto its arms, and the verdicts."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from agentenv.cli import app
from agentenv.recipes.findings import FINDINGS, Arm, Group, arm_name, compare, difference, paper_data, verdict
from agentenv.recipes.grid import load_grid, packaged_grid, packaged_grids


def test_paper_data_names_a_source_for_every_finding_and_orders_only_its_arms():
    data = paper_data()
    assert data["paper"]["arxiv"] == "2510.01132"
    for name in FINDINGS:
        finding = data["findings"][name]
        assert finding["claim"] and finding["source"].split()[0] in ("Table", "Tables")
        arms = {str(a["arm"]) for a in finding["arms"]}
        for group in finding["order"]:
            assert {str(a) for tier in group["order"] for a in tier} <= arms, (name, group["within"])
    values = {a["arm"]: a["paper"] for a in data["findings"]["algorithms"]["arms"]}
    assert values == {"ppo": 88.0, "rloo": 51.0, "grpo": 18.0, "reinforce_pp": 18.0}  # Table 10
    swe = {a["arm"]: a["paper"] for a in data["findings"]["swe_reward"]["arms"]}
    assert swe["ratio"] == 22.0 and swe["binary"] == 4.2  # Table 12
    budget = {a["arm"]: (a["paper"], a["harder"]) for a in data["findings"]["budget"]["arms"]}
    assert budget["demos60-episodes400"] == (85.0, 59.0)  # Table 9


def test_every_shipped_findings_grid_maps_its_rows_onto_the_papers_arms():
    data = paper_data()
    for scale in ("-cpu", "-gpu"):  # a CPU-scale and a 1-GPU grid for every finding
        names = [n for n in packaged_grids() if n.endswith(scale)]
        assert {load_grid(packaged_grid(n)).finding for n in names} == set(FINDINGS)
    for name in [n for n in packaged_grids() if n.endswith(("-cpu", "-gpu"))]:
        grid = load_grid(packaged_grid(name))
        if grid.finding == "transfer":
            assert set(grid.variants) == {"simple", "direct"}
            continue
        arms = {str(a["arm"]) for a in data["findings"][grid.finding]["arms"]}
        ours = {arm_name(grid.finding, point) for point in grid.points()}
        assert ours <= arms, (name, ours - arms)  # every row is one of the paper's arms
        assert len(ours) >= 2


def _group(order, **arms):
    return Group("all", order, {k: Arm(k, s, n, "env") for k, (s, n) in arms.items()})


def test_pairs_and_verdicts_by_hand():
    a, b = Arm("a", 30, 40, "e"), Arm("b", 10, 40, "e")
    diff, low, high, paired = difference(a, b)
    assert diff == pytest.approx(0.5) and not paired
    # Agresti-Caffo: (31/42, 11/42); half-width 1.96 * sqrt(.7381*.2619/42 + .2619*.7381/42) = 0.1882
    assert high - diff == pytest.approx(0.1882, abs=1e-3) and low > 0

    clear = compare(_group([["ppo"], ["rloo"], ["grpo", "reinforce_pp"]], ppo=(30, 32), rloo=(18, 32),
                           grpo=(3, 32), reinforce_pp=(4, 32)))  # fmt: skip
    assert [(p["a"], p["expected"], p["b"]) for p in clear] == [
        ("ppo", ">", "rloo"), ("ppo", ">", "grpo"), ("ppo", ">", "reinforce_pp"), ("rloo", ">", "grpo"),
        ("rloo", ">", "reinforce_pp"), ("grpo", "≈", "reinforce_pp"),
    ]  # fmt: skip
    assert verdict(clear)[0] == "reproduced"

    noisy = compare(_group([["ppo"], ["rloo"]], ppo=(17, 32), rloo=(15, 32)))
    assert noisy[0]["outcome"] == "same direction, within noise"
    assert verdict(noisy) == ("not at this scale", "1 of 1 ranked pairs go the paper's way, 0 beyond noise; the "
                              "paper's ordering of point estimates holds")  # fmt: skip
    flipped = compare(_group([["ppo"], ["rloo"]], ppo=(2, 32), rloo=(28, 32)))
    assert flipped[0]["outcome"] == "opposite" and verdict(flipped)[0] == "opposite"
    tie_broken = compare(
        _group([["grpo", "reinforce_pp"], ["base"]], grpo=(30, 32), reinforce_pp=(2, 32), base=(0, 32))
    )
    assert [p["outcome"] for p in tie_broken] == ["differs", "holds", "same direction, within noise"]
    assert verdict(tie_broken)[0] == "not at this scale"  # a broken tie is not a reproduction


def test_arms_with_outcomes_on_the_same_tasks_compare_paired():
    tasks = [f"0/{t}" for t in range(32)]
    # b solves tasks 0-15; a solves the same 16 and 5 more: as independent proportions 21/32 vs 16/32 is noise.
    a = Arm("a", 21, 32, "e", outcomes={t: i < 21 for i, t in enumerate(tasks)})
    b = Arm("b", 16, 32, "e", outcomes={t: i < 16 for i, t in enumerate(tasks)})
    unpaired = compare(_group([["a"], ["b"]], a=(21, 32), b=(16, 32)))[0]
    assert unpaired["outcome"] == "same direction, within noise" and not unpaired["paired"]
    pair = compare(Group("all", [["a"], ["b"]], {"a": a, "b": b}))[0]
    assert pair["paired"] and pair["outcome"] == "holds" and pair["diff"] == pytest.approx(5 / 32)
    # the same rates with a different task solved by each: no paired evidence of more than noise
    swapped = Arm("a", 21, 32, "e", outcomes={t: i >= 11 for i, t in enumerate(tasks)})
    mixed = compare(Group("all", [["a"], ["b"]], {"a": swapped, "b": b}))[0]
    assert mixed["paired"] and mixed["outcome"] == "same direction, within noise"
    # other tasks (another seed): compared as independent proportions
    elsewhere = Arm("a", 21, 32, "e", outcomes={f"1/{i}": i < 21 for i in range(32)})
    assert not compare(Group("all", [["a"], ["b"]], {"a": elsewhere, "b": b}))[0]["paired"]


def test_arm_names():
    assert arm_name("algorithms", {"rl.algorithm": "reinforce_pp"}) == "reinforce_pp"
    assert arm_name("density", {"variant": "dense", "rl.algorithm": "rloo"}) == "rloo-dense"
    assert arm_name("exploration", {"env.kwargs.budget_factor": 2}) == "2.0"
    assert arm_name("budget", {"fraction": 0.6}) == "demos60-episodes400"
    assert arm_name("budget", {"fraction": 0.0}) == "demos0-episodes1000"


TINY = {  # a random tiny model on Key-Door (as in test_grid_sweep)
    "name": "tiny",
    "env": {"id": "AgentEnv/KeyDoor-v0", "kwargs": {"size": 2, "nb_keys": 0, "nb_distractors": 0, "max_turns": 3}},
    "model": {"name": "tiny"},
    "sft": {"episodes": 3, "epochs": 1, "batch_size": 3},
    "rl": {"algorithm": "grpo", "iterations": 1, "episodes": 4, "group_size": 2, "train_tasks": 16,
           "max_new_tokens": 4, "num_envs": 4},
    "eval": {"episodes": 4, "max_new_tokens": 4, "num_envs": 4},
    "output": {"tensorboard": False, "save_final": False},
}  # fmt: skip


@pytest.mark.slow
def test_report_sets_a_real_grid_beside_the_paper(tmp_path):
    grid_file = tmp_path / "g.yaml"
    grid = {"name": "alg", "finding": "algorithms", "recipe": TINY, "axes": {"rl.algorithm": ["ppo", "grpo"]},
            "output": str(tmp_path / "runs" / "{name}")}  # fmt: skip
    grid_file.write_text(yaml.safe_dump(grid))
    runner = CliRunner()
    assert runner.invoke(app, ["grid", str(grid_file)], catch_exceptions=False).exit_code == 0
    result = runner.invoke(app, ["report", str(tmp_path / "runs")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "runs" / "report.json").read_text())
    by_name = {f["finding"]: f for f in report["findings"]}
    assert [f["finding"] for f in report["findings"]] == list(FINDINGS)
    alg = by_name["algorithms"]
    assert alg["verdict"] in ("reproduced", "not at this scale", "opposite") and alg["grid"] == "alg"
    assert {a["name"]: a["paper"] for a in alg["arms"]} == {"ppo": 88.0, "grpo": 18.0}
    assert all(a["episodes"] == 4 for a in alg["arms"])
    grid_json = json.loads((tmp_path / "runs" / "alg" / "grid.json").read_text())
    rates = {r["point"]["rl.algorithm"]: r["success"]["AgentEnv/KeyDoor-v0"]["success_rate"] for r in grid_json["rows"]}
    assert {a["name"]: a["rate"] for a in alg["arms"]} == rates  # the report reads the grid's own numbers
    # every cell played the same 4 test tasks, so the rows carry each task's outcome and the pairs compare paired
    outcomes = [r["success"]["AgentEnv/KeyDoor-v0"]["outcomes"] for r in grid_json["rows"]]
    assert [sorted(o) for o in outcomes] == [["0/0", "0/1", "0/2", "0/3"]] * 2
    assert alg["pairs"] and all(p["paired"] for p in alg["pairs"])
    for row in grid_json["rows"]:  # RL's gain over the shared SFT start, paired over the same 4 tasks
        paired = row["rl_gain"]["AgentEnv/KeyDoor-v0"]["paired"]
        assert paired["n"] == 4 and paired["difference"] == pytest.approx(row["rl_gain"]["AgentEnv/KeyDoor-v0"]["mean"])
    assert "paired |" in (tmp_path / "runs" / "alg" / "grid.md").read_text()
    assert [(p["a"], p["expected"], p["b"]) for p in alg["pairs"]] == [("ppo", ">", "grpo")]
    assert all(by_name[n]["verdict"] == "not run" for n in FINDINGS if n != "algorithms")
    text = (tmp_path / "runs" / "report.md").read_text()
    assert "## algorithms:" in text and "Table 10" in text and "| all | ppo | 88.0% |" in text
    page = (tmp_path / "runs" / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page
    assert (tmp_path / "runs" / "report_algorithms.png").read_bytes()[:4] == b"\x89PNG"


def test_orderings_name_their_group_where_a_finding_has_several():
    from agentenv.recipes.findings_report import finding_markdown

    def arms(s_a, s_b):
        return {"a": Arm("a", s_a, 32, "e"), "b": Arm("b", s_b, 32, "e")}

    pairs = compare(Group("in-domain", [["a"], ["b"]], arms(20, 10))) + compare(
        Group("harder", [["a"], ["b"]], arms(10, 20))
    )
    assert [p["within"] for p in pairs] == ["in-domain", "harder"]
    finding = {"finding": "x", "verdict": "not at this scale", "source": "T", "claim": "c", "setting": "s",
               "envs": ["AgentEnv/E"], "failed": 0, "grid": "g", "grid_path": "p", "model": "m", "seeds": [0],
               "arms": [], "pairs": pairs, "why": "w"}  # fmt: skip
    lines = [line for line in finding_markdown(finding) if line.startswith("- ")]
    assert lines[0].startswith("- in-domain: a > b: ours +31.2 points") and lines[0].endswith("holds")
    assert lines[1].startswith("- harder: a > b: ours -31.2 points") and lines[1].endswith("opposite")
    one = dict(finding, pairs=pairs[:1])
    assert next(line for line in finding_markdown(one) if line.startswith("- ")).startswith("- a > b: ours")
