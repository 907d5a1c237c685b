"""Rollout throughput: the batched engine vs one episode at a time, same model, env, seeds and sampling.

Baseline: ``rollout`` with one env (each turn generated alone). Compared: ``rollout`` with 8 envs (generation batched
across live episodes). Both greedy with the default CPU model on a tiny TextWorld preset; reports episodes/min and
generated tokens/s and their ratio (goal: >= 3x at batch 8).

Usage: python benchmarks/rollout_throughput.py [--episodes 8] [--threads 1]
(writes benchmarks/results/rollout_throughput.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AGENTENV_CACHE", tempfile.mkdtemp(prefix="agentenv-bench-"))

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.policies import Sampling, TransformersPolicy
from agentenv.rollout import rollout

ENV = "AgentEnv/TextWorld-w1o1q1-v0"
RESULTS = Path(__file__).parent / "results" / "rollout_throughput.json"


def run(policy: TransformersPolicy, batch: int, episodes: int, max_turns: int) -> dict:
    envs = [agentenv.make(ENV, split="validation", max_turns=max_turns) for _ in range(batch)]
    for seed in range(episodes):  # build the games first: the benchmark measures playing, not generating
        envs[0].unwrapped.prepare_task(agentenv.core.task_seeds("validation", 1, seed)[0])
    policy.batch_size = batch
    t0 = time.perf_counter()
    trajectories = rollout(envs, policy, ChatFormat(policy.tokenizer), range(episodes), env_id=ENV)
    elapsed = time.perf_counter() - t0
    for env in envs:
        env.close()
    tokens = sum(sum(t.loss_mask) for t in trajectories)
    turns = sum(len(t.turns) for t in trajectories)
    return {
        "batch": batch,
        "episodes": episodes,
        "turns": turns,
        "generated_tokens": tokens,
        "seconds": elapsed,
        "episodes_per_min": 60 * episodes / elapsed,
        "tokens_per_s": tokens / elapsed,
        "errors": sum(bool(t.error) for t in trajectories),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0)
    t0 = time.perf_counter()
    policy = TransformersPolicy.from_pretrained("default", sampling, num_threads=args.threads)
    load_s = time.perf_counter() - t0
    one = run(policy, 1, args.episodes, args.max_turns)
    batched = run(policy, args.batch, args.episodes, args.max_turns)
    ratio_eps = batched["episodes_per_min"] / one["episodes_per_min"]
    ratio_tok = batched["tokens_per_s"] / one["tokens_per_s"]

    print(f"\nRollout throughput on {ENV}, default model, greedy, {args.max_new_tokens} new tokens/turn, "
          f"{args.max_turns} turns, {args.threads} torch thread(s)")  # fmt: skip
    print(f"{'engine':<22}{'episodes/min':>14}{'tokens/s':>12}{'seconds':>10}")
    for name, row in (("one at a time", one), (f"batched x{args.batch}", batched)):
        print(f"{name:<22}{row['episodes_per_min']:>14.1f}{row['tokens_per_s']:>12.1f}{row['seconds']:>10.1f}")
    print(f"{'ratio':<22}{ratio_eps:>14.2f}{ratio_tok:>12.2f}   (goal >= 3x at batch 8)")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "rollout_throughput",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "threads": args.threads,
                    "load_average_1min": os.getloadavg()[0]},
        "env": ENV,
        "model": "default (SmolLM2-135M-Instruct, fp32)",
        "model_load_s": load_s,
        "goal": {"ratio_min": 3.0, "batch": args.batch},
        "one_at_a_time": one,
        "batched": batched,
        "ratio_episodes_per_min": ratio_eps,
        "ratio_tokens_per_s": ratio_tok,
    }  # fmt: skip
    RESULTS.write_text(json.dumps(record, indent=1))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
