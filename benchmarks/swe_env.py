"""The SWE env on every shipped task: reset and test latency in the bubblewrap sandbox against the local backend
(same tasks, same run), and the correctness checks of the shipped set.

For each task of ``envs/swe/data/tasks.jsonl`` (or the first ``--limit``):

1. bubblewrap env: reset (timed), ``run_tests`` on the task's FAIL_TO_PASS tests (timed), apply the gold patch with
   ``bash`` and ``submit``: the reward must be 1 (every listed test passes inside the sandbox);
2. a fresh episode submitted untouched with ``reward="binary"``: must score 0; with ``reward="ratio"``: must equal
   the pytest counts of the same tests run without any sandbox (``len(PASS_TO_PASS) / len(tests)`` for a valid
   task);
3. ``local`` backend (no isolation): the same reset and ``run_tests`` timings, the baseline of the overhead ratio.

Usage: python benchmarks/swe_env.py [--limit N]   (writes benchmarks/results/swe_env.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("AGENTENV_CACHE", str(Path.home() / ".cache" / "agentenv"))

import agentenv
from agentenv.envs.swe.sources import parse_test_report, prepare_task_tree, test_invocation
from agentenv.envs.swe.tasks import DEFAULT_TASKS, load_tasks
from agentenv.tool_calls import tool_call_text

RESULTS = Path(__file__).parent / "results" / "swe_env.json"


def call(name: str, **arguments) -> str:
    return tool_call_text(name, arguments)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def episode(env, task_id: str, actions: list[str]) -> tuple[float, float, list[float], dict]:
    """Reset to ``task_id``, play ``actions``; returns (reset seconds, last reward, per-step seconds, last info)."""
    t0 = time.perf_counter()
    env.reset(options={"task_id": task_id})
    reset = time.perf_counter() - t0
    steps, reward, info = [], 0.0, {}
    for action in actions:
        t0 = time.perf_counter()
        _, reward, _, _, info = env.step(action)
        steps.append(time.perf_counter() - t0)
    return reset, reward, steps, info


def unsandboxed_counts(task) -> tuple[int, int]:
    """Passing / total of the task's listed tests on the buggy tree, pytest run directly (no sandbox)."""
    with tempfile.TemporaryDirectory(prefix="agentenv-bench-swe-") as folder:
        tree = prepare_task_tree(task, Path(folder) / "tree")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        out = subprocess.run(
            ["bash", "-c", test_invocation(task, task.tests)], cwd=tree, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
    statuses = parse_test_report(out.stdout)
    return sum(statuses.get(t) in ("passed", "xfail") for t in task.tests), len(task.tests)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=0, help="only the first N tasks (default: all)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the local backend warns that it is not isolated, once per sandbox
    tasks = load_tasks(DEFAULT_TASKS)[: args.limit or None]
    envs = {
        backend: {
            mode: agentenv.make("AgentEnv/SWE-Mutants-v0", sandbox=backend, reward=mode)
            for mode in (("ratio", "binary") if backend == "bubblewrap" else ("ratio",))
        }
        for backend in ("bubblewrap", "local")
    }
    tag = envs["bubblewrap"]["ratio"].unwrapped.task_tag
    index = {t.instance_id: i for i, t in enumerate(load_tasks(DEFAULT_TASKS))}
    timings = {b: {"reset": [], "run_tests": []} for b in envs}
    failures: list[str] = []
    started = time.perf_counter()
    for n, task in enumerate(tasks, 1):
        env = envs["bubblewrap"]["ratio"].unwrapped
        seed = _seed_of(env, task.instance_id, index)
        task_id = f"{tag}-{seed}"
        patch = task.patch.rstrip("\n")
        gold = [call("run_tests", tests=task.FAIL_TO_PASS), call("bash", command=f"patch -p1 -s <<'EOF'\n{patch}\nEOF"),
                call("submit")]  # fmt: skip
        for backend in envs:
            reset, reward, steps, info = episode(envs[backend]["ratio"], task_id, gold)
            timings[backend]["reset"].append(reset)
            timings[backend]["run_tests"].append(steps[0])
            if reward != 1.0:
                failures.append(
                    f"{task.instance_id} ({backend}): gold patch scored {reward} ({info.get('test_ratio')})"
                )
        _, binary, _, _ = episode(envs["bubblewrap"]["binary"], task_id, [call("submit")])
        _, ratio, _, info = episode(envs["bubblewrap"]["ratio"], task_id, [call("submit")])
        passed, total = unsandboxed_counts(task)
        if binary != 0.0:
            failures.append(f"{task.instance_id}: empty submission scored {binary} (binary)")
        if abs(ratio - passed / total) > 1e-9 or info.get("tests_passed") != passed:
            failures.append(f"{task.instance_id}: ratio {ratio} but pytest counts {passed}/{total}")
        if n % 10 == 0 or n == len(tasks):
            print(f"{n}/{len(tasks)} tasks, {len(failures)} failures", flush=True)
    for backend in envs:
        for mode_env in envs[backend].values():
            mode_env.close()
    rows = []
    for what in ("reset", "run_tests"):
        base = statistics.median(timings["local"][what])
        for backend in ("local", "bubblewrap"):
            values = timings[backend][what]
            p50 = statistics.median(values)
            rows.append({"what": what, "backend": backend, "p50_ms": 1000 * p50,
                         "p95_ms": 1000 * percentile(values, 0.95), "ratio_to_local": p50 / base})  # fmt: skip
    print(f"{'what':<10} {'backend':<11} {'p50 ms':>8} {'p95 ms':>8} {'vs local':>9}")
    for r in rows:
        print(f"{r['what']:<10} {r['backend']:<11} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['ratio_to_local']:8.2f}x")
    print(f"tasks: {len(tasks)}; gold patch solves all in the sandbox, empty submission scores 0 (binary), ratio "
          f"equals pytest counts: {'yes' if not failures else 'NO'}")  # fmt: skip
    for line in failures:
        print("  " + line)
    result = {
        "meta": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "seconds": time.perf_counter() - started,
        },
        "tasks": len(tasks),
        "failures": failures,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


def _seed_of(env, instance_id: str, index: dict[str, int]) -> int:
    """The task seed that plays ``instance_id`` (its split's base + its position in the split's shuffle)."""
    from agentenv.core import SPLIT_BASE

    for split, pool in env.by_split.items():
        for i, task in enumerate(pool):
            if task.instance_id == instance_id:
                return SPLIT_BASE[split] + i
    raise KeyError(instance_id)


if __name__ == "__main__":
    main()
