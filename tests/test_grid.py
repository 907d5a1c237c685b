"""Budget grids: the SFT:RL cost model, validation naming fields, and a whole grid (tiny model) via `agentenv grid`."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from agentenv.cli import app
from agentenv.errors import ConfigError
from agentenv.recipes.grid import cost_split, load_grid, packaged_grid
from agentenv.recipes.report import read_metrics

TINY = {  # a random tiny model (as in test_recipes) on Key-Door without distractors; harder: with one, 12 turns
    "name": "tiny",
    "env": {"id": "AgentEnv/KeyDoor-v0", "kwargs": {"size": 2, "nb_keys": 0, "nb_distractors": 0, "max_turns": 4,
                                                     "reward": "dense"}},
    "model": {"name": "tiny"},
    "sft": {"episodes": 6, "epochs": 1, "batch_size": 3},
    "rl": {"algorithm": "grpo", "iterations": 2, "episodes": 4, "group_size": 2, "train_tasks": 16,
           "max_new_tokens": 5, "num_envs": 4},
    "eval": {"episodes": 3, "max_new_tokens": 5, "num_envs": 3, "harder": ["AgentEnv/KeyDoor-s2k0d1-v0"]},
}  # fmt: skip
GRID = {"name": "g", "recipe": TINY, "budget": 8, "sft_cost": 2, "fractions": [0, 0.5, 1]}


def test_cost_split_by_hand():
    assert cost_split(0.0, 256, 1, 16) == (0, 16)  # all RL: 256 episodes = 16 iterations of 16
    assert cost_split(1.0, 256, 2, 16) == (128, 0)  # all SFT: a demo costs 2 episodes
    assert cost_split(0.25, 256, 2, 16) == (32, 12)  # 64 episodes buy 32 demos; 192 episodes = 12 iterations
    assert cost_split(0.5, 100, 1, 16) == (50, 3)  # 50 / 16 = 3.125 iterations -> 3
    assert cost_split(0.5, 5, 1, 5) == (3, 1)  # halves round up: 2.5 demos -> 3, 0.5 iterations -> 1
    assert cost_split(0.3, 10, 3, 4) == (1, 2)  # 1 demo (3 episodes), 7 / 4 = 1.75 iterations -> 2


def test_cells_set_sft_and_rl_sections_per_fraction(tmp_path):
    grid = load_grid({**GRID, "seeds": [3, 4], "output": str(tmp_path / "{name}")})
    cells = grid.cells()
    assert [(c.fraction, c.seed) for c in cells] == [(0, 3), (0.5, 3), (1, 3), (0, 4), (0.5, 4), (1, 4)]
    assert [(c.sft_demos, c.rl_iterations, c.rl_episodes) for c in cells[:3]] == [(0, 2, 8), (2, 1, 4), (4, 0, 0)]
    all_rl, mixed, all_sft = (c.recipe for c in cells[:3])
    assert all_rl.sft is None and all_rl.rl.iterations == 2
    assert mixed.sft.episodes == 2 and mixed.rl.iterations == 1 and mixed.sft.epochs == TINY["sft"]["epochs"]
    assert all_sft.rl is None and all_sft.sft.episodes == 4
    assert cells[4].dir == tmp_path / "g" / "f0.5-s4" and cells[4].recipe.output_dir == cells[4].dir
    assert cells[4].recipe.seed == 4 and cells[4].recipe.name == "g-f0.5-s4"
    assert load_grid(GRID).cells()[0].seed == 0  # no seeds: the base recipe's


def test_packaged_budget_grid_is_valid():
    grid = load_grid(packaged_grid("budget"))
    assert grid.recipe["env"]["id"] == "AgentEnv/TextWorld-w1o1q1-v0"
    assert grid.recipe["eval"]["harder"] == ["AgentEnv/TextWorld-w2o2q2-v0"]
    cells = grid.cells()
    assert [c.fraction for c in cells] == [0, 0.25, 0.5, 0.75, 1.0]
    assert all(c.sft_demos * grid.sft_cost + c.rl_episodes == grid.budget for c in cells)
    assert cells[0].recipe.model.name == "default" and cells[0].recipe.rl.algorithm == "ppo"
    # a packaged recipe by name as the base, and overrides reaching into it
    grid = load_grid(packaged_grid("budget"), ["recipe=demo", "recipe.rl.episodes=32", "fractions=[0.5]"])
    assert grid.recipe["name"] == "demo" and [(c.sft_demos, c.rl_iterations) for c in grid.cells()] == [(64, 2)]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("budgt=3", "budgt: unknown field.*Did you mean 'budget'"),
        ("budget=0", "budget=0.0 must be positive"),
        ("sft_cost=-1", "sft_cost=-1.0 is out of range"),
        ("fractions=[0.5, 1.5]", r"fractions\[1\]=1.5 is out of range"),
        ("fractions=[]", "fractions: give at least one"),
        ("fractions=[0.5, 0.5]", "each fraction may appear once"),
        ("fractions=half", "fractions='half' must be a list"),
        ("seeds=[0, -1]", r"seeds\[1\]=-1 is out of range"),
        ("budget=1", r"fractions\[0\]=0: budget=1 buys 0 SFT demonstrations .* and 0 RL iterations"),
        ("recipe.rl.algoritm=ppo", "recipe.rl.algoritm: unknown field.*Did you mean 'algorithm'"),
        ("recipe.eval.episodes=0", "recipe.eval.episodes=0 is out of range"),
        ("recipe.rl=null", "recipe.rl: the base recipe needs an rl section"),
        ("recipe=nonexistent", "recipe='nonexistent' is not allowed"),
        ("name=a/b", "name='a/b' must be a non-empty name"),
    ],
)
def test_bad_fields_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_grid(GRID, [override])


def test_sft_data_and_missing_files_are_refused(tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text("")
    with pytest.raises(ConfigError, match=r"recipe\.sft\.data: a budget grid counts walkthrough demonstrations"):
        load_grid(GRID, [f"recipe.sft.data={data}"])
    with pytest.raises(ConfigError, match="not found"):
        load_grid(tmp_path / "nope.yaml")


@pytest.mark.slow
def test_grid_runs_every_cell_then_skips_finished_ones(tmp_path):
    evaluation = {**TINY["eval"], "episodes": 2, "num_envs": 2, "after_sft": False}
    recipe = {**TINY, "eval": evaluation, "output": {"tensorboard": False, "save_final": False}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    grid_file = tmp_path / "grid.yaml"
    out = tmp_path / "out"
    grid_file.write_text(yaml.safe_dump({**GRID, "recipe": "tiny.yaml", "output": str(out)}))  # next to the grid
    runner = CliRunner()
    result = runner.invoke(app, ["grid", str(grid_file)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "table:" in result.output and "cost" in result.output and "skip" not in result.output

    summary = json.loads((out / "grid.json").read_text())
    envs = ["AgentEnv/KeyDoor-v0", "AgentEnv/KeyDoor-s2k0d1-v0"]
    assert summary["envs"] == envs and summary["budget"] == 8 and summary["sft_cost"] == 2
    rows = summary["rows"]
    split = [(r["point"]["fraction"], r["sft_demos"], r["rl_iterations"], r["rl_episodes"], r["cost"]) for r in rows]
    assert split == [
        (0, 0, 2, 8, 8), (0.5, 2, 1, 4, 8), (1, 4, 0, 0, 8)
    ]  # fmt: skip
    for r in rows:
        for env in envs:
            s = r["success"][env]
            assert s["episodes"] == 2 and s["success_ci_low"] <= s["success_rate"] <= s["success_ci_high"]
    assert set(summary["before"]) == set(envs) and summary["before"][envs[0]]["episodes"] == 2
    assert not any(c["skipped"] for c in summary["cells"])

    # the starting model was evaluated once, in the first cell; each cell trained only what its share bought
    labels = {f: set(json.loads((out / f / "results.json").read_text())["evaluations"]) for f in ("f0-s0", "f0.5-s0")}
    assert labels["f0-s0"] == {"before", "before KeyDoor-s2k0d1-v0", "after", "after KeyDoor-s2k0d1-v0"}
    assert labels["f0.5-s0"] == {"after", "after KeyDoor-s2k0d1-v0"}
    stages = {f: [m["stage"] for m in read_metrics(out / f / "metrics.jsonl")] for f in ("f0-s0", "f0.5-s0", "f1-s0")}
    assert stages["f0-s0"].count("rl") == 2 and "sft" not in stages["f0-s0"]
    assert stages["f0.5-s0"].count("rl") == 1 and stages["f0.5-s0"].count("sft") == 1  # 2 demos, batch 3
    assert "rl" not in stages["f1-s0"] and not (out / "f1-s0" / "checkpoints" / "rl").exists()

    table = (out / "grid.md").read_text()
    assert "| SFT fraction | SFT demos | RL episodes | cost | success KeyDoor-v0 |" in table
    assert "| 0.5 | 2 | 4 | 8 |" in table and "| before | - | - | - |" in table
    assert (out / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # again: every cell is finished, so nothing runs and the table is the same
    sizes = {f: (out / f / "metrics.jsonl").stat().st_size for f in ("f0-s0", "f0.5-s0", "f1-s0")}
    result = runner.invoke(app, ["grid", str(grid_file)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("skip") == 3
    again = json.loads((out / "grid.json").read_text())
    assert all(c["skipped"] for c in again["cells"]) and again["rows"] == rows
    assert {f: (out / f / "metrics.jsonl").stat().st_size for f in sizes} == sizes

    # a changed recipe does not silently reuse cells trained under the old one
    result = runner.invoke(app, ["grid", str(grid_file), "-s", "recipe.sft.epochs=2"])
    assert isinstance(result.exception, ConfigError) and "different recipe" in str(result.exception)
