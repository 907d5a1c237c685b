"""Recipes fail before any model loads on a bad field; training stops on non-finite numbers; checkpoints and
metrics survive a kill at any step of a checkpoint swap (the kill-anywhere runs are in test_kill_resume.py)."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.cli import app
from agentenv.errors import ConfigError
from agentenv.models import tiny_model
from agentenv.policies import WalkthroughPolicy
from agentenv.policies.checkpoint import COMPLETE, atomic_folder, recover
from agentenv.policies.rl import DivergedError, RLConfig, RLTrainer, train_sft, write_model
from agentenv.recipes.config import load_recipe
from agentenv.recipes.report import read_metrics, rewind_metrics
from agentenv.rollout import play_episode

ENV = "AgentEnv/KeyDoor-s2k0d1-v0"
TINY = {
    "name": "tiny",
    "env": {"id": ENV, "kwargs": {"max_turns": 3, "reward": "dense"}},
    "model": {"name": "tiny"},
    "sft": {"episodes": 4, "epochs": 1, "batch_size": 2},
    "rl": {
        "algorithm": "grpo",
        "iterations": 1,
        "episodes": 4,
        "group_size": 2,
        "train_tasks": 8,
        "max_new_tokens": 4,
        "num_envs": 2,
    },
    "eval": {"episodes": 1, "max_new_tokens": 4, "num_envs": 1, "before": False, "after_sft": False},
    "output": {"tensorboard": False},
}


@pytest.fixture
def no_model_loads(monkeypatch):
    """A tripwire: loading any model fails the test (validation must come first)."""
    reached = []

    def tripwire(*args, **kwargs):
        reached.append(args)
        raise AssertionError("a model was loaded before the recipe was validated")

    monkeypatch.setattr(agentenv.models, "load_model", tripwire)
    monkeypatch.setattr(agentenv.models, "tiny_model", tripwire)
    return reached


def recipe_file(tmp_path, **sections):
    path = tmp_path / "recipe.yaml"
    data = {**TINY, "output": {**TINY["output"], "dir": str(tmp_path / "run")}, **sections}
    path.write_text(yaml.safe_dump(data))
    return path


def tiny_model_folder(folder, *, nan=False):
    """The tiny model saved as a local model folder (with a NaN weight: every loss is NaN)."""
    model, tokenizer = tiny_model(seed=0)
    if nan:
        with torch.no_grad():
            model.model.norm.weight[0] = float("nan")
    write_model(model, tokenizer, folder)
    return folder


def bad_jsonl(tmp_path):
    path = tmp_path / "chats.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "look"}]}
    path.write_text(json.dumps(good) + "\n" + '{"messages": [\n')
    return path


# ---- 1. every field is checked before anything loads ------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("env.id=AgentEnv/KeyDor-s2k0d1-v0", r"env.id='AgentEnv/KeyDor-s2k0d1-v0'.*AgentEnv/KeyDoor-s2k0d1-v0"),
        ("env.kwargs.max_turn=3", r"env.kwargs.max_turn.*Did you mean 'max_turns'"),
        ("eval.harder=[AgentEnv/KeyDoor-s9k9d9-v0]", r"eval.harder\[0\]='AgentEnv/KeyDoor-s9k9d9-v0'.*KeyDoor"),
        ("model.name=/nonexistent/folder/model", r"model.name='/nonexistent/folder/model'.*does not exist"),
        ("model.name=./missing-model", r"model.name='./missing-model'.*does not exist"),
        ("model.name=not a hub id!", r"model.name='not a hub id!'.*hub id"),
        ("sft.lr=0", r"sft.lr=0.0 .*finite number > 0"),
        ("sft.lr=.inf", r"sft.lr=inf must be a finite number"),
        ("sft.lr=.nan", r"sft.lr=nan must be a finite number"),
        ("sft.max_grad_norm=.nan", r"sft.max_grad_norm=nan"),
        ("rl.lr=0", r"rl.lr=0.0 .*finite number > 0"),
        ("rl.lr=.nan", r"rl.lr=nan must be a finite number"),
        ("rl.value_lr=.inf", r"rl.value_lr=inf must be a finite number"),
        ("rl.gamma=.nan", r"rl.gamma=nan .*finite"),
        ("rl.clip=.inf", r"rl.clip=inf .*finite"),
        ("eval.temperature=.nan", r"eval.temperature=nan .*finite"),
        ("model.lora.dropout=.nan", r"model.lora.dropout=nan .*finite"),
        ("output.dir=runs/{nam}", r"output.dir='runs/\{nam\}'.*\{name\}"),
    ],
)
def test_a_bad_field_fails_at_load_naming_it(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(TINY, [override])


def test_hub_ids_and_model_folders_stay_allowed(tmp_path):
    assert load_recipe(TINY, ["model.name=HuggingFaceTB/SmolLM2-135M-Instruct"]).model.name.startswith("Hugging")
    folder = tiny_model_folder(tmp_path / "m")
    assert load_recipe(TINY, [f"model.name={folder}"]).model.name == str(folder)


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match=r"model.name=.*not a model folder.*config.json"):
        load_recipe(TINY, [f"model.name={tmp_path}"])
    with pytest.raises(ConfigError, match=r"model.name=.*not a model"):
        load_recipe(TINY, [f"model.name={tmp_path / 'notes.txt'}"])


def test_bad_json_in_sft_data_names_file_and_line(tmp_path):
    path = bad_jsonl(tmp_path)
    with pytest.raises(ConfigError, match=rf"sft.data: {path}:2: not valid JSON"):
        load_recipe(TINY, [f"sft.data={path}"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('["a list"]', "must be a JSON object with a 'messages' list"),
        ('{"text": "x"}', "must be a JSON object with a 'messages' list"),
        ('{"messages": [{"role": "user"}]}', r"messages\[0\] needs string 'role' and 'content'"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant message to learn from"),
    ],
)
def test_sft_data_records_are_checked(tmp_path, line, message):
    path = tmp_path / "chats.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=rf"sft.data: {path}:1: {message}"):
        load_recipe(TINY, [f"sft.data={path}"])


def test_an_output_folder_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker / "run", blocker):
        with pytest.raises(ConfigError, match=rf"output.dir='{out}'.*{blocker}' is a file"):
            load_recipe(TINY, [f"output.dir={out}"])


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("env.id=AgentEnv/KeyDor-s2k0d1-v0", "env.id"),
        ("env.kwargs.max_turn=3", "env.kwargs.max_turn"),
        ("env.kwargs.reward=bogus", "env.kwargs"),  # a bad value: the env says so before the model loads
        ("eval.harder=[AgentEnv/Nope-v0]", "eval.harder[0]"),
        ("model.name=/nonexistent/model", "model.name"),
        ("sft.data=BAD_JSONL", "sft.data"),
        ("output.dir=FILE/run", "output.dir"),
        ("sft.lr=.nan", "sft.lr"),
    ],
)
def test_train_refuses_a_bad_recipe_before_loading_a_model(tmp_path, no_model_loads, override, field):
    (tmp_path / "FILE").write_text("x")
    override = override.replace("BAD_JSONL", str(bad_jsonl(tmp_path))).replace("FILE", str(tmp_path / "FILE"))
    result = CliRunner().invoke(app, ["train", str(recipe_file(tmp_path)), "-s", override])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError), result.exception
    assert field in str(result.exception)
    assert not no_model_loads
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# ---- 2. non-finite numbers stop training -----------------------------------------------------------------------
def demonstrations(n=4):
    env = agentenv.make(ENV)
    chats = [play_episode(env, WalkthroughPolicy(), s).messages() for s in range(n)]
    env.close()
    return chats


def test_sft_stops_on_a_non_finite_loss_before_updating():
    model, tokenizer = tiny_model(seed=0)
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(DivergedError, match=r"sft step 1 \(epoch 1\): the loss is nan"):
        train_sft(model, demonstrations(), ChatFormat(tokenizer), batch_size=2, lr=1e-3)
    for name, p in model.named_parameters():
        assert torch.equal(p.isnan(), before[name].isnan()) and torch.equal(p.nan_to_num(), before[name].nan_to_num())


def test_sft_stops_when_a_huge_learning_rate_blows_the_loss_up():
    model, tokenizer = tiny_model(seed=0)
    with pytest.raises(DivergedError, match=r"sft step 2 \(epoch 1\): the (loss|gradient norm) is .* \(non-finite\)"):
        train_sft(model, demonstrations(), ChatFormat(tokenizer), batch_size=2, lr=3e37)  # finite, valid, absurd


def test_rl_stops_when_an_update_makes_the_weights_non_finite():
    model, tokenizer = tiny_model(seed=0)
    config = RLConfig(algorithm="grpo", episodes=4, group_size=2, max_new_tokens=4, num_envs=2, lr=1e20,
                      weight_decay=1e19)  # fmt: skip
    envs = [agentenv.make(ENV, max_turns=2, reward="dense") for _ in range(2)]
    trainer = RLTrainer(config, model, tokenizer, envs, ChatFormat(tokenizer))
    with pytest.raises(DivergedError, match=r"rl iteration 1, update step 1: the weights are non-finite"):
        trainer.iteration()
    assert trainer.iteration_done == 0


def test_train_exits_non_zero_and_writes_no_final_when_the_loss_is_nan(tmp_path):
    folder = tiny_model_folder(tmp_path / "nan-model", nan=True)
    path = recipe_file(tmp_path, model={"name": str(folder)})
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 1, result.output
    assert "sft step 1" in result.output and "non-finite" in result.output
    assert not (tmp_path / "run" / "final").exists()
    assert not (tmp_path / "run" / "checkpoints" / "sft").exists()


# ---- 3. checkpoint swaps and metrics after a kill ---------------------------------------------------------------
def checkpoint(folder, iteration, *, complete=True, files=("weights", "trainer.json")):
    """A checkpoint folder as a kill left it: all or some of its files, with or without the marker."""
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text(json.dumps({"iteration_done": iteration}))
    if complete:
        (folder / COMPLETE).write_text(json.dumps({"sequence": iteration}))


def iteration_at(path):
    return json.loads((path / "trainer.json").read_text())["iteration_done"]


@pytest.mark.parametrize(
    ("leftovers", "newest"),
    [
        ({"rl": 1}, 1),
        ({"rl": 1, "rl.tmp": (2, "partial")}, 1),  # killed while writing the new one
        ({"rl": 1, "rl.tmp": 2}, 2),  # killed after writing it, before the swap
        ({"rl.old": 1, "rl.tmp": 2}, 2),  # killed between the two renames
        ({"rl": 2, "rl.old": (1, "partial")}, 2),  # killed while deleting the old one (the case)
        ({"rl": (1, "partial"), "rl.tmp": 2}, 2),  # killed while recovery deleted an older one
        ({"rl.tmp": (1, "partial")}, None),  # killed while writing the first one
        ({"rl": 1, "rl.old": 1}, 1),
    ],
)
def test_recover_picks_the_newest_complete_checkpoint_and_clears_the_rest(tmp_path, leftovers, newest):
    for name, spec in leftovers.items():
        iteration, partial = (spec, False) if isinstance(spec, int) else (spec[0], True)
        files = ("weights",) if partial else ("weights", "trainer.json")
        checkpoint(tmp_path / name, iteration, complete=not partial, files=files)
    found = recover(tmp_path / "rl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if newest is None else ["rl"])
    if newest is None:
        assert found is None
    else:
        assert found == tmp_path / "rl" and iteration_at(found) == newest and (found / COMPLETE).exists()


def test_atomic_folder_swaps_a_complete_folder_in_and_leaves_nothing_beside(tmp_path):
    path = tmp_path / "ckpt"
    for iteration in (1, 2):
        with atomic_folder(path) as tmp:
            (tmp / "trainer.json").write_text(json.dumps({"iteration_done": iteration}))
        assert iteration_at(path) == iteration and (path / COMPLETE).exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with pytest.raises(RuntimeError), atomic_folder(path) as tmp:  # a failed write keeps the old one
        (tmp / "trainer.json").write_text("{}")
        raise RuntimeError("disk full")
    assert iteration_at(recover(path)) == 2


def test_rewind_metrics_drops_what_comes_after_the_resume_point_and_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [("eval", 0, "before"), ("sft", 1, None), ("sft", 2, None), ("rl", 1, None), ("rl", 2, None),
               ("eval", 0, "after")]  # fmt: skip
    lines = [json.dumps({"stage": s, "step": n, **({"label": label} if label else {})}) for s, n, label in records]
    path.write_text("\n".join(lines) + '\n{"stage": "rl", "st')
    rewind_metrics(path, lambda r: r.get("label", "before") == "before" and (r["stage"] != "rl" or r["step"] <= 1))
    kept = [(r["stage"], r["step"]) for r in read_metrics(path)]
    assert kept == [("eval", 0), ("sft", 1), ("sft", 2), ("rl", 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_loading_a_half_deleted_checkpoint_is_an_error_that_says_how_to_recover(tmp_path):
    model, tokenizer = tiny_model(seed=0)
    config = RLConfig(algorithm="grpo", episodes=4, group_size=2, max_new_tokens=4, num_envs=2)
    trainer = RLTrainer(config, model, tokenizer, [agentenv.make(ENV) for _ in range(2)], ChatFormat(tokenizer))
    trainer.save(tmp_path / "rl")
    (tmp_path / "rl" / COMPLETE).unlink()  # what a kill while deleting it leaves
    (tmp_path / "rl" / "trainer.json").unlink()
    with pytest.raises(ConfigError, match=r"no complete checkpoint.*recover"):
        trainer.load(tmp_path / "rl")
