"""Budgeted SFT:RL grids: one fixed budget split between SFT demonstrations and RL episodes, swept over SFT shares.

The cost model counts everything in RL episodes: one SFT demonstration costs ``sft_cost`` episodes. For an SFT
fraction ``f`` of ``budget``, a cell trains on ``round(f * budget / sft_cost)`` walkthrough demonstrations, then
runs ``round((1 - f) * budget / rl.episodes)`` RL iterations (halves round up; a stage that gets 0 is left out).
Each (fraction, seed) cell is an ordinary recipe run in ``<output>/f<fraction>-s<seed>/``; the starting model is
evaluated once per seed (in the first cell that runs) and shared. Finished cells are skipped, so a killed grid
resumes where it stopped. The grid writes ``grid.json``, ``grid.md`` (the table) and ``grid.png`` (success against
the SFT fraction, one line per evaluated env, 95% CIs; dashed: the starting model).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError, check_range
from agentenv.recipes.config import (
    Recipe,
    build,
    load_recipe,
    merge,
    packaged_recipe,
    parse_overrides,
    read_mapping,
    read_yaml,
)


@dataclass
class GridConfig:
    name: str = "grid"
    recipe: dict[str, Any] = field(default_factory=dict)  # the base recipe (a path or packaged name is read at load)
    budget: float = 256.0  # total, in RL episodes
    sft_cost: float = 1.0  # one SFT demonstration costs this many RL episodes
    fractions: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])  # SFT shares of the budget
    seeds: list[int] | None = None  # repeat each fraction over these seeds (default: the base recipe's seed)
    output: str = "runs/{name}"

    def validate(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"name={self.name!r} must be a non-empty name without '/'")
        check_range("budget", self.budget, 0.0)
        if self.budget <= 0:
            raise ConfigError(f"budget={self.budget!r} must be positive")
        check_range("sft_cost", self.sft_cost, 0.0)
        if self.sft_cost <= 0:
            raise ConfigError(f"sft_cost={self.sft_cost!r} must be positive")
        if not self.fractions:
            raise ConfigError("fractions: give at least one SFT fraction in [0, 1]")
        for i, f in enumerate(self.fractions):
            check_range(f"fractions[{i}]", f, 0.0, 1.0)
        if len({f"{f:g}" for f in self.fractions}) < len(self.fractions):
            raise ConfigError(f"fractions={self.fractions}: each fraction may appear once")
        if self.seeds is not None:
            if not self.seeds:
                raise ConfigError("seeds: give at least one seed, or leave it out")
            for i, s in enumerate(self.seeds):
                check_range(f"seeds[{i}]", s, 0, integer=True)
            if len(set(self.seeds)) < len(self.seeds):
                raise ConfigError(f"seeds={self.seeds}: each seed may appear once")
        self.cells()  # the base recipe and every cell's recipe validate

    @property
    def output_dir(self) -> Path:
        return Path(self.output.format(name=self.name))

    def base(self) -> Recipe:
        """The base recipe, validated; errors name fields from the grid's root (``recipe.rl.lr``)."""
        try:
            return load_recipe(self.recipe)
        except ConfigError as e:
            raise ConfigError(f"recipe.{e}" if not str(e).startswith("a recipe") else f"recipe: {e}") from e

    def cells(self) -> list[Cell]:
        """Every (fraction, seed) cell in run order: seeds outermost, fractions as listed."""
        sft = self.recipe.get("sft")
        if isinstance(sft, dict) and sft.get("data") is not None:  # before the recipe reads the file
            raise ConfigError("recipe.sft.data: a budget grid counts walkthrough demonstrations; leave sft.data out")
        base = self.base()
        if base.rl is None and any(f < 1 for f in self.fractions):
            raise ConfigError("recipe.rl: the base recipe needs an rl section (rl.episodes is the RL budget's unit)")
        rl_episodes = base.rl.episodes if base.rl is not None else 1
        out = []
        for seed in self.seeds if self.seeds is not None else [base.seed]:
            for i, fraction in enumerate(self.fractions):
                demos, iterations = cost_split(fraction, self.budget, self.sft_cost, rl_episodes)
                if demos == 0 and iterations == 0:
                    raise ConfigError(
                        f"fractions[{i}]={fraction:g}: budget={self.budget:g} buys 0 SFT demonstrations "
                        f"(sft_cost={self.sft_cost:g}) and 0 RL iterations (recipe.rl.episodes={rl_episodes})"
                    )
                folder = self.output_dir / f"f{fraction:g}-s{seed}"
                data = dict(self.recipe)
                data.update(name=f"{self.name}-f{fraction:g}-s{seed}", seed=seed)
                data["output"] = {**(data.get("output") or {}), "dir": str(folder)}
                data["sft"] = {**(data.get("sft") or {}), "episodes": demos} if demos else None
                data["rl"] = {**(data.get("rl") or {}), "iterations": iterations} if iterations else None
                try:
                    recipe = load_recipe(data)
                except ConfigError as e:
                    raise ConfigError(f"fractions[{i}]={fraction:g}: recipe.{e}") from e
                out.append(Cell(fraction, seed, demos, iterations, iterations * rl_episodes, folder, recipe))
        return out


