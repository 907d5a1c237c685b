"""General experiment grids: axes, variants and seeds over any recipe field; shared SFT runs; parallel cells in
subprocesses and on Ray; the table with CIs over seeds; resuming after a kill (a real SIGKILL)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agentenv.cli import app
from agentenv.errors import ConfigError
from agentenv.recipes.grid import load_grid, packaged_grid, packaged_grids, plan_grid
from agentenv.recipes.grid_table import mean_ci, t95
from agentenv.recipes.report import read_metrics

TINY = {  # a random tiny model on Key-Door without distractors (as in test_grid)
    "name": "tiny",
    "env": {"id": "AgentEnv/KeyDoor-v0", "kwargs": {"size": 2, "nb_keys": 0, "nb_distractors": 0, "max_turns": 3}},
    "model": {"name": "tiny"},
    "sft": {"episodes": 3, "epochs": 1, "batch_size": 3},
    "rl": {"algorithm": "grpo", "iterations": 2, "episodes": 4, "group_size": 2, "train_tasks": 16,
           "max_new_tokens": 4, "num_envs": 4},
    "eval": {"episodes": 2, "max_new_tokens": 4, "num_envs": 2},
    "output": {"tensorboard": False, "save_final": False},
}  # fmt: skip
SWEEP = {"name": "sw", "recipe": TINY, "axes": {"rl.algorithm": ["grpo", "rloo"]}}


def test_axes_variants_and_seeds_make_the_product(tmp_path):
    grid = load_grid({**SWEEP, "variants": {"sparse": {"env.kwargs.reward": "sparse"},
                                            "dense": {"env": {"kwargs": {"reward": "dense"}}}},
                      "seeds": [0, 1], "output": str(tmp_path / "{name}")})  # fmt: skip
    cells = grid.cells()
    assert len(cells) == 8 and [c.seed for c in cells] == [0] * 4 + [1] * 4
    assert [c.point for c in cells[:4]] == [
        {"variant": v, "rl.algorithm": a} for v in ("sparse", "dense") for a in ("grpo", "rloo")
    ]
    dense_rloo = cells[3]
    assert dense_rloo.dir == tmp_path / "sw" / "dense-algorithm_rloo-s0"
    assert dense_rloo.recipe.rl.algorithm == "rloo" and dense_rloo.recipe.env.kwargs["reward"] == "dense"
    assert dense_rloo.recipe.env.kwargs["size"] == 2  # a variant merges into the base, it does not replace it
    assert dense_rloo.recipe.name == "sw-dense-algorithm_rloo-s0" and dense_rloo.recipe.output_dir == dense_rloo.dir
    # nested axes (what -s axes.rl.algorithm=[...] gives) mean the same as dotted ones
    nested = load_grid({**SWEEP, "axes": {"rl": {"algorithm": ["ppo"]}, "env.kwargs.budget_factor": [1.5, 2.0]}})
    assert nested.axes == {"rl.algorithm": ["ppo"], "env.kwargs.budget_factor": [1.5, 2.0]}
    assert [c.dir.name for c in nested.cells()] == ["algorithm_ppo-budget_factor_1.5-s0",
                                                    "algorithm_ppo-budget_factor_2-s0"]  # fmt: skip
    over = load_grid(SWEEP, ["axes.rl.algorithm=[ppo, reinforce_pp]", "seeds=[3]"])
    assert [(c.point["rl.algorithm"], c.seed) for c in over.cells()] == [("ppo", 3), ("reinforce_pp", 3)]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("axes.rl.algorithm=ppo", r"axes.rl.algorithm='ppo' must be a list of values"),
        ("axes.rl.algorithm=[]", "axes.rl.algorithm: give at least one value"),
        ("axes.rl.algorithm=[ppo, ppo]", "each value may appear once"),
        ("axes.seed=[1, 2]", "axes.seed: the grid sets seed for each cell .use seeds: for seeds"),
        ("axes.rl.algoritm=[ppo]", r"rl.algorithm=ppo|algoritm: unknown field.*Did you mean 'algorithm'"),
        ("axes.rl.algorithm=[ppo, nope]", r"rl.algorithm=nope: recipe.rl.algorithm='nope'"),
        ("fractions=[0.5]", "fractions: SFT fractions split a budget; give budget"),
        ("variants={}", "variants: give at least one named variant"),
        ("variants={'a b': {rl.lr: 1.0e-5}}", "a variant's name is a word"),
        ("variants={x: 3}", "variants.x=3 must be a mapping"),
    ],
)
def test_bad_sweeps_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_grid(SWEEP, [override])


def test_cells_that_share_an_sft_stage_train_it_once(tmp_path):
    grid = load_grid({**SWEEP, "seeds": [0, 1], "output": str(tmp_path)})
    plan = plan_grid(grid)
    shared = [r for r in plan.runs if r.dir.parent.name == "shared"]
    assert len(shared) == 2  # one per seed: grpo and rloo start from the same SFT model
    assert plan.runs[:2] == shared and all(r.recipe.rl is None and r.recipe.output.save_final for r in shared)
    for cell in plan.cells:
        mine = plan.own[cell.dir].recipe
        source = plan.sft_from[cell.dir]
        assert source in {r.dir for r in shared} and f"-s{cell.seed}-" in source.name
        assert mine.sft is None and mine.model.name == str(source / "final") and not mine.eval.before
        assert plan.before_from[cell.dir] == source
    # without sharing (or with a single cell per SFT stage) every cell runs whole
    alone = plan_grid(load_grid({**SWEEP, "share_sft": False, "output": str(tmp_path)}))
    assert [r.dir for r in alone.runs] == [c.dir for c in alone.cells] and not alone.sft_from
    assert alone.runs[0].recipe.eval.before and not alone.runs[1].recipe.eval.before  # one "before" per seed
    assert alone.before_from[alone.cells[1].dir] == alone.cells[0].dir


def test_t_intervals_by_hand():
    assert t95(1) == 12.706 and t95(11) == 2.228 and t95(40) == 1.96
    ci = mean_ci([0.5, 0.7])  # mean 0.6, sd 0.1414, half-width 12.706 * 0.1414 / sqrt(2) = 1.2706
    assert ci["mean"] == pytest.approx(0.6) and ci["ci_high"] - ci["mean"] == pytest.approx(1.2706, abs=1e-4)
    assert mean_ci([0.25])["ci_low"] is None and mean_ci([]) is None


def test_packaged_grids_validate():
    names = packaged_grids()
    assert {
        "algorithms-cpu",
        "density-cpu",
        "exploration-cpu",
        "transfer-cpu",
        "swe-reward-cpu",
        "algorithms-gpu",
    } <= set(names)
    for name in names:
        grid = load_grid(packaged_grid(name))
        assert grid.cells(), name
    assert load_grid(packaged_grid("budget")).is_budget  # the budget grid is still found by name


@pytest.mark.slow
def test_sweep_runs_in_parallel_then_skips_and_tabulates(tmp_path):
    grid_file = tmp_path / "g.yaml"
    out = tmp_path / "out"
    grid_file.write_text(yaml.safe_dump({**SWEEP, "seeds": [0, 1], "output": str(out)}))
    result = CliRunner().invoke(app, ["grid", str(grid_file), "--jobs", "2", "--threads", "1"],
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "grid.json").read_text())
    assert summary["kind"] == "sweep" and not summary["failed"]
    assert [r["point"] for r in summary["rows"]] == [{"rl.algorithm": "grpo"}, {"rl.algorithm": "rloo"}]
    for row in summary["rows"]:
        s = row["success"]["AgentEnv/KeyDoor-v0"]
        assert row["seeds"] == [0, 1] and s["episodes"] == 4 and len(s["per_seed"]) == 2
        assert s["over_seeds"]["n"] == 2 and s["over_seeds"]["ci_low"] <= s["over_seeds"]["mean"]
        assert row["gain"]["AgentEnv/KeyDoor-v0"]["n"] == 2 and row["rl_gain"]["AgentEnv/KeyDoor-v0"]["n"] == 2
    # the shared SFT run evaluated the start and the SFT model once per seed; the cells only trained RL
    shared = sorted((out / "shared").iterdir())
    assert len(shared) == 2
    for folder in shared:
        evaluations = json.loads((folder / "results.json").read_text())["evaluations"]
        assert set(evaluations) == {"before", "after"} and (folder / "final" / "config.json").exists()
    cell = out / "algorithm_rloo-s1"
    assert set(json.loads((cell / "results.json").read_text())["evaluations"]) == {"after"}
    stages = [m["stage"] for m in read_metrics(cell / "metrics.jsonl")]
    assert stages.count("rl") == 2 and "sft" not in stages
    assert (cell / "grid.log").exists()  # a subprocess cell keeps its own log
    rows = list(csv.DictReader((out / "grid.csv").open()))
    assert [(r["rl.algorithm"], r["seeds"]) for r in rows] == [("grpo", "2"), ("rloo", "2")]
    header = "| algorithm | success KeyDoor-v0 | gain vs start | RL gain vs SFT | train s |"
    assert header in (out / "grid.md").read_text()
    assert (out / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = CliRunner().invoke(app, ["grid", str(grid_file)], catch_exceptions=False)
    assert again.exit_code == 0 and again.output.count("skip") == 6  # 2 shared runs + 4 cells
    assert json.loads((out / "grid.json").read_text())["rows"] == summary["rows"]


@pytest.mark.slow
def test_a_killed_grid_resumes_where_it_stopped(tmp_path):
    recipe = {**TINY, "rl": {**TINY["rl"], "iterations": 6}, "output": {**TINY["output"], "checkpoint_every": 1}}
    grid_file = tmp_path / "g.yaml"
    out = tmp_path / "out"
    grid_file.write_text(yaml.safe_dump({**SWEEP, "recipe": recipe, "output": str(out)}))
    command = [str(Path(sys.executable).parent / "agentenv"), "grid", str(grid_file)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metrics = out / "algorithm_grpo-s0" / "metrics.jsonl"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and first.poll() is None:
        if metrics.exists() and sum(1 for m in read_metrics(metrics) if m["stage"] == "rl") >= 2:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the grid finished before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert (
        not (out / "algorithm_grpo-s0" / "results.json").exists()
        or "total (this run)" not in (out / "algorithm_grpo-s0" / "results.json").read_text()
    )
    assert not (out / "grid.json").exists()

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "skip" in second.stdout and "(resumed)" in second.stdout  # the shared SFT run was done; the cell resumed
    rl = [m for m in read_metrics(metrics) if m["stage"] == "rl"]
    assert sorted(m["step"] for m in rl) == list(range(1, 7))  # every iteration once: nothing lost or repeated
    assert not json.loads((out / "grid.json").read_text())["failed"]


@pytest.mark.slow
def test_cells_run_as_ray_tasks(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump({**SWEEP, "share_sft": False, "output": str(out)}))
    result = CliRunner().invoke(app, ["grid", str(grid_file), "--ray", "local", "--threads", "1"],
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "grid.json").read_text())
    assert not summary["failed"] and all(r["success"]["AgentEnv/KeyDoor-v0"]["episodes"] == 2 for r in summary["rows"])
    assert all((out / name / "grid.log").exists() for name in ("algorithm_grpo-s0", "algorithm_rloo-s0"))


def test_threads_apply_to_cells_run_one_at_a_time_in_this_process(tmp_path):
    import torch

    recipe = {**TINY, "sft": None, "rl": {**TINY["rl"], "iterations": 1}}
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump({**SWEEP, "recipe": recipe, "axes": {"rl.algorithm": ["grpo"]},
                                         "output": str(tmp_path / "out")}))  # fmt: skip
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, ["grid", str(grid_file), "--threads", "1"], catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert "torch threads: 1 (as asked)" in result.output
    cell = json.loads((tmp_path / "out" / "algorithm_grpo-s0" / "recipe.json").read_text())
    assert cell["model"]["num_threads"] == 1
