"""SWE task builder yield: validated tasks per minute and the share of tried mutants kept, per library.

Runs ``build_tasks`` (baseline coverage run, mutants, covering tests, validation of each kept task from scratch)
on the pinned libraries, like ``make swe-tasks`` but into a temporary file, and reports each library's numbers
with its ratio to the first library (the baseline of the table). Tasks per minute include the baseline coverage
run and the validation, i.e. what a user waits for.

Usage: python benchmarks/swe_build.py [--per-library 24] [--workers 2] [-l toolz -l parse ...]
(writes benchmarks/results/swe_build.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from agentenv.envs.swe.build import build_tasks

RESULTS = Path(__file__).parent / "results" / "swe_build.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-library", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-l", "--library", action="append", default=None)
    args = parser.parse_args()
    reports: list = []
    with tempfile.TemporaryDirectory(prefix="agentenv-bench-swe-build-") as folder:
        tasks = build_tasks(args.library, args.per_library, args.seed, Path(folder) / "tasks.jsonl", args.workers,
                            progress=False, reports=reports)  # fmt: skip
    rows = []
    for report in reports:
        per_min = 60 * report.kept / report.seconds if report.seconds else 0.0
        rows.append({"library": report.library, "tried": report.tried, "kept": report.kept,
                     "acceptance": report.kept / report.tried if report.tried else 0.0, "seconds": report.seconds,
                     "tasks_per_min": per_min, "dropped": dict(report.dropped),
                     "difficulty": dict(report.difficulty), "skipped": report.skipped})  # fmt: skip
    base = next((r["tasks_per_min"] for r in rows if r["tasks_per_min"]), 1.0)
    print(f"{'library':<10} {'tried':>6} {'kept':>5} {'accept':>7} {'seconds':>8} {'tasks/min':>10} {'ratio':>7}")
    for r in rows:
        r["ratio"] = r["tasks_per_min"] / base
        print(f"{r['library']:<10} {r['tried']:>6} {r['kept']:>5} {r['acceptance']:>7.0%} {r['seconds']:>8.1f} "
              f"{r['tasks_per_min']:>10.1f} {r['ratio']:>6.2f}x")  # fmt: skip
    seconds = sum(r["seconds"] for r in rows)
    total = {"tasks": len(tasks), "seconds": seconds, "tasks_per_min": 60 * len(tasks) / seconds if seconds else 0.0}
    print(f"all: {total['tasks']} tasks in {seconds:.0f} s, {total['tasks_per_min']:.1f} tasks/min")
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "workers": args.workers,
            "per_library": args.per_library, "seed": args.seed}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows, "total": total}, indent=2))


if __name__ == "__main__":
    main()
