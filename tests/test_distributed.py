"""Data-parallel RL through accelerate: two CPU processes (gloo) make the update one process makes on the whole batch.

The tests launch this file with ``torch.distributed.run`` (what ``accelerate launch`` runs); each process runs
:func:`worker` and saves its parameters and metrics, which the tests compare with single-process iterations over
the same task seeds. A deterministic policy makes the episodes the same in both layouts.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.errors import ConfigError
from agentenv.models import tiny_model
from agentenv.policies import Generation
from agentenv.policies.rl import RLConfig, RLTrainer
from agentenv.rollout import rollout

ENV = "AgentEnv/KeyDoor-s2k0d1-v0"
EPISODES = 8
CASES = {
    "ppo": {"algorithm": "ppo", "epochs": 2},  # whitened advantages; the second epoch's ratios are not 1
    "reinforce_pp": {"algorithm": "reinforce_pp"},  # batch-normalised returns
    "grpo": {"algorithm": "grpo", "kl_coef": 0.1, "kl_in": "loss"},  # a reference model
    "rloo": {"algorithm": "rloo"},
    "dr_grpo": {"algorithm": "grpo", "scale_rewards": False},
}
#: The generation of the last task groups fails: with 1, process 1 trains on 2 episodes (process 0 on 4), with 2 on
#: none (it still takes part in every collective); ``dr_grpo`` splits evenly.
POISONED = {"ppo": 1, "reinforce_pp": 1, "grpo": 1, "rloo": 2}


class LookOrBabble:
    """Even rows say "look" (valid), odd rows babble (invalid, penalised), prompts in ``fail`` get a failed
    generation. Every episode starts in the first batch (one env per episode), so a row is the episode's index in
    its process, whose parity is the same whether 1 or 2 processes play the 8 episodes."""

    def __init__(self, tokenizer, fail=frozenset()):
        self.tokenizer, self.fail = tokenizer, fail

    def generate(self, prompts, sampling=None):
        out = []
        for row, prompt in enumerate(prompts):
            if tuple(prompt) in self.fail:
                out.append(Generation([], [], "error", "", error="poisoned"))
                continue
            text = "look" if row % 2 == 0 else "xyzzy plugh"
            ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
            out.append(Generation(ids, [0.0] * len(ids), "stop", text))
        return out


def make_trainer(name, accelerator=None, scripted=True):
    model, tokenizer = tiny_model(seed=0)
    processes = accelerator.num_processes if accelerator is not None else 1
    config = RLConfig(episodes=EPISODES, group_size=2, max_new_tokens=6, num_envs=EPISODES // processes,
                      micro_batch_size=2, lr=1e-3, **CASES[name])  # fmt: skip
    envs = [agentenv.make(ENV, max_turns=3, reward="dense", invalid_action_penalty=0.5) for _ in range(config.num_envs)]
    if accelerator is not None:
        accelerator.free_memory()  # forget the previous trainer's model: accelerate's FSDP clipping looks it up
    trainer = RLTrainer(config, model, tokenizer, envs, ChatFormat(tokenizer), seed=1, env_id=ENV,
                        accelerator=accelerator)  # fmt: skip
    if scripted:
        poisoned = trainer.task_seeds(0)[len(trainer.task_seeds(0)) - 2 * POISONED.get(name, 0) :: 2]
        firsts = rollout(envs[:1], LookOrBabble(tokenizer), ChatFormat(tokenizer), poisoned)
        trainer.policy = LookOrBabble(tokenizer, frozenset(tuple(t.token_ids[: t.prompt_length]) for t in firsts))
    return trainer


def summary(trajectories):
    return sorted([t.seed, [turn.action for turn in t.turns], t.error, len(t.token_ids)] for t in trajectories)


def parameters(trainer):
    """Whole parameters (FSDP's shards gathered: every process calls this together)."""
    whole = {n: p.full_tensor() if hasattr(p, "full_tensor") else p for n, p in trainer.module.named_parameters()}
    return {n: p.detach().cpu().clone() for n, p in whole.items()}


def worker(out: Path, mode: str) -> None:
    """One of the 2 processes: every case's iteration, a config error, sampled iterations, save and resume."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if mode == "fsdp":
        # accelerate offers FSDP on accelerators only: on the CPU the state is switched to FSDP by hand, so that
        # accelerate's FSDP2 preparation (as `accelerate launch --use_fsdp` configures it by default: weights
        # loaded on the main process, which unties tied weights) and torch's fully_shard run over gloo
        plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap", cpu_ram_efficient_loading=True
        )
        accelerator = Accelerator(cpu=True, fsdp_plugin=plugin)
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        accelerator.state.distributed_type, accelerator.state.fsdp_plugin = DistributedType.FSDP, plugin
    else:
        accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2
    results = {}
    for name in CASES:
        trainer = make_trainer(name, accelerator)
        wrapper = "FSDPPolicyWithValue" if mode == "fsdp" else "DistributedDataParallel"
        assert type(trainer.train_module).__name__ == wrapper
        episodes = summary(trainer.collect(0))  # what the iteration plays: the policy is deterministic
        results[name] = {"metrics": trainer.iteration(), "parameters": parameters(trainer), "episodes": episodes}
    try:
        RLTrainer(RLConfig(algorithm="grpo", episodes=6, group_size=2), *tiny_model(), [], None,
                  accelerator=accelerator)  # fmt: skip
    except ConfigError as e:
        results["error"] = str(e)
    trainer = make_trainer("ppo", accelerator, scripted=False)  # sampling from the unwrapped model
    before = parameters(trainer)
    results["sampled"] = {"metrics": trainer.iteration(), "parameters": parameters(trainer), "before": before}
    trainer.save(out / "checkpoint")
    trainer.iteration()
    results["sampled"]["second"] = parameters(trainer)
    resumed = make_trainer("ppo", accelerator, scripted=False)
    resumed.load(out / "checkpoint")
    resumed.iteration()
    results["sampled"]["resumed"] = parameters(resumed)
    torch.save(results, out / f"rank{accelerator.process_index}.pt")


def launch(*args: str) -> subprocess.CompletedProcess:
    """``args`` run as 2 CPU processes under ``torch.distributed.run`` (which ``accelerate launch`` wraps)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(port), *args]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def single():
    """Each case's iteration in one process without an accelerator: initial and final parameters, episodes, metrics."""
    runs = {}
    for name in CASES:
        trainer = make_trainer(name)
        initial = parameters(trainer)
        episodes = summary(trainer.collect(0))
        metrics = trainer.iteration()
        runs[name] = {"initial": initial, "episodes": episodes, "metrics": metrics, "parameters": parameters(trainer)}
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_make_the_update_of_one_process(tmp_path, single, mode):
    launch(__file__, str(tmp_path), mode)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name in CASES:
        expected, ours = single[name], [r[name] for r in ranks]
        assert sorted(ours[0]["episodes"] + ours[1]["episodes"]) == expected["episodes"]  # the same, split in two
        assert expected["metrics"]["skipped_episodes"] == 2 * POISONED.get(name, 0)
        moved = max((p - expected["initial"][n]).abs().max().item() for n, p in expected["parameters"].items())
        assert moved >= 0.9 * 1e-3, name  # Adam moves weights by about lr (1e-3) per step
        off = 0  # elements beyond float rounding: Adam (eps 1e-8) turns summation-order noise in a gradient that
        # cancels to ~0 into steps up to ~1e-5; local loss denominators instead move >1e4 elements by up to 4e-3
        for n, p in expected["parameters"].items():
            assert torch.equal(ours[0]["parameters"][n], ours[1]["parameters"][n]), (name, n)
            torch.testing.assert_close(ours[0]["parameters"][n], p, rtol=0, atol=3e-5, msg=f"{name} {n}")
            off += int(((ours[0]["parameters"][n] - p).abs() > 1e-6 + 1e-5 * p.abs()).sum())
        assert off <= 20, (name, off)  # of 357k
        assert ours[1]["metrics"]["agent_tokens"] > 0 and len(ours[1]["episodes"]) == EPISODES // 2
        for metrics in (ours[0]["metrics"], ours[1]["metrics"]):
            for key in ("episodes", "agent_tokens", "skipped_episodes", "success_rate", "mean_return", "invalid_rate"):
                assert metrics[key] == expected["metrics"][key], (name, key)
            for key in ("pg_loss", "entropy", "grad_norm", "clipfrac", "approx_kl", "kl_ref", "vf_loss", "kl_loss"):
                if key in expected["metrics"]:
                    assert metrics[key] == pytest.approx(expected["metrics"][key], rel=1e-4, abs=1e-6), (name, key)

    assert "episodes=6" in ranks[0]["error"] and "3 task groups" in ranks[0]["error"]
    sampled = [r["sampled"] for r in ranks]
    assert sampled[0]["metrics"]["episodes"] == EPISODES
    assert any(not torch.equal(p, sampled[0]["before"][n]) for n, p in sampled[0]["parameters"].items())
    for n, p in sampled[0]["second"].items():
        assert torch.equal(p, sampled[1]["second"][n]), n
        assert torch.equal(p, sampled[0]["resumed"][n]), n  # resumed from the checkpoint: the same next update
    assert json.loads((tmp_path / "checkpoint" / "trainer.json").read_text())["iteration_done"] == 1


