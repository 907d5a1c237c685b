"""Ray env workers' overhead against in-process envs, measured in the same run.

1. Env steps: N envs play the same random commands (reset when an episode ends) on KeyDoor and on a small
   TextWorld preset, in process (one after another, and in threads), and as Ray actors stepped one after another
   (``step``) or all at once (``step_async`` then ``step_wait``). Reports env steps/s summed over the envs and the
   ratio to the in-process loop.
2. Rollouts: ``rollout`` with the tiny random model (greedy) with in-process envs, threads, Ray envs, and
   ``overlap=True``, on the TextWorld preset and on KeyDoor with a simulated step latency (an env that calls a
   service or runs code), checking that every variant returns the same tokens.

Usage: python benchmarks/ray_overhead.py [--envs 4] [--steps 300] [--episodes 16]
(writes benchmarks/results/ray_overhead.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

os.environ.setdefault("AGENTENV_CACHE", tempfile.mkdtemp(prefix="agentenv-bench-"))

import gymnasium as gym
import numpy as np
import ray

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.rollout import rollout
from agentenv.workers import make_ray_envs

KEYDOOR = "AgentEnv/KeyDoor-s3k1d2-v0"
TEXTWORLD = "AgentEnv/TextWorld-w1o1q1-v0"
POOL = 8  # TextWorld tasks played (built before timing): seeds wrap around them
KWARGS = {KEYDOOR: {}, TEXTWORLD: {"pool_size": POOL}}
COMMANDS = ["look", "inventory", "go north", "go south", "go east", "go west", "take key", "open door", "dance"]
RESULTS = Path(__file__).parent / "results" / "ray_overhead.json"


class Latency(gym.Wrapper):
    """Sleeps ``seconds`` in each step: the latency of an env that calls a service or runs code."""

    def __init__(self, env: gym.Env, seconds: float):
        super().__init__(env)
        self.seconds = seconds

    def step(self, action):
        time.sleep(self.seconds)
        return self.env.step(action)


def slow_keydoor(latency_s: float, **kwargs) -> gym.Env:
    return Latency(agentenv.make(KEYDOOR, **kwargs), latency_s)


def play(envs, steps: int, mode: str, pool: ThreadPoolExecutor | None = None) -> float:
    """Env steps per second over ``steps`` rounds of one random command per env."""
    rngs = [np.random.default_rng(i) for i in range(len(envs))]
    seeds = list(range(len(envs)))
    for env, seed in zip(envs, seeds, strict=True):
        env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        actions = [COMMANDS[int(rng.integers(len(COMMANDS)))] for rng in rngs]
        if mode == "async":
            for env, action in zip(envs, actions, strict=True):
                env.step_async(action)
            results = [env.step_wait() for env in envs]
        elif mode == "threads":
            results = list(pool.map(lambda pair: pair[0].step(pair[1]), zip(envs, actions, strict=True)))
        else:
            results = [env.step(action) for env, action in zip(envs, actions, strict=True)]
        for i, (_, _, terminated, truncated, _) in enumerate(results):
            if terminated or truncated:
                seeds[i] += len(envs)
                envs[i].reset(seed=seeds[i])
    return steps * len(envs) / (time.perf_counter() - t0)


def step_rates(env_id: str, n: int, steps: int, max_turns: int) -> dict:
    local = [agentenv.make(env_id, max_turns=max_turns, **KWARGS[env_id]) for _ in range(n)]
    t0 = time.perf_counter()
    remote = make_ray_envs(env_id, n, max_turns=max_turns, **KWARGS[env_id])
    start_s = time.perf_counter() - t0
    pool = ThreadPoolExecutor(max_workers=n)
    play(local, max(10, steps // 10), "sync")  # warm up: first resets, imports, worker-side caches
    play(remote, max(10, steps // 10), "async")
    rates = {"in_process": [], "in_process_threads": [], "ray_sequential": [], "ray_step_async": []}
    for _ in range(3):  # interleaved rounds share the machine's noise; the median is reported
        rates["in_process"].append(play(local, steps, "sync"))
        rates["in_process_threads"].append(play(local, steps, "threads", pool))
        rates["ray_sequential"].append(play(remote, steps, "sync"))
        rates["ray_step_async"].append(play(remote, steps, "async"))
    pool.shutdown()
    for env in local + remote:
        env.close()
    row = {"env_id": env_id, "envs": n, "steps_per_env": steps, "ray_start_s": start_s}
    base = float(np.median(rates["in_process"]))
    for mode, values in rates.items():
        row[f"{mode}_steps_per_s"] = float(np.median(values))
        row[f"{mode}_ratio"] = float(np.median(values)) / base
    return row


def rollout_rates(label: str, make_env, n: int, episodes: int, max_new_tokens: int, **kwargs) -> dict:
    from agentenv.models import tiny_model
    from agentenv.policies import Sampling, TransformersPolicy

    model, tokenizer = tiny_model(seed=0)
    fmt = ChatFormat(tokenizer)
    local = [make_env(**kwargs) for _ in range(n)]
    remote = make_ray_envs(make_env, n, **kwargs)
    variants = {
        "in_process": (local, {}),
        "in_process_threads": (local, {"concurrent_env_steps": True}),
        "in_process_overlap": (local, {"overlap": True}),
        "ray": (remote, {}),
        "ray_overlap": (remote, {"overlap": True}),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    ids: dict[str, list] = {}
    for _ in range(3):
        for name, (envs, options) in variants.items():
            policy = TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=max_new_tokens, temperature=0.0))
            t0 = time.perf_counter()
            trajectories = rollout(envs, policy, fmt, range(episodes), **options)
            times[name].append(time.perf_counter() - t0)
            ids[name] = [(t.token_ids, t.error) for t in trajectories]
    for env in local + remote:
        env.close()
    base = float(np.median(times["in_process"]))
    row: dict = {"env": label, "envs": n, "episodes": episodes, "max_turns": kwargs["max_turns"]}
    for name, values in times.items():
        row[f"{name}_episodes_per_s"] = episodes / float(np.median(values))
        row[f"{name}_ratio"] = base / float(np.median(values))
    row["identical_tokens"] = all(ids[name] == ids["in_process"] for name in ids)
    row["errors"] = sum(bool(error) for _, error in ids["in_process"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300, help="rounds of one step per env, per measurement")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated env step latency (KeyDoor rollout)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    for seed in range(POOL):  # build the games first: the benchmark measures playing, not generating
        agentenv.make(TEXTWORLD).unwrapped.prepare_task(seed)
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t0

    steps = [step_rates(KEYDOOR, args.envs, args.steps, 50), step_rates(TEXTWORLD, args.envs, args.steps, 50)]
    rolls = [
        rollout_rates(TEXTWORLD, partial(agentenv.make, TEXTWORLD), args.envs, args.episodes, args.max_new_tokens,
                      max_turns=args.max_turns, pool_size=POOL),
        rollout_rates(f"{KEYDOOR} + {args.latency_ms} ms/step", slow_keydoor, args.envs, args.episodes,
                      args.max_new_tokens, max_turns=args.max_turns, latency_s=args.latency_ms / 1e3),
    ]  # fmt: skip
    ray.shutdown()

    print(f"\nEnv steps/s summed over {args.envs} envs (random commands; ratio = against the in-process loop)")
    modes = ("in_process", "in_process_threads", "ray_sequential", "ray_step_async")
    print(f"{'env':<32}" + "".join(f"{m:>24}" for m in modes))
    for row in steps:
        cells = "".join(f"{row[f'{m}_steps_per_s']:>14.0f} ({row[f'{m}_ratio']:>5.2f}x)" for m in modes)
        print(f"{row['env_id']:<32}{cells}")
    print(f"Ray: init {init_s:.2f} s; starting {args.envs} env workers "
          + ", ".join(f"{r['ray_start_s']:.2f} s ({r['env_id']})" for r in steps))  # fmt: skip
    print(f"\nrollout() with the tiny model, greedy: episodes/s ({args.episodes} episodes, {args.envs} envs, "
          f"{args.max_turns} turns, {args.max_new_tokens} new tokens/turn; ratio = against in-process)")  # fmt: skip
    names = ("in_process", "in_process_threads", "in_process_overlap", "ray", "ray_overlap")
    print(f"{'env':<44}" + "".join(f"{m:>21}" for m in names) + f"{'same tokens':>13}")
    for roll in rolls:
        cells = "".join(f"{roll[f'{m}_episodes_per_s']:>12.2f} ({roll[f'{m}_ratio']:>4.2f}x)" for m in names)
        print(f"{roll['env']:<44}{cells}{roll['identical_tokens']!s:>13}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "ray_overhead",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
                    "torch_threads": 1, "load_average_1min": os.getloadavg()[0]},
        "notes": "local Ray on this machine; steps/s summed over envs, median of 3 interleaved rounds; ratio = "
                 "variant / in-process loop (for rollouts: in-process time / variant time)",
        "ray_init_s": init_s,
        "env_steps": steps,
        "rollout": rolls,
    }  # fmt: skip
    RESULTS.write_text(json.dumps(record, indent=1))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
