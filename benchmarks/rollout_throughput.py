"""Rollout throughput: the batched engine vs one episode at a time, same model, env, seeds and sampling.

Baseline: ``rollout`` with one env (each turn generated alone). Compared: ``rollout`` with 8 envs (generation batched
across live episodes). Both greedy with the default CPU model on a tiny TextWorld preset, with the policy's KV prefix
cache on (each turn only prefills what the previous turn did not); the same two runs without the cache
(``model.generate``) are reported too, and the cached trajectories must equal the uncached ones token for token.
Reports episodes/min and generated tokens/s and their ratio (goal: >= 3x at batch 8, cache on).

Usage: python benchmarks/rollout_throughput.py [--episodes 8] [--batch 8] [--threads 1]
(writes benchmarks/results/rollout_throughput.json with 1 thread, rollout_throughput_threadsN.json with N)
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

import torch

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.policies import Sampling, TransformersPolicy
from agentenv.rollout import rollout

ENV = "AgentEnv/TextWorld-w1o1q1-v0"
RESULTS = Path(__file__).parent / "results" / "rollout_throughput.json"


def run(policy: TransformersPolicy, batch: int, episodes: int, max_turns: int, cache: bool) -> tuple[dict, list]:
    envs = [agentenv.make(ENV, split="validation", max_turns=max_turns) for _ in range(batch)]
    for seed in range(episodes):  # build the games first: the benchmark measures playing, not generating
        envs[0].unwrapped.prepare_task(agentenv.core.task_seeds("validation", 1, seed)[0])
    policy.batch_size, policy.prefix_cache = batch, cache
    policy.clear_cache()
    policy.stats = dict.fromkeys(policy.stats, 0)
    t0 = time.perf_counter()
    trajectories = rollout(envs, policy, ChatFormat(policy.tokenizer), range(episodes), env_id=ENV)
    elapsed = time.perf_counter() - t0
    for env in envs:
        env.close()
    tokens = sum(sum(t.loss_mask) for t in trajectories)
    turns = sum(len(t.turns) for t in trajectories)
    row = {
        "batch": batch,
        "prefix_cache": cache,
        "episodes": episodes,
        "turns": turns,
        "generated_tokens": tokens,
        "seconds": elapsed,
        "episodes_per_min": 60 * episodes / elapsed,
        "tokens_per_s": tokens / elapsed,
        "errors": sum(bool(t.error) for t in trajectories),
    }
    if cache:  # prompt tokens not prefilled: kept from an earlier call, or copied from a row sharing the prefix
        stats = policy.stats
        row["reused_prompt_fraction"] = stats["reused_tokens"] / max(1, stats["prompt_tokens"])
        row["shared_prompt_fraction"] = stats["shared_tokens"] / max(1, stats["prompt_tokens"])
        row["prefilled_tokens"], row["decode_steps"] = stats["prefilled_tokens"], stats["decode_steps"]
        row["prefill_s"], row["decode_s"] = stats["prefill_s"], stats["decode_s"]
    return row, trajectories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0)
    t0 = time.perf_counter()
    policy = TransformersPolicy.from_pretrained("default", sampling, num_threads=args.threads)
    load_s = time.perf_counter() - t0
    policy.generate([policy.tokenizer("warm up")["input_ids"]])  # first-call allocations stay out of the timings
    runs, ids = {}, {}
    for name, batch, cache in (
        ("one_at_a_time", 1, True),
        ("batched", args.batch, True),
        ("one_at_a_time_no_cache", 1, False),
        ("batched_no_cache", args.batch, False),
    ):
        runs[name], trajectories = run(policy, batch, args.episodes, args.max_turns, cache)
        ids[name] = [t.token_ids for t in trajectories]
        print(f"  {name}: {runs[name]['seconds']:.1f} s", flush=True)
    same = all(ids[name] == ids[f"{name}_no_cache"] for name in ("one_at_a_time", "batched"))
    ratio_eps = runs["batched"]["episodes_per_min"] / runs["one_at_a_time"]["episodes_per_min"]
    ratio_tok = runs["batched"]["tokens_per_s"] / runs["one_at_a_time"]["tokens_per_s"]
    ratio_no_cache = runs["batched_no_cache"]["episodes_per_min"] / runs["one_at_a_time_no_cache"]["episodes_per_min"]
    ratio_vs_old = runs["batched"]["episodes_per_min"] / runs["one_at_a_time_no_cache"]["episodes_per_min"]

    print(f"\nRollout throughput on {ENV}, default model, greedy, {args.max_new_tokens} new tokens/turn, "
          f"{args.max_turns} turns, {args.threads} torch thread(s)")  # fmt: skip
    print(f"{'engine':<32}{'episodes/min':>14}{'tokens/s':>12}{'seconds':>10}")
    for name, row in runs.items():
        print(f"{name:<32}{row['episodes_per_min']:>14.1f}{row['tokens_per_s']:>12.1f}{row['seconds']:>10.1f}")
    print(f"{'ratio batched/one (cache)':<32}{ratio_eps:>14.2f}{ratio_tok:>12.2f}   (goal >= 3x at batch {args.batch})")
    print(f"{'ratio batched/one (no cache)':<32}{ratio_no_cache:>14.2f}")
    print(f"{'batched (cache) / one (no cache)':<32}{ratio_vs_old:>14.2f}")
    print(f"cached trajectories equal uncached ones: {same}")
    for name in ("one_at_a_time", "batched"):
        row = runs[name]
        print(f"{name} (cache): prefill {row['prefill_s']:.1f} s ({row['prefilled_tokens']} tokens incl. padding, "
              f"{row['reused_prompt_fraction'] + row['shared_prompt_fraction']:.0%} of prompt tokens not prefilled), "
              f"decode {row['decode_s']:.1f} s ({row['decode_steps']} steps)")  # fmt: skip

    results = RESULTS if args.threads == 1 else RESULTS.with_name(f"{RESULTS.stem}_threads{args.threads}.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "rollout_throughput",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "threads": args.threads, "load_average_1min": os.getloadavg()[0]},
        "env": ENV,
        "model": "default (SmolLM2-135M-Instruct, fp32)",
        "sampling": {"temperature": 0.0, "max_new_tokens": args.max_new_tokens, "max_turns": args.max_turns},
        "model_load_s": load_s,
        "goal": {"ratio_min": 3.0, "batch": args.batch, "prefix_cache": True},
        **runs,
        "ratio_episodes_per_min": ratio_eps,
        "ratio_tokens_per_s": ratio_tok,
        "ratio_episodes_per_min_no_cache": ratio_no_cache,
        "batched_cache_over_one_at_a_time_no_cache": ratio_vs_old,
        "cached_trajectories_equal_uncached": same,
    }  # fmt: skip
    results.write_text(json.dumps(record, indent=1))
    print(f"\nwrote {results}")


if __name__ == "__main__":
    main()
