"""Collect policy–judge co-training runs (``agentenv train recipes/cotrain-reading.yaml ...``) into one table and plot.

Each run folder holds ``results.json`` (evaluations, the ``cotrain`` monitor rows) and ``metrics.jsonl`` (the same
rows as they were logged, which a run stopped early still has). For every run this prints, per RL iteration, the
judge's disagreement with the verifier, its FPR/FNR on the policy's answers, the verified success on that
iteration's training draws and, where the run evaluated, the held-out success (the verifier on test tasks), then
writes ``benchmarks/results/cotrain_reading.json`` and ``.png``.

    python benchmarks/cotrain_reading.py LABEL=runs/FOLDER [LABEL=runs/FOLDER ...] [--note LABEL="what it was"]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def load_run(folder: Path) -> dict[str, Any]:
    """A run's recipe, evaluations and monitor rows (from metrics.jsonl, so an unfinished run counts too)."""
    recipe = json.loads((folder / "recipe.json").read_text())
    results = json.loads((folder / "results.json").read_text()) if (folder / "results.json").exists() else {}
    rows, rl = [], {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("stage") == "cotrain":
            rows.append({k: v for k, v in record.items() if k not in ("stage", "step", "time")})
        elif record.get("stage") == "rl":
            rl[record["step"]] = record
    evaluations = {label: {k: e[k] for k in ("episodes", "success_rate", "success_ci_low", "success_ci_high")}
                   for label, e in results.get("evaluations", {}).items()}  # fmt: skip
    cotrain = recipe.get("cotrain")
    return {
        "folder": str(folder),
        "judge_start": cotrain["judge"] if cotrain else None,
        "reward": cotrain["reward"] if cotrain else "verifier",
        "judge_steps_per_iteration": cotrain["steps"] if cotrain else None,
        "iterations_planned": recipe["rl"]["iterations"],
        "iterations_done": len(rl),
        "episodes_per_iteration": recipe["rl"]["episodes"],
        "sft_demonstrations": recipe["sft"]["episodes"] if recipe.get("sft") else 0,
        "evaluations": evaluations,
        "rl_success_by_iteration": [rl[i]["success_rate"] for i in sorted(rl)],
        "rl_seconds_by_iteration": [round(rl[i]["seconds"]) for i in sorted(rl)],
        "cotrain": rows,
    }


def held_out_curve(run: dict[str, Any]) -> list[tuple[int, float]]:
    """(iteration, held-out success): after SFT as iteration 0, the mid-run evaluations, and 'after'."""
    e = run["evaluations"]
    points = [(0, e["after SFT"]["success_rate"])] if "after SFT" in e else []
    points += [(r["iteration"], r["held_out_success"]) for r in run["cotrain"] if r.get("held_out_success") is not None]
    if "after" in e:
        points.append((run["iterations_done"], e["after"]["success_rate"]))
    return points


def summary(run: dict[str, Any]) -> dict[str, Any]:
    """The run in a few numbers: mean disagreement over the first and the second half of its iterations (an odd
    middle one counts in neither), the largest after the first, and held-out success after SFT and at the end."""
    values = [r["disagreement"] for r in run["cotrain"] if r.get("disagreement") is not None]
    half = len(values) // 2
    curve = held_out_curve(run)

    def mean(xs: list[float]) -> float | None:
        return round(sum(xs) / len(xs), 4) if xs else None

    return {
        "disagreement_first_half_mean": mean(values[:half]),
        "disagreement_second_half_mean": mean(values[len(values) - half :]),
        "disagreement_max_after_first": max(values[1:], default=None),
        "held_out_start": curve[0][1] if curve else None,
        "held_out_end": curve[-1][1] if curve else None,
    }


def plot(runs: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, run in runs.items():
        rows = [r for r in run["cotrain"] if r.get("disagreement") is not None]
        if rows:
            left.plot([r["iteration"] for r in rows], [r["disagreement"] for r in rows], marker="o", label=label)
        curve = held_out_curve(run)
        if curve:
            right.plot(*zip(*curve, strict=True), marker="o", label=label)
    left.set_title("judge vs verifier disagreement (policy's answers)")
    right.set_title("held-out success (verifier, test tasks)")
    for ax in (left, right):
        ax.set_xlabel("RL iteration (0: after SFT)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(label: str, run: dict[str, Any]) -> None:
    def pct(x: Any) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"

    print(f"\n{label}: judge {run['judge_start']}, reward {run['reward']}, {run['iterations_done']}/"
          f"{run['iterations_planned']} iterations of {run['episodes_per_iteration']} answers")  # fmt: skip
    print("iteration | disagreement | judge FPR | judge FNR | judge AUROC | verified (train draws) | held-out")
    for r in run["cotrain"]:
        print(f"{r['iteration']:>9} | {pct(r.get('disagreement')):>12} | {pct(r.get('judge_fpr')):>9} | "
              f"{pct(r.get('judge_fnr')):>9} | {pct(r.get('judge_auroc')):>11} | "
              f"{pct(r.get('verified_success')):>22} | {pct(r.get('held_out_success')):>8}")  # fmt: skip
    for name, e in run["evaluations"].items():
        print(f"  {name}: {e['success_rate']:.1%} [{e['success_ci_low']:.0%}, {e['success_ci_high']:.0%}] "
              f"on {e['episodes']} test tasks")  # fmt: skip
    s = run["summary"]
    print(f"  disagreement mean: first half {pct(s['disagreement_first_half_mean'])}, second half "
          f"{pct(s['disagreement_second_half_mean'])}, max after iteration 1 {pct(s['disagreement_max_after_first'])}; "
          f"held-out {pct(s['held_out_start'])} -> {pct(s['held_out_end'])}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=FOLDER")
    parser.add_argument("--note", action="append", default=[], help='LABEL="what this run shows"')
    parser.add_argument("--out", type=Path, default=RESULTS / "cotrain_reading.json")
    args = parser.parse_args()
    notes = dict(n.split("=", 1) for n in args.note)
    runs = {}
    for spec in args.runs:
        label, folder = spec.split("=", 1)
        runs[label] = {**load_run(Path(folder)), "note": notes.get(label, "")}
        runs[label]["summary"] = summary(runs[label])
        print_table(label, runs[label])
    machine = {"cpus": os.cpu_count(), "torch_threads": 1, "note": "runs at 1 torch thread each, side by side"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "machine": machine}, indent=1) + "\n")
    plot(runs, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
