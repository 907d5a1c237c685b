"""A grid's results: one record per cell, one row per point (its seeds pooled), written as ``grid.json``,
``grid.csv``, ``grid.md`` and ``grid.png``.

Per row and evaluated env: the success rate over all test episodes of all seeds with its 95% Wilson interval; the
mean over seeds with a 95% t interval (two or more seeds); the gain over the starting model and over the after-SFT
model (RL's own gain), in points, as mean over seeds with a t interval.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from agentenv.recipes.grid import Cell, GridConfig, Plan, short

#: Two-sided 95% quantiles of Student's t by degrees of freedom (1.96 past 30).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}  # fmt: skip


def t95(df: int) -> float:
    if df > 30:
        return 1.96
    return T95[max(k for k in T95 if k <= df)]


def mean_ci(values: list[float]) -> dict[str, Any] | None:
    """Mean with a 95% t interval over ``values`` (one per seed); no interval for a single value."""
    if not values:
        return None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": 1, "values": values}
    half = t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": len(values), "values": values}


def pool(summaries: list[dict[str, Any] | None], seeds: list[int] | None = None) -> dict[str, Any] | None:
    """One success rate over the test episodes of several seeds, with its 95% Wilson interval, and the per-seed
    rates with their mean and t interval. With ``seeds`` (one per summary) and every summary holding its tasks'
    ``outcomes``, also ``outcomes``: ``"<seed>/<task>"`` -> solved, what a paired comparison of two rows reads."""
    from agentenv.rollout import wilson_interval

    tagged = [(seed, s) for seed, s in zip(seeds or [None] * len(summaries), summaries, strict=True)
              if s and s.get("episodes")]  # fmt: skip
    if not tagged:
        return None
    n = sum(s["episodes"] for _, s in tagged)
    successes = round(sum(s["success_rate"] * s["episodes"] for _, s in tagged))
    low, high = wilson_interval(successes, n)
    per_seed = [s["success_rate"] for _, s in tagged]
    pooled = {"success_rate": successes / n, "success_ci_low": low, "success_ci_high": high, "episodes": n,
              "per_seed": per_seed, "over_seeds": mean_ci(per_seed)}  # fmt: skip
    if seeds is not None and all(isinstance(s.get("outcomes"), dict) for _, s in tagged):
        pooled["outcomes"] = {f"{seed}/{task}": ok for seed, s in tagged for task, ok in s["outcomes"].items()}
    return pooled


def _labels(recipe: Any, stage: str) -> dict[str, str]:
    from agentenv.recipes.run import eval_labels

    return {env: label for label, env in eval_labels(recipe, stage).items()}


def _pick(results: dict[str, Any] | None, labels: dict[str, str]) -> dict[str, Any]:
    evaluations = (results or {}).get("evaluations", {})
    return {env: evaluations[label] for env, label in labels.items() if label in evaluations}


def cell_record(plan: Plan, cell: Cell, done: dict[Path, Any], failed: dict[Path, str], skipped: set) -> dict:
    """One cell's evaluations (before, after SFT, after) and costs, read from the runs that hold them."""
    own = plan.own[cell.dir]
    results = done.get(cell.dir)
    shared = plan.sft_from.get(cell.dir)
    before_dir = plan.before_from.get(cell.dir)
    if shared is not None:  # the shared run's "after" is this cell's after-SFT model
        after_sft = _pick(done.get(shared), _labels(own.recipe, "after"))
    else:
        after_sft = {env: s for env, s in _pick(results, _labels(own.recipe, "after SFT")).items()}
    seconds = (results or {}).get("seconds", {})
    train = seconds.get("sft", 0.0) + seconds.get("rl", 0.0)
    if shared is not None:
        train += done.get(shared, {}).get("seconds", {}).get("sft", 0.0)
    status = "done" if results is not None else f"failed: {failed.get(cell.dir, 'not run')}"
    return {"point": cell.point, "seed": cell.seed, "dir": str(cell.dir), "status": status,
            "skipped": cell.dir in skipped, "sft_from": str(shared) if shared else None,
            "sft_demos": cell.sft_demos, "rl_iterations": cell.rl_iterations, "rl_episodes": cell.rl_episodes,
            "train_seconds": train, "after": _pick(results, _labels(own.recipe, "after")), "after_sft": after_sft,
            "before": _pick(done.get(before_dir), _labels(own.recipe, "before")) if before_dir else {}}  # fmt: skip