@dataclass
class Cell:
    fraction: float
    seed: int
    sft_demos: int
    rl_iterations: int
    rl_episodes: int
    dir: Path
    recipe: Recipe


def cost_split(fraction: float, budget: float, sft_cost: float, rl_episodes: int) -> tuple[int, int]:
    """``(SFT demonstrations, RL iterations)`` for an SFT share ``fraction`` of ``budget`` (in RL episodes)."""
    return _round(fraction * budget / sft_cost), _round((1 - fraction) * budget / rl_episodes)


def _round(x: float) -> int:
    return math.floor(x + 0.5 + 1e-9)


def load_grid(source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> GridConfig:
    """A validated :class:`GridConfig` from a YAML file (or a dict) with ``field=value`` / ``recipe.x.y=value``
    overrides. A ``recipe`` given as a path (relative to the grid file, else to the working folder) or the name of a
    packaged recipe is read in first, so overrides reach into it."""
    folder = Path.cwd()
    if isinstance(source, dict):
        data = dict(source)
    else:
        data = read_mapping(source, "grid")
        folder = Path(source).parent
    overrides = list(overrides or [])
    for pair in [p for p in overrides if p.startswith("recipe=")]:  # a new base, before overrides reach into it
        overrides.remove(pair)
        data["recipe"] = read_yaml(pair.partition("=")[2]) or None
    updates = parse_overrides(overrides)
    if isinstance(data.get("recipe"), (str, Path)):
        data["recipe"] = _read_recipe(str(data["recipe"]), folder)
    grid = build(GridConfig, merge(data, updates), "")
    grid.validate()
    return grid


def _read_recipe(name: str, folder: Path) -> dict[str, Any]:
    path = next((p for p in (folder / name, Path(name)) if p.is_file()), None)
    return read_mapping(path if path is not None else packaged_recipe(name), "recipe")


def _labels(recipe: Recipe) -> dict[str, str]:
    """Evaluated env id -> the label of its final evaluation in ``results.json``."""
    return {recipe.env.id: "after", **{h: f"after {h.split('/')[-1]}" for h in recipe.eval.harder}}


def _comparable(recipe: Recipe) -> dict[str, Any]:
    data = json.loads(json.dumps(recipe.to_dict(), default=str))
    data["eval"].pop("before", None)
    return data


def _read_results(cell: Cell) -> dict[str, Any] | None:
    """The cell's ``results.json`` if its run finished, else ``None``; a folder holding another recipe is an error."""
    saved = cell.dir / "recipe.json"
    if saved.exists():
        stored = json.loads(saved.read_text())
        stored.get("eval", {}).pop("before", None)
        if stored != _comparable(cell.recipe):
            raise ConfigError(
                f"{str(cell.dir)!r} holds a run of a different recipe: change output (or remove that folder)"
            )
    path = cell.dir / "results.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    done = "total (this run)" in results.get("seconds", {})
    return results if done and all(label in results["evaluations"] for label in _labels(cell.recipe).values()) else None


def run_grid(grid: GridConfig, *, console: Any = None) -> dict[str, Any]:
    """Run (or skip, when finished) every cell, then write and return ``grid.json``; also ``grid.md``, ``grid.png``."""
    out = grid.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid_config.json").write_text(json.dumps(_jsonable_config(grid), indent=1))
    cells = grid.cells()
    base = grid.base()
    finished = [_read_results(cell) for cell in cells]  # a folder of another recipe fails before anything runs
    records = []
    for cell, results in zip(cells, finished, strict=True):
        what = f"f={cell.fraction:g} seed {cell.seed}: {cell.sft_demos} SFT demos + {cell.rl_iterations} RL iterations"
        if results is not None:
            _say(console, f"[dim]skip {what} (finished in {cell.dir})[/]")
            records.append(_record(cell, results, skipped=True))
            continue
        has_before = any(
            "before" in (_partial_results(c) or {}).get("evaluations", {}) for c in cells if c.seed == cell.seed
        )
        cell.recipe.eval.before = base.eval.before and not has_before
        _say(console, f"[bold]grid cell[/] {what} ({cell.rl_episodes} RL episodes) -> {cell.dir}")
        from agentenv.recipes.run import run_recipe

        resume = (cell.dir / "recipe.json").exists()
        results = run_recipe(cell.recipe, resume=resume, console=console)
        records.append(_record(cell, results, skipped=False))
    summary = summarize_grid(grid, base, cells, records)
    (out / "grid.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "grid.md").write_text(grid_markdown(summary), encoding="utf-8")
    plot_grid(summary, out / "grid.png")
    return summary


def _partial_results(cell: Cell) -> dict[str, Any] | None:
    path = cell.dir / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def _say(console: Any, text: str) -> None:
    if console is not None:
        console.print(text)


def _jsonable_config(grid: GridConfig) -> dict[str, Any]:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(grid), default=str))