@pytest.mark.slow
def test_agentenv_train_under_a_launcher_shards_rl_and_evaluation_and_writes_once(tmp_path):
    import yaml

    from agentenv.recipes.config import load_recipe
    from agentenv.recipes.run import evaluate, load_policy_model

    recipe = {
        "name": "tiny",
        "env": {"id": ENV, "kwargs": {"max_turns": 3, "reward": "dense"}},
        "model": {"name": "tiny"},
        "sft": {"episodes": 4, "epochs": 1, "batch_size": 2},
        "rl": {
            "algorithm": "grpo",
            "iterations": 2,
            "episodes": 4,
            "group_size": 2,
            "train_tasks": 16,
            "max_new_tokens": 5,
            "num_envs": 2,
        },
        "eval": {"episodes": 3, "max_new_tokens": 5, "num_envs": 3},
        "output": {"dir": str(tmp_path / "run"), "tensorboard": False},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    launch("-m", "agentenv.cli", "train", str(tmp_path / "recipe.yaml"))
    out = tmp_path / "run"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in lines if r["stage"] != "sft"] == ["eval", "eval", "rl", "rl", "eval"]  # logged once
    assert [r["step"] for r in lines if r["stage"] == "sft"] == list(range(1, len(lines) - 4))
    assert all(r["episodes"] == 4 and r["agent_tokens"] > 0 for r in lines if r["stage"] == "rl")
    assert json.loads((out / "checkpoints" / "rl" / "trainer.json").read_text())["iteration_done"] == 2
    assert (out / "final" / "model.safetensors").exists() and (out / "report.html").exists()
    results = json.loads((out / "results.json").read_text())
    assert set(results["evaluations"]) == {"before", "after SFT", "after"}
    # the evaluation sharded over 2 processes (1 + 2 tasks) is the single-process one
    played = [json.loads(line) for line in (out / "eval" / "before.jsonl").read_text().splitlines()]
    loaded = load_recipe(recipe)
    model, tokenizer, chat_format = load_policy_model(loaded)
    _, alone = evaluate(loaded, model, tokenizer, chat_format, ENV, "before")
    assert [(e["seed"], [t["action"] for t in e["turns"]]) for e in played] == [
        (t.seed, [turn.action for turn in t.turns]) for t in alone
    ]


if __name__ == "__main__":
    worker(Path(sys.argv[1]), sys.argv[2])
