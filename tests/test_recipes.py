"""Recipes: validation with field names, overrides, and whole runs (tiny model) through `agentenv train`."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentenv.cli import app
from agentenv.errors import ConfigError
from agentenv.recipes.config import load_recipe, packaged_recipe, parse_overrides
from agentenv.recipes.report import read_metrics

TINY = {
    "name": "tiny",
    "env": {"id": "AgentEnv/KeyDoor-s2k0d1-v0", "kwargs": {"max_turns": 3, "reward": "dense"}},
    "model": {"name": "tiny"},
    "sft": {"episodes": 6, "epochs": 1, "batch_size": 3},
    "rl": {
        "algorithm": "grpo",
        "iterations": 2,
        "episodes": 4,
        "group_size": 2,
        "train_tasks": 16,
        "max_new_tokens": 5,
        "num_envs": 4,
    },
    "eval": {"episodes": 3, "max_new_tokens": 5, "num_envs": 3, "harder": ["AgentEnv/KeyDoor-s3k1d2-v0"]},
}


@pytest.mark.parametrize("path", sorted(Path(packaged_recipe("demo")).parent.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_packaged_recipe_validates(path):
    import yaml

    import agentenv

    data = yaml.safe_load(path.read_text())
    if "fractions" in data:
        pytest.skip("a budget grid, not a recipe (tests/test_grid.py validates it)")
    if "paper" in data and "findings" in data:
        pytest.skip("the seed paper's numbers, not a recipe (tests/test_findings.py reads them)")
    recipe = load_recipe(path)
    if recipe.selfplay is not None:
        agentenv.registry.multi_spec(recipe.env.id)  # a registered multi-agent game
        return
    for env_id in [recipe.env.id, *recipe.eval.harder]:
        agentenv.registry.resolve_id(env_id)  # registered ids only


def test_packaged_demo_recipe_is_valid():
    recipe = load_recipe(packaged_recipe("demo"))
    assert recipe.sft is not None and recipe.rl is not None and recipe.rl.algorithm == "ppo"
    assert recipe.env.id.startswith("AgentEnv/TextWorld")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rl.algoritm=ppo", "rl.algoritm: unknown field.*Did you mean 'algorithm'"),
        ("rl.algorithm=ppoo", "rl.algorithm='ppoo' is not allowed.*Did you mean 'ppo'"),
        ("rl.iterations=two", "rl.iterations='two' must be int"),
        ("sft.lr=-1", "sft.lr=-1.0 is out of range"),
        ("eval.harder=AgentEnv/X", "eval.harder='AgentEnv/X' must be a list"),
        ("rl.episodes=5", "rl.episodes=5 must be a multiple of group_size=2"),
        ("model.lora.r=0", "model.lora.r=0 is out of range"),
        ("sft.data=/nonexistent.jsonl", "no such file"),
        ("nonsense", "must look like section.field=value"),
        ("model.engine=vlm", "model.engine='vlm' is not allowed.*Did you mean 'vllm'"),
        ("rl.tis_cap=0.5", "rl.tis_cap=0.5 is out of range"),
    ],
)
def test_bad_fields_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(TINY, [override])


def test_overrides_parse_yaml_scalars_and_nest():
    assert parse_overrides(["rl.lr=1e-5", "env.kwargs.reward=dense", "eval.before=false"]) == {
        "rl": {"lr": 1e-5}, "env": {"kwargs": {"reward": "dense"}}, "eval": {"before": False}
    }  # fmt: skip
    recipe = load_recipe(TINY, ["rl.iterations=5", "env.kwargs.max_turns=2", "sft=null"])
    assert recipe.rl.iterations == 5 and recipe.env.kwargs == {"max_turns": 2, "reward": "dense"}
    assert recipe.sft is None
    assert load_recipe(TINY, ["rl.lr=1e-5"]).rl.lr == 1e-5  # YAML 1.1 would read a string


def test_yaml_floats_without_a_dot(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("rl: {lr: 3e-6, algorithm: rloo, group_size: 2, episodes: 4}\nsft: null\n")
    assert load_recipe(path).rl.lr == 3e-6


def test_a_recipe_needs_something_to_train():
    with pytest.raises(ConfigError, match="'sft' section, an 'rl' section"):
        load_recipe(TINY, ["sft=null", "rl=null"])


def test_missing_or_malformed_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)


@pytest.mark.slow
def test_train_runs_every_stage_and_resume_continues(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump({**TINY, "output": {"dir": str(tmp_path / "run")}}))
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(recipe), "-s", "rl.iterations=1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    results = json.loads((out / "results.json").read_text())
    labels = set(results["evaluations"])
    assert labels == {"before", "before KeyDoor-s3k1d2-v0", "after SFT", "after SFT KeyDoor-s3k1d2-v0", "after",
                      "after KeyDoor-s3k1d2-v0"}  # fmt: skip
    assert all(s["episodes"] == 3 for s in results["evaluations"].values())
    for name in ("report.html", "curves.png", "final/config.json", "checkpoints/rl/trainer.json", "eval/after.jsonl"):
        assert (out / name).exists(), name
    stages = [m["stage"] for m in read_metrics(out / "metrics.jsonl")]
    assert stages.count("sft") == 2 and stages.count("rl") == 1  # 6 demos / batch 3, 1 epoch; one iteration

    # the same folder again without --resume refuses to overwrite it
    again = runner.invoke(app, ["train", str(recipe)])
    assert again.exit_code != 0 and "--resume" in str(again.exception)

    # resume with one more iteration: RL continues from its checkpoint, SFT and the first evaluation are not redone
    result = runner.invoke(app, ["train", str(recipe), "--resume", "-s", "rl.iterations=2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "resumed RL after iteration 1" in result.output
    metrics = read_metrics(out / "metrics.jsonl")
    assert [m["step"] for m in metrics if m["stage"] == "rl"] == [1, 2]
    assert [m["stage"] for m in metrics].count("sft") == 2
    assert json.loads((out / "checkpoints/rl/trainer.json").read_text())["iteration_done"] == 2


def test_a_recipe_reorders_its_stages_and_adds_its_own(tmp_path):
    from agentenv.recipes import run as recipe_run

    seen = []

    @recipe_run.register_stage("probe")
    def probe(run):  # an extra evaluation between SFT and RL, under its own label
        seen.append(run.trainer)
        run.run_eval("probe", run.recipe.env.id)

    try:
        recipe = load_recipe({**TINY, "output": {"dir": str(tmp_path / "run")}},
                             ["rl.iterations=1", "eval.harder=[]", "stages=[sft,probe,rl,finish]"])  # fmt: skip
        results = recipe_run.run_recipe(recipe)
    finally:
        recipe_run._STAGES.pop("probe")
    assert seen == [None]  # it ran before the RL stage made a trainer
    assert set(results["evaluations"]) == {"after SFT", "probe"}  # no 'before' or 'after': they were left out
    assert results["evaluations"]["probe"]["episodes"] == 3 and (tmp_path / "run" / "final" / "config.json").exists()
    with pytest.raises(ConfigError, match=r"stages='probe' is not allowed"):
        load_recipe(TINY, ["stages=[sft,probe]"])  # unregistered again


def test_the_vllm_engine_is_refused_by_name_where_vllm_is_not_installed():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        recipe = load_recipe(TINY, ["model.engine=vllm", "rl.tis_cap=2"])
        assert recipe.model.engine == "vllm" and recipe.rl.tis_cap == 2
        return
    with pytest.raises(ConfigError, match=r"model.engine='vllm' needs vllm.*agentenv\[gpu\].*test-vllm"):
        load_recipe(TINY, ["model.engine=vllm"])


def test_gradient_checkpointing_is_a_model_field_that_the_loaded_model_gets():
    from agentenv.recipes.run import load_policy_model

    with pytest.raises(ConfigError, match=r"model\.gradient_checkpointing='always' must be bool"):
        load_recipe(TINY, ["model.gradient_checkpointing=always"])
    assert load_recipe(TINY).model.gradient_checkpointing is False
    for on in (True, False):
        model = load_policy_model(load_recipe(TINY, [f"model.gradient_checkpointing={on}"]))[0]
        layers = [m for m in model.modules() if m.__class__.__name__.endswith("DecoderLayer")]
        assert layers and all(layer.gradient_checkpointing is on for layer in layers)