def _gain(records: list[dict[str, Any]], env: str, start: str) -> dict[str, Any] | None:
    """The gain of ``after`` over ``start`` in success on ``env``: mean over seeds with a t interval and, when the
    evaluations recorded each task's outcome, ``paired``: the test tasks of every seed compared one by one
    (:func:`agentenv.rollout.paired_difference_interval`), an interval even for one seed."""
    from agentenv.rollout import paired_by_task

    measured = [r for r in records if env in r["after"] and env in r[start]]
    gain = mean_ci([r["after"][env]["success_rate"] - r[start][env]["success_rate"] for r in measured])
    after, before = {}, {}
    for r in measured:
        for mine, theirs in ((after, r["after"][env]), (before, r[start][env])):
            mine.update({f"{r['seed']}/{task}": ok for task, ok in (theirs.get("outcomes") or {}).items()})
    if gain is not None and after and after.keys() == before.keys():
        gain["paired"] = paired_by_task(after, before)
    return gain


def summarize_grid(grid: GridConfig, plan: Plan, records: list[dict[str, Any]]) -> dict[str, Any]:
    """``grid.json``: the config, one row per point (seeds pooled), and every cell's record."""
    envs: list[str] = []
    for cell in plan.cells:
        for env in _labels(plan.own[cell.dir].recipe, "after"):
            envs += [env] if env not in envs else []
    rows = []
    for point in grid.points():
        mine = [r for r in records if r["point"] == point and r["status"] == "done"]
        first = next(r for r in records if r["point"] == point)
        row = {"point": point, "seeds": [r["seed"] for r in mine], "sft_demos": first["sft_demos"],
               "rl_iterations": first["rl_iterations"], "rl_episodes": first["rl_episodes"],
               "train_seconds": sum(r["train_seconds"] for r in mine) / len(mine) if mine else None}  # fmt: skip
        if grid.is_budget:
            row["cost"] = (first["sft_demos"] or 0) * grid.sft_cost + (first["rl_episodes"] or 0)
        for key in ("after", "after_sft", "before"):
            seeds = [r["seed"] for r in mine]
            row[key if key != "after" else "success"] = {env: pool([r[key].get(env) for r in mine], seeds)
                                                         for env in envs}  # fmt: skip
        row["gain"] = {env: _gain(mine, env, "before") for env in envs}
        row["rl_gain"] = {env: _gain(mine, env, "after_sft") for env in envs}
        rows.append(row)
    before_by_source: dict[str, dict[str, Any]] = {}
    for r, cell in zip(records, plan.cells, strict=True):
        source = str(plan.before_from.get(cell.dir))
        if r["before"] and source not in before_by_source:
            before_by_source[source] = r["before"]
    before = {env: pool([b.get(env) for b in before_by_source.values()]) for env in envs}
    base = grid.base()
    return {"name": grid.name, "finding": grid.finding, "kind": "budget" if grid.is_budget else "sweep",
            "budget": grid.budget, "sft_cost": grid.sft_cost, "axes": grid.axes, "variants": grid.variants,
            "fractions": grid.fractions,
            "rl_episodes_per_iteration": base.rl.episodes if base.rl is not None else None, "model": base.model.name,
            "envs": envs, "eval_episodes": base.eval.episodes, "before": before if any(before.values()) else None,
            "rows": rows, "cells": records, "failed": [r for r in records if r["status"] != "done"],
            "written": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip


# ---- the table -----------------------------------------------------------------------------------------------
def _ci(s: dict[str, Any] | None) -> str:
    if not s:
        return "-"
    return f"{s['success_rate']:.1%} [{s['success_ci_low']:.0%}, {s['success_ci_high']:.0%}]"


def _points(g: dict[str, Any] | None) -> str:
    """A gain in points: with its t interval over seeds, else (one seed) its paired interval over the test tasks."""
    if not g:
        return "-"
    text = f"{100 * g['mean']:+.1f}"
    if g["ci_low"] is not None:
        return text + f" [{100 * g['ci_low']:+.0f}, {100 * g['ci_high']:+.0f}]"
    paired = g.get("paired")
    return text + (f" [{100 * paired['low']:+.0f}, {100 * paired['high']:+.0f}] paired" if paired else "")


def point_columns(summary: dict[str, Any]) -> list[str]:
    """The row-naming columns: the variant, each axis by its short name, and for budget grids the cost split."""
    columns = ["variant"] if summary.get("variants") else []
    columns += [short(k) for k in summary.get("axes") or {}]
    if summary.get("kind") == "budget":
        columns += ["SFT fraction", "SFT demos", "RL episodes", "cost"]
    return columns


def _point_cells(summary: dict[str, Any], row: dict[str, Any]) -> list[str]:
    point = row["point"]
    cells = [str(point["variant"])] if summary.get("variants") else []
    cells += [str(point[k]).split("/")[-1] for k in summary.get("axes") or {}]
    if summary.get("kind") == "budget":
        cells += [f"{point['fraction']:g}", str(row["sft_demos"] or 0), str(row["rl_episodes"] or 0),
                  f"{row['cost']:g}"]  # fmt: skip
    return cells


def grid_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the grid table (strings), a ``before`` row first when the starting model was evaluated:
    success per env (pooled, Wilson CI), then the in-domain gain over the start and RL's gain over SFT (points)."""
    envs, columns = summary["envs"], point_columns(summary)
    home = envs[0] if envs else ""
    with_rl_gain = any(r["rl_gain"].get(home) for r in summary["rows"])
    header = [*columns, *(f"success {e.split('/')[-1]}" for e in envs), "gain vs start"]
    header += ["RL gain vs SFT"] if with_rl_gain else []
    header += ["train s"]
    rows = []
    if summary.get("before"):
        label = ["before", *["-"] * (len(columns) - 1)] if columns else []
        rows.append([*label, *(_ci(summary["before"].get(e)) for e in envs), "-", *(["-"] if with_rl_gain else []),
                     "-"])  # fmt: skip
    for r in summary["rows"]:
        seconds = f"{r['train_seconds']:.0f}" if r["train_seconds"] is not None else "-"
        rows.append([*_point_cells(summary, r), *(_ci(r["success"].get(e)) for e in envs), _points(r["gain"][home]),
                     *([_points(r["rl_gain"][home])] if with_rl_gain else []), seconds])  # fmt: skip
    return header, rows


def grid_markdown(summary: dict[str, Any]) -> str:
    header, rows = grid_table(summary)
    seeds = sorted({c["seed"] for c in summary["cells"]})
    what = "SFT:RL budget grid" if summary["kind"] == "budget" else "grid"
    lines = [f"# {summary['name']}: {what}", ""]
    if summary["kind"] == "budget":
        lines.append(f"Budget {summary['budget']:g} RL episodes; one SFT demonstration costs "
                     f"{summary['sft_cost']:g} episodes.")  # fmt: skip
    lines += [
        f"Model {summary['model']}; seeds {seeds}. Success on the first {summary['eval_episodes']} held-out test "
        f"tasks of each env, pooled over seeds with a 95% Wilson interval; gains in points, mean over seeds (95% t "
        f"interval with two or more seeds; with one, a 95% interval paired task by task where the tasks' outcomes "
        f"were recorded); in-domain: {summary['envs'][0] if summary['envs'] else '-'}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    for r in summary["failed"]:
        lines.append(f"- {r['dir']}: {r['status']}")
    return "\n".join(lines) + ("\n" if summary["failed"] else "")


def write_csv(summary: dict[str, Any], path: str | Path) -> Path:
    """One line per row and evaluated env: the point, seeds, success (pooled and over seeds), gains."""
    path = Path(path)
    keys = (["variant"] if summary.get("variants") else []) + list(summary.get("axes") or {})
    keys += ["fraction"] if summary.get("kind") == "budget" else []
    fields = [*keys, "env", "seeds", "episodes", "success", "success_ci_low", "success_ci_high", "seed_mean",
              "seed_ci_low", "seed_ci_high", "before", "after_sft", "gain", "gain_ci_low", "gain_ci_high", "rl_gain",
              "rl_gain_ci_low", "rl_gain_ci_high", "sft_demos", "rl_episodes", "train_seconds"]  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for r in summary["rows"]:
            for env in summary["envs"]:
                s, g, rg = r["success"].get(env) or {}, r["gain"].get(env) or {}, r["rl_gain"].get(env) or {}
                seeds = s.get("over_seeds") or {}
                writer.writerow({**{k: r["point"].get(k) for k in keys}, "env": env, "seeds": len(r["seeds"]),
                                 "episodes": s.get("episodes"), "success": s.get("success_rate"),
                                 "success_ci_low": s.get("success_ci_low"), "success_ci_high": s.get("success_ci_high"),
                                 "seed_mean": seeds.get("mean"), "seed_ci_low": seeds.get("ci_low"),
                                 "seed_ci_high": seeds.get("ci_high"),
                                 "before": (r["before"].get(env) or {}).get("success_rate"),
                                 "after_sft": (r["after_sft"].get(env) or {}).get("success_rate"),
                                 "gain": g.get("mean"), "gain_ci_low": g.get("ci_low"),
                                 "gain_ci_high": g.get("ci_high"),
                                 "rl_gain": rg.get("mean"), "rl_gain_ci_low": rg.get("ci_low"),
                                 "rl_gain_ci_high": rg.get("ci_high"), "sft_demos": r["sft_demos"],
                                 "rl_episodes": r["rl_episodes"], "train_seconds": r["train_seconds"]})  # fmt: skip
    return path


def write_outputs(summary: dict[str, Any], out: Path) -> None:
    from agentenv.recipes.grid_plot import plot_grid

    (out / "grid.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "grid.md").write_text(grid_markdown(summary), encoding="utf-8")
    write_csv(summary, out / "grid.csv")
    plot_grid(summary, out / "grid.png")
