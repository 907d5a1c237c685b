"""The cost of grading a SWE submission so that only a fix passes, against the submit it replaced (same tasks,
same run, interleaved).

Baseline ("in place"): what submit did before — put the pristine test files back into the agent's sandbox and run
the listed tests there, reading pytest's ``-rA`` summary from stdout. Grader: a fresh sandbox from the pristine
tree, the bug and the agent's source changes, a canary file, the listed tests with a JUnit report, and the token
screen of the change (:class:`agentenv.envs.swe.grading.Grader`). Both grade the gold fix, so both must give
every listed test ``passed``. Goal: the grader's median cost per submit <= 1.5x the baseline's.

Then, on every shipped task (``--all``, the default), through the env: the gold patch must score 1 and the untouched
tree exactly its starting ratio ``len(PASS_TO_PASS) / len(tests)`` — the grader changes neither.

Usage: python benchmarks/swe_grading.py [--tasks 20] [--repeats 3] [--no-all]
       (writes benchmarks/results/swe_grading.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("AGENTENV_CACHE", str(Path.home() / ".cache" / "agentenv"))

import agentenv
from agentenv.envs.swe.sources import parse_test_report, test_invocation

RESULTS = Path(__file__).parent / "results" / "swe_grading.json"


def in_place(inner) -> tuple[float, dict[str, str]]:
    """The old submit: restore the pristine test files in the agent's sandbox, run the listed tests there."""
    start = time.perf_counter()
    for path in inner.pristine.rglob("*.py"):
        name = path.name
        if name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py":
            relative = str(path.relative_to(inner.pristine))
            inner.box.write_file(relative, path.read_text(encoding="utf-8"))
    result = inner.box.run(test_invocation(inner.task, inner.listed), timeout=inner.test_timeout)
    return time.perf_counter() - start, parse_test_report(result.stdout)


def graded(inner) -> tuple[float, dict[str, str]]:
    start = time.perf_counter()
    grade = inner.grader.grade(inner.box, inner.listed)
    assert grade.tampering is None, grade.tampering
    return time.perf_counter() - start, grade.statuses


def every_task(env) -> dict[str, object]:
    """Gold and no-op submissions on every task of every split, through the env's own grader."""
    from agentenv.core import SPLIT_BASE
    from agentenv.tool_calls import tool_call_text

    inner = env.unwrapped
    gold_ok, noop_ok, wrong = 0, 0, []
    total = 0
    for split, tasks in inner.by_split.items():
        for i in range(len(tasks)):
            task_id = {"task_id": f"{inner.task_tag}-{SPLIT_BASE[split] + i}"}
            env.reset(options=dict(task_id))
            *_, info = [env.step(a) for a in inner.walkthrough()][-1]
            gold_ok += info["test_ratio"] == 1.0 and not info["tampering"]
            env.reset(options=dict(task_id))
            _, reward, *_ = env.step(tool_call_text("submit"))
            noop_ok += abs(reward - inner._initial_ratio()) < 1e-9
            total += 1
            if info["test_ratio"] != 1.0 or abs(reward - inner._initial_ratio()) >= 1e-9:
                wrong.append(inner.task.instance_id)
    print(f"every task: gold scores 1 on {gold_ok}/{total}; the untouched tree keeps its ratio on {noop_ok}/{total}")
    return {"tasks": total, "gold_scores_1": gold_ok, "noop_keeps_ratio": noop_ok, "wrong": wrong}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--all", action=argparse.BooleanOptionalAction, default=True, help="gold + no-op on every task")
    args = parser.parse_args()
    env = agentenv.make("AgentEnv/SWE-Mutants-v0")
    inner = env.unwrapped
    pool = len(inner.by_split["train"])
    step = max(1, pool // args.tasks)
    rows = []
    for seed in range(0, pool, step)[: args.tasks]:  # train-split task seeds, spread over the libraries
        env.reset(seed=seed)
        task = inner.task
        fix = inner.walkthrough()[0]
        env.step(fix)  # the gold patch, applied with bash in the agent's sandbox
        base, new = [], []
        for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
            seconds, statuses = in_place(inner)
            assert all(statuses.get(t) == "passed" for t in inner.listed), task.instance_id
            base.append(seconds)
            seconds, statuses = graded(inner)
            assert all(statuses.get(t) == "passed" for t in inner.listed), task.instance_id
            new.append(seconds)
        rows.append(
            {"task": task.instance_id, "in_place_s": statistics.median(base), "grader_s": statistics.median(new)}
        )
        print(f"{task.instance_id:32s} in place {rows[-1]['in_place_s']:.3f} s   grader {rows[-1]['grader_s']:.3f} s")
    every = every_task(env) if args.all else None
    env.close()
    base_median = statistics.median(r["in_place_s"] for r in rows)
    new_median = statistics.median(r["grader_s"] for r in rows)
    ratio = statistics.median(r["grader_s"] / r["in_place_s"] for r in rows)
    print()
    print("| submit | median s | ratio |")
    print("|---|---|---|")
    print(f"| in place (baseline) | {base_median:.3f} | 1.00x |")
    print(f"| grader (fresh sandbox, report, canaries, screen) | {new_median:.3f} | {ratio:.2f}x |")
    print(f"goal <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'}")
    RESULTS.parent.mkdir(exist_ok=True)
    record = {
        "benchmark": "swe_grading",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "tasks": len(rows),
        "repeats": args.repeats,
        "in_place_median_s": base_median,
        "grader_median_s": new_median,
        "ratio_median": ratio,
        "goal": "grader <= 1.5x the in-place submit",
        "met": ratio <= 1.5,
        "rows": rows,
        "every_task": every,
    }
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
