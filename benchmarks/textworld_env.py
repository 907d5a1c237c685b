"""TextWorld env costs against raw TextWorld, measured in the same run.

1. Step latency: AgentEnv's TextWorld env vs ``textworld.start`` on the same games with the same requested infos,
   the same command sequence (walkthrough plus invalid commands). Goal: overhead <= 1.03x.
2. Reset latency on a cached game, vs a raw ``textworld.start`` + ``reset``.
3. Game generation time per preset (cold cache) and cache-hit reset time.
4. ``make_vec`` throughput with 2 async workers vs 1 sync env (random admissible policy).

Usage: python benchmarks/textworld_env.py [--games 5] [--rounds 5]   (writes benchmarks/results/textworld_env.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AGENTENV_CACHE", tempfile.mkdtemp(prefix="agentenv-bench-"))

import numpy as np
import textworld

import agentenv
from agentenv.envs.textworld.games import quiet_engine

BASE = "AgentEnv/TextWorld-w2o3q4-v0"
RESULTS = Path(__file__).parent / "results" / "textworld_env.json"
INFOS = dict(
    feedback=True, objective=True, inventory=True, score=True, max_score=True, won=True, lost=True,
    admissible_commands=True, policy_commands=True,
)  # fmt: skip


def commands_for(env) -> list[str]:
    walkthrough = env.unwrapped.walkthrough()
    return ["look", "dance", "inventory", "take the moon", *walkthrough]


def time_ours(env, seed: int, commands: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    env.reset(seed=seed)
    t1 = time.perf_counter()
    for command in commands:
        env.step(command)
    t2 = time.perf_counter()
    return t1 - t0, (t2 - t1) / len(commands)


def time_raw(path: str, commands: list[str]) -> tuple[float, float]:
    with quiet_engine():
        t0 = time.perf_counter()
        raw = textworld.start(path, textworld.EnvInfos(**INFOS))
        raw.reset()
        t1 = time.perf_counter()
    for command in commands:
        raw.step(command)
    t2 = time.perf_counter()
    raw.close()
    return t1 - t0, (t2 - t1) / len(commands)


def step_overhead(games: int, rounds: int) -> dict:
    env = agentenv.make(BASE, max_turns=1000)
    per_game = []
    for seed in range(games):
        env.reset(seed=seed)
        commands = commands_for(env)
        path = str(env.unwrapped._game.path)
        ours_step, raw_step, ours_reset, raw_reset = [], [], [], []
        for _ in range(rounds):  # interleave to share any machine noise
            r, s = time_raw(path, commands)
            raw_reset.append(r)
            raw_step.append(s)
            r, s = time_ours(env, seed, commands)
            ours_reset.append(r)
            ours_step.append(s)
        per_game.append(
            {
                "seed": seed,
                "steps": len(commands),
                "raw_step_ms": 1e3 * statistics.median(raw_step),
                "ours_step_ms": 1e3 * statistics.median(ours_step),
                "raw_reset_ms": 1e3 * statistics.median(raw_reset),
                "ours_reset_ms": 1e3 * statistics.median(ours_reset),
            }
        )
    env.close()
    raw_step = statistics.median(g["raw_step_ms"] for g in per_game)
    ours_step = statistics.median(g["ours_step_ms"] for g in per_game)
    return {
        "games": per_game,
        "raw_step_ms": raw_step,
        "ours_step_ms": ours_step,
        "step_ratio": ours_step / raw_step,
        "raw_reset_ms": statistics.median(g["raw_reset_ms"] for g in per_game),
        "ours_reset_ms": statistics.median(g["ours_reset_ms"] for g in per_game),
    }


def generation(presets: list[str]) -> list[dict]:
    rows = []
    for env_id in presets:
        env = agentenv.make(env_id, split="validation")
        t0 = time.perf_counter()
        env.reset(seed=0)  # cold: generates and compiles
        cold = time.perf_counter() - t0
        env.close()
        env = agentenv.make(env_id, split="validation")
        t0 = time.perf_counter()
        env.reset(seed=0)  # warm: cache hit, fresh env (engine start included)
        warm = time.perf_counter() - t0
        env.close()
        rows.append({"env_id": env_id, "generate_s": cold, "cached_reset_ms": 1e3 * warm})
    return rows


def vector_throughput(steps: int) -> dict:
    # Build the games first so both runs measure playing, not generating.
    for seed in range(8):
        agentenv.make(BASE).unwrapped.prepare_task(seed)
    result = {}
    for mode, n in (("sync", 1), ("async", 2)):
        envs = agentenv.make_vec(BASE, num_envs=n, vectorization_mode=mode, max_turns=1000)
        rng = np.random.default_rng(0)
        envs.reset(seed=0)
        t0 = time.perf_counter()
        for _ in range(steps):
            actions = tuple(
                ["look", "inventory", "go north", "go south", "dance"][int(rng.integers(5))] for _ in range(n)
            )
            envs.step(actions)
        elapsed = time.perf_counter() - t0
        envs.close()
        result[f"{mode}_{n}_env_steps_per_s"] = steps * n / elapsed
    result["async2_over_sync1"] = result["async_2_env_steps_per_s"] / result["sync_1_env_steps_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vector-steps", type=int, default=2000)
    args = parser.parse_args()

    overhead = step_overhead(args.games, args.rounds)
    gen = generation(
        ["AgentEnv/TextWorld-w1o1q1-v0", BASE, "AgentEnv/TextWorld-w8o12q4-v0", "AgentEnv/TextWorld-w4o6q8-v0",
         "AgentEnv/TextWorld-Simple-Dense-v0", "AgentEnv/TextWorld-Cooking-v0"]
    )  # fmt: skip
    vector = vector_throughput(args.vector_steps)

    print(f"\nTextWorld env vs raw textworld ({args.games} games x {args.rounds} rounds, same infos, same commands)")
    print(f"{'measure':<28}{'raw':>12}{'agentenv':>12}{'ratio':>9}")
    print(f"{'step (ms, median)':<28}{overhead['raw_step_ms']:>12.3f}{overhead['ours_step_ms']:>12.3f}"
          f"{overhead['step_ratio']:>9.3f}")  # fmt: skip
    print(f"{'reset, same game (ms)':<28}{overhead['raw_reset_ms']:>12.2f}{overhead['ours_reset_ms']:>12.2f}"
          f"{overhead['ours_reset_ms'] / overhead['raw_reset_ms']:>9.3f}")  # fmt: skip
    print("  (reset: agentenv keeps a game's engine running between its resets; raw starts it each time)")
    print(f"\n{'preset':<40}{'generate (s)':>14}{'cached reset (ms)':>20}")
    for row in gen:
        print(f"{row['env_id']:<40}{row['generate_s']:>14.2f}{row['cached_reset_ms']:>20.1f}")
    print(f"\nmake_vec: sync 1 env {vector['sync_1_env_steps_per_s']:.0f} steps/s, async 2 envs "
          f"{vector['async_2_env_steps_per_s']:.0f} steps/s, ratio {vector['async2_over_sync1']:.2f}x")  # fmt: skip

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "textworld_env",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "textworld": textworld.__version__,
                },
                "goal": {"step_ratio_max": 1.03},
                "notes": "step: same game, infos and commands, interleaved rounds, median per step; reset: agentenv "
                "reuses the running engine for the same game, raw textworld starts it; generation: cold cache, "
                "validation task 0; vector: random commands, steps/s summed over envs",
                "step_overhead": overhead,
                "generation": gen,
                "vector": vector,
            },
            indent=1,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
