"""Kill a real training run (a subprocess) at every step of its checkpoint swaps, resume it with ``--resume`` until it
finishes, and get the weights and metrics of a run that was never stopped.

The kills are deterministic: ``$AGENTENV_CRASH_AT`` makes the process SIGKILL itself at a named crash point
(:func:`agentenv.policies.checkpoint.crash_point`), so every phase of a swap, of recovery and of the metrics rewind is
hit, each from the state the previous kill left.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from agentenv.policies.checkpoint import CRASH_AT, CRASH_LOG
from agentenv.recipes.report import read_metrics

RECIPE = {
    "name": "kill",
    "env": {
        "id": "AgentEnv/KeyDoor-s2k0d1-v0",
        "kwargs": {"max_turns": 3, "reward": "dense", "invalid_action_penalty": 0.5},
    },
    "model": {"name": "tiny", "num_threads": 1},
    "sft": {"episodes": 4, "epochs": 1, "batch_size": 2},
    "rl": {
        "algorithm": "ppo",  # a value head and its optimiser state to resume too; every update moves the weights
        "iterations": 5,
        "episodes": 4,
        "group_size": 1,
        "lr": 1e-3,
        "train_tasks": 8,
        "max_new_tokens": 4,
        "num_envs": 2,
    },
    "eval": {"episodes": 1, "max_new_tokens": 4, "num_envs": 1, "before": False, "after_sft": True},
    "output": {"tensorboard": False},
}

# Where each process of the chain kills itself, and the state that leaves for the next one (S: the SFT checkpoint,
# Rn: the RL checkpoint after iteration n, F: final/). Counts are per process.
KILLS = [
    "checkpoint.written:1",  # S half written
    "recover.deleting:1",  # while recovery deletes it
    "metrics.rewound:1",  # metrics.jsonl.tmp written, not renamed
    "checkpoint.marked:1",  # S complete in sft.tmp only
    "recover.renamed:1",  # recovery renamed it into place
    "checkpoint.started:1",  # RL iteration 1 logged, R1 not written
    "checkpoint.swapped:1",  # R1 in place
    "checkpoint.deleting-old:1",  # R2 in place, R1 half deleted in rl.old (the case that lost a run)
    "checkpoint.marked:1",  # R2, and R3 complete in rl.tmp
    "recover.clearing:1",  # R2 half deleted by recovery, R3 in rl.tmp
    "recover.renamed:1",  # R3 in place
    "checkpoint.moved-old:1",  # R3 in rl.old, R4 in rl.tmp, nothing at rl
    "checkpoint.written:1",  # R4, R5 half written
    "checkpoint.done:1",  # R5 done, final evaluation not run
    "checkpoint.started:1",  # final evaluation logged, F not written
    "checkpoint.swapped:1",  # F in place
    "checkpoint.deleting-old:1",  # F rewritten, the old one half deleted
    "checkpoint.moved-old:1",  # F in final.old and final.tmp
    "recover.renamed:1",  # F renamed into place, final.old left
    "3",  # the third crash point of any name
]
PHASES = {
    "checkpoint.started", "checkpoint.written", "checkpoint.marked", "checkpoint.moved-old", "checkpoint.swapped",
    "checkpoint.deleting-old", "checkpoint.done", "recover.clearing", "recover.renamed", "recover.deleting",
    "metrics.rewound",
}  # fmt: skip
TIMING = {"time", "seconds", "rollout_seconds"}


def train(recipe, *, resume=False, crash_at=None, log=None):
    env = {k: v for k, v in os.environ.items() if k not in (CRASH_AT, CRASH_LOG)}
    if crash_at is not None:
        env[CRASH_AT] = crash_at
    if log is not None:
        env[CRASH_LOG] = str(log)
    command = [sys.executable, "-m", "agentenv.cli", "train", str(recipe), *(["--resume"] if resume else [])]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def recipe_file(folder, **overrides):
    folder.mkdir(parents=True, exist_ok=True)
    data = {**RECIPE, "output": {**RECIPE["output"], "dir": str(folder / "run")}}
    data["rl"] = {**data["rl"], **overrides}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def weights(folder):
    return load_file(folder / "model.safetensors")


def assert_same_weights(a, b):
    left, right = weights(a), weights(b)
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), name


def steps(run):
    """metrics.jsonl as (stage, step, label) keys and records without timings."""
    records = read_metrics(run / "metrics.jsonl")
    keys = [(r["stage"], r["step"], r.get("label")) for r in records]
    return keys, [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def leftovers(run):
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.name.endswith((".tmp", ".old")))


def test_a_kill_while_the_old_checkpoint_is_deleted_resumes_from_the_new_one(tmp_path):
    path = recipe_file(tmp_path, iterations=3)
    killed = train(path, crash_at="checkpoint.deleting-old:1")  # R2's swap: R2 in place, R1 half deleted
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    run = tmp_path / "run"
    assert (run / "checkpoints" / "rl.old").exists()
    resumed = train(path, resume=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed RL after iteration 2" in resumed.stdout
    keys, _ = steps(run)
    assert [step for stage, step, _ in keys if stage == "rl"] == [1, 2, 3]
    assert json.loads((run / "checkpoints" / "rl" / "trainer.json").read_text())["iteration_done"] == 3
    assert leftovers(run) == []


@pytest.mark.slow
def test_killed_at_every_step_of_every_swap_resumes_to_the_same_weights_and_metrics(tmp_path):
    reference = train(recipe_file(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stdout + reference.stderr
    path = recipe_file(tmp_path / "killed")
    killed_at = []
    for i, target in enumerate(KILLS):
        log = tmp_path / f"points-{i}.log"
        result = train(path, resume=i > 0, crash_at=target, log=log)
        assert result.returncode == -signal.SIGKILL, (i, target, result.stdout[-3000:], result.stderr[-3000:])
        killed_at.append(log.read_text().split()[-1])
        assert ":" not in target or killed_at[-1] == target.split(":")[0], (i, target, killed_at[-1])
    assert set(killed_at) == PHASES, killed_at
    final = train(path, resume=True)
    assert final.returncode == 0, final.stdout + final.stderr

    run, expected = tmp_path / "killed" / "run", tmp_path / "reference" / "run"
    sft, final = weights(expected / "checkpoints" / "sft"), weights(expected / "final")
    assert any(not torch.equal(sft[name], final[name]) for name in final)  # RL moved the weights
    assert_same_weights(run / "final", expected / "final")
    assert_same_weights(run / "checkpoints" / "rl", expected / "checkpoints" / "rl")
    keys, records = steps(run)
    assert len(keys) == len(set(keys)), keys  # no step twice
    assert [step for stage, step, _ in keys if stage == "rl"] == [1, 2, 3, 4, 5]
    assert (keys, records) == steps(expected)  # none missing, and the same numbers
    assert leftovers(run) == []