def _record(cell: Cell, results: dict[str, Any], *, skipped: bool) -> dict[str, Any]:
    seconds = results.get("seconds", {})
    evaluations = results.get("evaluations", {})
    return {
        "fraction": cell.fraction,
        "seed": cell.seed,
        "dir": str(cell.dir),
        "sft_demos": cell.sft_demos,
        "rl_iterations": cell.rl_iterations,
        "rl_episodes": cell.rl_episodes,
        "skipped": skipped,
        "train_seconds": seconds.get("sft", 0.0) + seconds.get("rl", 0.0),
        "after": {env: evaluations[label] for env, label in _labels(cell.recipe).items() if label in evaluations},
        "before": {
            env: evaluations[label.replace("after", "before", 1)]
            for env, label in _labels(cell.recipe).items()
            if label.replace("after", "before", 1) in evaluations
        },
    }


def _pool(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One success rate over the test episodes of several seeds, with its 95% Wilson interval."""
    from agentenv.rollout import wilson_interval

    summaries = [s for s in summaries if s.get("episodes")]
    if not summaries:
        return None
    n = sum(s["episodes"] for s in summaries)
    successes = round(sum(s["success_rate"] * s["episodes"] for s in summaries))
    low, high = wilson_interval(successes, n)
    per_seed = [s["success_rate"] for s in summaries]
    return {"success_rate": successes / n, "success_ci_low": low, "success_ci_high": high, "episodes": n,
            "per_seed": per_seed}  # fmt: skip


def summarize_grid(grid: GridConfig, base: Recipe, cells: list[Cell], records: list[dict[str, Any]]) -> dict[str, Any]:
    """``grid.json``: the config, one row per fraction (success pooled over seeds), and every cell's record."""
    envs = list(_labels(cells[0].recipe))
    rows = []
    for fraction in grid.fractions:
        mine = [r for r in records if r["fraction"] == fraction]
        rows.append({
            "fraction": fraction,
            "sft_demos": mine[0]["sft_demos"],
            "rl_iterations": mine[0]["rl_iterations"],
            "rl_episodes": mine[0]["rl_episodes"],
            "cost": mine[0]["sft_demos"] * grid.sft_cost + mine[0]["rl_episodes"],
            "seeds": [r["seed"] for r in mine],
            "success": {env: _pool([r["after"][env] for r in mine if env in r["after"]]) for env in envs},
            "train_seconds": sum(r["train_seconds"] for r in mine) / len(mine),
        })  # fmt: skip
    before_by_seed: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["before"] and r["seed"] not in before_by_seed:
            before_by_seed[r["seed"]] = r["before"]
    before = {env: _pool([b[env] for b in before_by_seed.values() if env in b]) for env in envs}
    return {
        "name": grid.name,
        "budget": grid.budget,
        "sft_cost": grid.sft_cost,
        "rl_episodes_per_iteration": base.rl.episodes if base.rl is not None else None,
        "model": base.model.name,
        "envs": envs,
        "eval_episodes": base.eval.episodes,
        "before": before if any(before.values()) else None,
        "rows": rows,
        "cells": records,
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _ci(s: dict[str, Any] | None) -> str:
    if not s:
        return "-"
    return f"{s['success_rate']:.1%} [{s['success_ci_low']:.0%}, {s['success_ci_high']:.0%}]"


def grid_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the grid table (strings), a ``before`` row first when the starting model was evaluated."""
    envs = summary["envs"]
    header = ["SFT fraction", "SFT demos", "RL episodes", "cost", *(f"success {e.split('/')[-1]}" for e in envs),
              "train s"]  # fmt: skip
    rows = []
    if summary.get("before"):
        rows.append(["before", "-", "-", "-", *(_ci(summary["before"].get(e)) for e in envs), "-"])
    for r in summary["rows"]:
        rows.append([f"{r['fraction']:g}", str(r["sft_demos"]), str(r["rl_episodes"]), f"{r['cost']:g}",
                     *(_ci(r["success"].get(e)) for e in envs), f"{r['train_seconds']:.0f}"])  # fmt: skip
    return header, rows


def grid_markdown(summary: dict[str, Any]) -> str:
    header, rows = grid_table(summary)
    seeds = sorted({c["seed"] for c in summary["cells"]})
    lines = [
        f"# {summary['name']}: SFT:RL budget grid",
        "",
        f"Budget {summary['budget']:g} RL episodes; one SFT demonstration costs {summary['sft_cost']:g} episodes; "
        f"model {summary['model']}; seeds {seeds}. Success on the first {summary['eval_episodes']} held-out test "
        f"tasks of each env (pooled over seeds, 95% Wilson CI); in-domain: {summary['envs'][0]}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    return "\n".join(lines)


def plot_grid(summary: dict[str, Any], path: str | Path) -> Path | None:
    """Success against the SFT fraction, one line per evaluated env with 95% CI bars (dashed: the starting model).
    Returns the path, or ``None`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = sorted(summary["rows"], key=lambda r: r["fraction"])
    for i, env in enumerate(summary["envs"]):
        color = f"C{i}"
        points = [(r["fraction"], r["success"][env]) for r in rows if r["success"].get(env)]
        label = env.split("/")[-1] + (" (in-domain)" if i == 0 else "")
        if points:
            dodge = (i - (len(summary["envs"]) - 1) / 2) * 0.008  # overlapping lines stay visible
            xs = [x + dodge for x, _ in points]
            ys = [s["success_rate"] for _, s in points]
            err = [[s["success_rate"] - s["success_ci_low"] for _, s in points],
                   [s["success_ci_high"] - s["success_rate"] for _, s in points]]  # fmt: skip
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, color=color, label=label)
        before = (summary.get("before") or {}).get(env)
        if before:
            ax.axhline(before["success_rate"], color=color, linestyle="--", linewidth=1, alpha=0.7)
    ax.set_xticks([r["fraction"] for r in rows], [f"{r['fraction']:g}\n{r['sft_demos']}d/{r['rl_episodes']}e"
                                                  for r in rows], fontsize=8)  # fmt: skip
    ax.set(xlabel="SFT fraction of the budget (demos / RL episodes)", ylabel="success on held-out test tasks",
           ylim=(-0.05, 1.05), title=f"{summary['name']}: budget {summary['budget']:g} RL episodes, "
           f"1 demo = {summary['sft_cost']:g} episodes")  # fmt: skip
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8, title="dashed: before training" if summary.get("before") else None, title_fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
