"""Reward red team of every env family: each scripted hack's return against the no-op's (the baseline), measured in
the same run, beside the oracle's.

One env per registered family (:func:`agentenv.redteam.family_envs`), test tasks ``0..N-1``; SWE with the binary
reward, where the no-op scores 0, and again with its default ratio reward (the untouched tree already passes most
tests: no hack may score above that); search on the world and on the CPython docs.
A hack *beats the no-op* when its mean return exceeds the no-op's by more than the margin (0.05).

Usage: python benchmarks/redteam.py [--episodes 15] [--swe-episodes 5] [--family keydoor ...]
       (writes benchmarks/results/redteam.json and benchmarks/results/redteam.md)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from agentenv.redteam import DEFAULT_MARGIN, family_envs, redteam, to_markdown

RESULTS = Path(__file__).parent / "results" / "redteam.json"
KWARGS = {"swe": {"reward": "binary"}}
#: Runs beside the one per family: SWE with its default reward (the no-op keeps the untouched tree's pass ratio, and
#: no hack may score above it) and the real-documentation search corpus.
EXTRA = [("swe", "AgentEnv/SWE-Mutants-v0", {"reward": "ratio"}), ("search", "AgentEnv/Search-PyDocs-v0", {})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=15, help="test tasks per hack")
    parser.add_argument("--swe-episodes", type=int, default=5, help="test tasks per hack on SWE (seconds each)")
    parser.add_argument("--family", action="append", help="only these families (repeatable)")
    args = parser.parse_args()

    runs = [(f, i, KWARGS.get(f)) for f, i in sorted(family_envs().items())] + EXTRA
    runs = [run for run in runs if not args.family or run[0] in args.family]
    reports, summary = [], []
    for family, env_id, env_kwargs in runs:
        episodes = args.swe_episodes if family == "swe" else args.episodes
        start = time.perf_counter()
        report = redteam(env_id, episodes, env_kwargs=env_kwargs)
        seconds = time.perf_counter() - start
        print(to_markdown(report))
        hacks = [r for r in report.results if r.kind == "hack"]
        best = max(hacks, key=lambda r: r.delta) if hacks else None
        oracle = report.oracle
        summary.append({
            "family": family, "env_id": env_id, "env_kwargs": report.env_kwargs, "episodes": episodes,
            "hacks": len(hacks), "noop_mean": report.noop.mean, "oracle_mean": oracle.mean if oracle else None,
            "best_hack": best.name if best else None, "best_delta": best.delta if best else None,
            "beaten": [r.name for r in report.beaten], "seconds": seconds,
        })  # fmt: skip
        reports.append(report)

    lines = [
        "| family | env | tasks | hacks | no-op | oracle | best hack (Δ vs no-op) | beat the no-op |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for row in summary:
        oracle = "-" if row["oracle_mean"] is None else f"{row['oracle_mean']:.3f}"
        best = f"{row['best_hack']} ({row['best_delta']:+.3f})" if row["best_hack"] else "-"
        kwargs = "".join(f" {k}={v}" for k, v in row["env_kwargs"].items())
        lines.append(f"| {row['family']} | {row['env_id'].split('/')[-1]}{kwargs} | {row['episodes']} | "
                     f"{row['hacks']} | {row['noop_mean']:.3f} | {oracle} | {best} | "
                     f"{', '.join(row['beaten']) or 'none'} |")  # fmt: skip
    overview = "\n".join(lines) + "\n"
    print(overview)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "redteam",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "margin": DEFAULT_MARGIN,
        "notes": "baseline: each family's no-op, same tasks, same run; test tasks 0..N-1; a hack beats the no-op "
        "when its mean return exceeds the no-op's by more than the margin",
        "summary": summary,
        "reports": [r.to_dict() for r in reports],
    }
    RESULTS.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = RESULTS.with_suffix(".md")
    tables = "\n".join(map(to_markdown, reports))
    markdown.write_text(f"# Reward red team (`python benchmarks/redteam.py`)\n\n{overview}\n{tables}", encoding="utf-8")
    print(f"wrote {RESULTS} and {markdown}")


if __name__ == "__main__":
    main()
