"""The SWE env on every shipped task: reset and test latency in the bubblewrap sandbox against the local backend
(same tasks, same run), and the correctness checks of the shipped set.

For each task of ``envs/swe/data/tasks.jsonl`` (or the first ``--limit``):

1. bubblewrap env: reset (timed), ``run_tests`` on the task's FAIL_TO_PASS tests (timed), apply the gold patch with
   ``bash`` and ``submit``: the reward must be 1 (every listed test passes inside the sandbox);
2. a fresh episode submitted untouched with ``reward="binary"``: must score 0; with ``reward="ratio"``: must equal
   the pytest counts of the same tests run without any sandbox (``len(PASS_TO_PASS) / len(tests)`` for a valid
   task);
3. ``local`` backend (no isolation): the same reset and ``run_tests`` timings, the baseline of the overhead ratio.

Then resets on varied tasks (bubblewrap, the default backend): ``--per-library`` tasks of every library, in the
shuffled order task seeds play (libraries mixed), each reset followed by one ``bash`` command (the shortest
episode), in two rounds, three ways in interleaved blocks: the env as it ships (sandboxes opened ahead per library,
``ready_trees=2``), ``ready_trees=0`` (a sandbox opened at reset) and the reset path it replaced (opened at reset,
the previous one closed at reset, the bug applied by ``patch`` inside the sandbox), the baseline of the ratio. One
more block resets the shipped env back to back with no command in between (its pool has no time to refill). Top
level of the JSON: ``varied_reset_p50_ms`` / ``varied_reset_p95_ms`` (the shipped env), ``varied_tasks``,
``varied_libraries``, ``varied_resets``, the load average around it; ``varied_rows`` holds every variant.

Usage: python benchmarks/swe_env.py [--limit N] [--per-library K] [--varied-only]
(writes benchmarks/results/swe_env.json; ``--varied-only`` keeps its other rows as they are)
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
from agentenv.envs.swe.env import SWEEnv
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


def every_task(tasks) -> tuple[list[dict], list[str]]:
    """Steps 1-3 of the module docstring on ``tasks``: the timing rows and the failures."""
    envs = {
        backend: {
            mode: agentenv.make("AgentEnv/SWE-Mutants-v0", sandbox=backend, reward=mode)
            for mode in (("ratio", "binary") if backend == "bubblewrap" else ("ratio",))
        }
        for backend in ("bubblewrap", "local")
    }
    tag = envs["bubblewrap"]["ratio"].unwrapped.task_tag
    timings = {b: {"reset": [], "run_tests": []} for b in envs}
    failures: list[str] = []
    for n, task in enumerate(tasks, 1):
        task_id = f"{tag}-{_seed_of(envs['bubblewrap']['ratio'].unwrapped, task.instance_id)}"
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
    return rows, failures


class ReplacedReset(SWEEnv):
    """The reset path the pool replaced: a sandbox opened (and the previous one closed) at reset, the bug applied
    by ``patch`` inside it (run with ``ready_trees=0``)."""

    def _apply_bug(self) -> None:
        self._apply(self.task.bug_patch)


def varied_tasks(per_library: int) -> list[str]:
    """``per_library`` task ids of every library, in the shuffled order task seeds play them (libraries mixed)."""
    env = agentenv.make("AgentEnv/SWE-Mutants-v0").unwrapped
    ordered = sorted((t for pool in env.by_split.values() for t in pool), key=lambda t: _shuffle_key(t.instance_id))
    counts: dict[str, int] = {}
    chosen = []
    for task in ordered:
        if counts.get(task.repo, 0) < per_library:
            counts[task.repo] = counts.get(task.repo, 0) + 1
            chosen.append(f"{env.task_tag}-{_seed_of(env, task.instance_id)}")
    env.close()
    return chosen


def _shuffle_key(instance_id: str) -> str:
    import hashlib

    return hashlib.sha256(instance_id.encode()).hexdigest()


def timed_resets(env, task_ids: list[str], *, command: bool) -> list[float]:
    """Reset to each task (timed), then run one ``bash`` command (the shortest episode) unless ``command`` is off."""
    times = []
    for task_id in task_ids:
        t0 = time.perf_counter()
        env.reset(options={"task_id": task_id})
        times.append(time.perf_counter() - t0)
        if command:
            env.step(call("bash", command="ls"))
    return times


def varied(per_library: int, rounds: int = 2) -> dict:
    """The varied-task reset measurement (module docstring): rows per variant and the top-level summary."""
    started = time.perf_counter()
    task_ids = varied_tasks(per_library)
    envs = {
        "replaced (open at reset, patch in sandbox)": ReplacedReset(ready_trees=0),
        "ready_trees=0 (open at reset)": SWEEnv(ready_trees=0),
        "shipped (ready_trees=2)": SWEEnv(),
    }
    load_before = os.getloadavg()
    for env in envs.values():  # untimed: the source trees in the page cache, the shipped env's pool made
        env.reset(options={"task_id": task_ids[0]})
    times: dict[str, list[float]] = {name: [] for name in envs}
    for n in range(rounds):
        order = list(envs) if n % 2 == 0 else list(reversed(envs))
        for name in order:
            times[name] += timed_resets(envs[name], task_ids, command=True)
    shipped = envs["shipped (ready_trees=2)"]
    back_to_back = timed_resets(shipped, task_ids, command=False)
    libraries = sorted({_task_of(shipped, t).repo for t in task_ids})
    load_after = os.getloadavg()
    for env in envs.values():
        env.close()
    times["shipped, back to back (no command between resets)"] = back_to_back
    base = statistics.median(times["replaced (open at reset, patch in sandbox)"])
    rows = [{"variant": name, "resets": len(values), "p50_ms": 1000 * statistics.median(values),
             "p95_ms": 1000 * percentile(values, 0.95), "ratio_to_replaced": statistics.median(values) / base}
            for name, values in times.items()]  # fmt: skip
    print(
        f"\nreset on varied tasks: {len(task_ids)} tasks of {len(libraries)} libraries ({', '.join(libraries)}), "
        f"bubblewrap, {rounds} rounds; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"{'variant':<52} {'resets':>6} {'p50 ms':>8} {'p95 ms':>8} {'vs replaced':>12}")
    for r in rows:
        print(f"{r['variant']:<52} {r['resets']:6d} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
              f"{r['ratio_to_replaced']:11.2f}x")  # fmt: skip
    main_row = rows[2]
    return {
        "varied_reset_p50_ms": main_row["p50_ms"],
        "varied_reset_p95_ms": main_row["p95_ms"],
        "varied_resets": main_row["resets"],
        "varied_tasks": len(task_ids),
        "varied_libraries": libraries,
        "varied_load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        "varied_seconds": time.perf_counter() - started,
        "varied_rows": rows,
    }


def _task_of(env, task_id: str):
    return env.task_for(int(task_id.rsplit("-", 1)[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=0, help="only the first N tasks (default: all)")
    parser.add_argument("--per-library", type=int, default=10, help="varied resets: tasks of each library (10)")
    parser.add_argument("--varied-only", action="store_true", help="only the varied resets; keep the other rows")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the local backend warns that it is not isolated, once per sandbox
    started = time.perf_counter()
    if args.varied_only and RESULTS.exists():
        result = json.loads(RESULTS.read_text())
    else:
        tasks = load_tasks(DEFAULT_TASKS)[: args.limit or None]
        rows, failures = every_task(tasks)
        result = {"tasks": len(tasks), "failures": failures, "rows": rows}
    summary = varied(args.per_library)
    if not args.varied_only or "meta" not in result:
        meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                "seconds": time.perf_counter() - started}  # fmt: skip
        result["meta"] = meta
    result = {**summary, **{k: v for k, v in result.items() if k not in summary}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


def _seed_of(env, instance_id: str) -> int:
    """The task seed that plays ``instance_id`` (its split's base + its position in the split's shuffle)."""
    from agentenv.core import SPLIT_BASE

    for split, pool in env.by_split.items():
        for i, task in enumerate(pool):
            if task.instance_id == instance_id:
                return SPLIT_BASE[split] + i
    raise KeyError(instance_id)


if __name__ == "__main__":
    main()
