"""Experiment grids: a sweep over any recipe fields, run cell by cell (resumable, in parallel), one table at the end.

A grid YAML names a base ``recipe`` and what varies:

* ``axes``: recipe fields (dotted, e.g. ``rl.algorithm``, ``env.kwargs.reward``, ``env.id``) -> lists of values;
  the cells are their product;
* ``variants``: named bundles of field values (``sparse: {env.kwargs.reward: sparse}``), one more axis;
* ``budget`` with ``fractions``: one fixed budget, counted in RL episodes, split between SFT demonstrations (one costs
  ``sft_cost`` episodes) and RL iterations at each SFT fraction ``f``: ``round(f * budget / sft_cost)``
  demonstrations, then ``round((1 - f) * budget / rl.episodes)`` RL iterations (halves round up; a stage that gets 0
  is left out) -- the SFT:RL budget grid is this one axis;
* ``seeds``: every cell is repeated over them; rows pool their seeds (95% CIs over seeds and over test episodes);
* ``overrides``: recipe fields set for every cell (so one base recipe serves several grids); ``finding`` names the
  seed paper's finding the grid measures (``agentenv report`` sets our numbers beside the paper's).

Each cell is an ordinary recipe run in its own folder under ``output``. Cells whose SFT stage is the same (same
seed, model, env, SFT and eval sections) train it once (``share_sft``): a shared run does the starting model's
evaluation, SFT and the after-SFT evaluation, and the cells' RL starts from its weights. Cells without SFT share
the starting model's evaluation the same way. A finished cell is skipped, a killed one resumes from its checkpoints,
so a grid picks up where it stopped. Cells run one at a time in this process, or ``jobs`` at a time in
subprocesses (one GPU each with ``gpus``), or as tasks on a Ray cluster (:mod:`agentenv.recipes.grid_exec`).
The grid writes ``grid.json``, ``grid.csv``, ``grid.md`` and ``grid.png`` (:mod:`agentenv.recipes.grid_table`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError, check_range
from agentenv.policies.rl_config import RLConfig
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

DEFAULT_FRACTIONS = [0.0, 0.25, 0.5, 0.75, 1.0]


@dataclass
class GridConfig:
    name: str = "grid"
    recipe: dict[str, Any] = field(default_factory=dict)  # the base recipe (a path or packaged name is read at load)
    finding: str | None = None  # the seed paper's finding this grid measures (agentenv report reads it)
    overrides: dict[str, Any] = field(default_factory=dict)  # recipe field (dotted) -> value, for every cell
    axes: dict[str, Any] = field(default_factory=dict)  # recipe field (dotted) -> values; cells are the product
    variants: dict[str, Any] | None = None  # name -> {recipe field: value}: one more axis, of named bundles
    budget: float | None = None  # SFT:RL budget grid: the total, in RL episodes (needs an rl section)
    sft_cost: float = 1.0  # one SFT demonstration costs this many RL episodes
    fractions: list[float] | None = None  # SFT shares of the budget (default 0, 0.25, 0.5, 0.75, 1 with a budget)
    seeds: list[int] | None = None  # repeat each cell over these seeds (default: the base recipe's seed)
    share_sft: bool = True  # cells with the same SFT stage train it once and start RL from its weights
    output: str = "runs/{name}"

    def validate(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"name={self.name!r} must be a non-empty name without '/'")
        if self.budget is not None:
            check_range("budget", self.budget, 0.0)
            if self.budget <= 0:
                raise ConfigError(f"budget={self.budget!r} must be positive")
            if self.fractions is None:
                self.fractions = list(DEFAULT_FRACTIONS)
        elif self.fractions is not None:
            raise ConfigError("fractions: SFT fractions split a budget; give budget (in RL episodes) too")
        check_range("sft_cost", self.sft_cost, 0.0)
        if self.sft_cost <= 0:
            raise ConfigError(f"sft_cost={self.sft_cost!r} must be positive")
        if self.fractions is not None:
            if not self.fractions:
                raise ConfigError("fractions: give at least one SFT fraction in [0, 1]")
            for i, f in enumerate(self.fractions):
                check_range(f"fractions[{i}]", f, 0.0, 1.0)
            _unique("fractions", [f"{f:g}" for f in self.fractions], "fraction")
        if self.seeds is not None:
            if not self.seeds:
                raise ConfigError("seeds: give at least one seed, or leave it out")
            for i, s in enumerate(self.seeds):
                check_range(f"seeds[{i}]", s, 0, integer=True)
            _unique("seeds", self.seeds, "seed")
        if self.overrides:
            self.recipe = merge(self.recipe, nest(dict(_flatten(self.overrides, "overrides", leaves_only=True))))
        self.axes = flat_axes(self.axes)
        self.variants = flat_variants(self.variants)
        self.cells()  # the base recipe and every cell's recipe validate

    @property
    def output_dir(self) -> Path:
        return Path(self.output.format(name=self.name))

    @property
    def is_budget(self) -> bool:
        return self.budget is not None

    def base(self) -> Recipe:
        """The base recipe, validated; errors name fields from the grid's root (``recipe.rl.lr``)."""
        try:
            return load_recipe(self.recipe)
        except ConfigError as e:
            raise ConfigError(f"recipe.{e}" if not str(e).startswith("a recipe") else f"recipe: {e}") from e

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the varied values (variant, axes, fraction) in run order, without the seed."""
        dims: list[list[tuple[str, Any]]] = []
        if self.variants:
            dims.append([("variant", name) for name in self.variants])
        dims += [[(key, v) for v in values] for key, values in self.axes.items()]
        if self.fractions is not None:
            dims.append([("fraction", f) for f in self.fractions])
        return [dict(combo) for combo in itertools.product(*dims)]

    def cells(self) -> list[Cell]:
        """Every cell in run order: seeds outermost, then variants, axes and fractions as listed."""
        sft = self.recipe.get("sft")
        if self.is_budget and isinstance(sft, dict) and sft.get("data") is not None:  # before the recipe reads it
            raise ConfigError("recipe.sft.data: a budget grid counts walkthrough demonstrations; leave sft.data out")
        base = self.base()
        if self.is_budget and base.rl is None and any(f < 1 for f in self.fractions or []):
            raise ConfigError("recipe.rl: the base recipe needs an rl section (rl.episodes is the RL budget's unit)")
        out, folders = [], {}
        for seed in self.seeds if self.seeds is not None else [base.seed]:
            for point in self.points():
                cell = self.cell(point, seed)
                if cell.dir in folders:
                    raise ConfigError(f"cells {folders[cell.dir]} and {point} would share {str(cell.dir)!r}: give "
                                      "the axis values distinct names")  # fmt: skip
                folders[cell.dir] = point
                out.append(cell)
        return out

    def cell(self, point: dict[str, Any], seed: int) -> Cell:
        """The cell at ``point`` (from :meth:`points`) for ``seed``: its folder and validated recipe."""
        where = ", ".join(f"{k}={v}" for k, v in point.items()) or "the base recipe"
        data = json.loads(json.dumps(self.recipe))
        if "variant" in point:
            data = merge(data, nest(self.variants[point["variant"]]))
        data = merge(data, nest({k: v for k, v in point.items() if k not in ("variant", "fraction")}))
        demos = iterations = rl_episodes = None
        if "fraction" in point:
            rl = data.get("rl") or {}
            per_iteration = rl.get("episodes", RLConfig.episodes)
            fraction = point["fraction"]
            demos, iterations = cost_split(fraction, self.budget, self.sft_cost, per_iteration)
            if demos == 0 and iterations == 0:
                i = self.fractions.index(fraction) if self.fractions else 0
                raise ConfigError(f"fractions[{i}]={fraction:g}: budget={self.budget:g} buys 0 SFT demonstrations "
                                  f"(sft_cost={self.sft_cost:g}) and 0 RL iterations (recipe.rl.episodes="
                                  f"{per_iteration})")  # fmt: skip
            data["sft"] = {**(data.get("sft") or {}), "episodes": demos} if demos else None
            data["rl"] = {**rl, "iterations": iterations} if iterations else None
            rl_episodes = iterations * per_iteration
        slug = cell_slug(point, seed, budget_only=self.is_budget and set(point) == {"fraction"})
        folder = self.output_dir / slug
        data.update(name=f"{self.name}-{slug}", seed=seed)
        data["output"] = {**(data.get("output") or {}), "dir": str(folder)}
        try:
            recipe = load_recipe(data)
        except ConfigError as e:
            raise ConfigError(f"{where}: recipe.{e}") from e
        return Cell(point, seed, folder, recipe, demos, iterations, rl_episodes)


@dataclass
class Cell:
    point: dict[str, Any]  # the varied values: variant, dotted recipe fields, fraction
    seed: int
    dir: Path
    recipe: Recipe  # the whole run: before, SFT, RL, after (see Plan for what a shared run takes over)
    sft_demos: int | None = None  # budget grids: what the cell's share bought
    rl_iterations: int | None = None
    rl_episodes: int | None = None

    @property
    def fraction(self) -> float | None:
        return self.point.get("fraction")

    @property
    def label(self) -> str:
        return ", ".join(f"{short(k)}={v}" for k, v in self.point.items()) + f", seed {self.seed}"


def _unique(name: str, values: list[Any], what: str) -> None:
    if len({json.dumps(v, sort_keys=True, default=str) for v in values}) < len(values):
        raise ConfigError(f"{name}={values}: each {what} may appear once")


def flat_axes(axes: dict[str, Any]) -> dict[str, list[Any]]:
    """``{"rl": {"algorithm": [...]}}`` or ``{"rl.algorithm": [...]}`` -> ``{"rl.algorithm": [...]}`` (both forms,
    since command-line overrides nest dotted keys); every axis a non-empty list of distinct values."""
    out: dict[str, list[Any]] = {}
    for key, value in _flatten(axes, "axes"):
        if not isinstance(value, list):
            raise ConfigError(f"axes.{key}={value!r} must be a list of values")
        if not value:
            raise ConfigError(f"axes.{key}: give at least one value")
        if key in ("seed", "name") or key.startswith("output."):
            raise ConfigError(f"axes.{key}: the grid sets {key} for each cell (use seeds: for seeds)")
        _unique(f"axes.{key}", value, "value")
        out[key] = value
    return out


def flat_variants(variants: dict[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    if variants is None:
        return None
    if not variants:
        raise ConfigError("variants: give at least one named variant, or leave it out")
    out = {}
    for name, fields in variants.items():
        if not re.fullmatch(r"[A-Za-z0-9][\w.+-]*", str(name)):
            raise ConfigError(f"variants.{name}: a variant's name is a word (letters, digits, _ . + -)")
        if not isinstance(fields, dict):
            raise ConfigError(f"variants.{name}={fields!r} must be a mapping of recipe fields to values")
        out[str(name)] = dict(_flatten(fields, f"variants.{name}", leaves_only=True))
    return out


def _flatten(data: dict[str, Any], where: str, prefix: str = "", leaves_only: bool = False) -> list[tuple[str, Any]]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}={data!r} must be a mapping")
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += _flatten(value, where, path + ".", leaves_only)
        else:
            out.append((path, value))
    return out


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"rl.lr": 1e-5}`` -> ``{"rl": {"lr": 1e-5}}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def short(key: str) -> str:
    """The name a field goes by in folder names and tables: its last part (``rl.algorithm`` -> ``algorithm``),
    ``env.id`` -> ``env``."""
    return "env" if key == "env.id" else key.rsplit(".", 1)[-1]


def cell_slug(point: dict[str, Any], seed: int, *, budget_only: bool = False) -> str:
    """A cell's folder name: ``f0.5-s0`` for a budget grid; else e.g. ``dense-algorithm_ppo-s0``."""
    parts = []
    for key, value in point.items():
        if key == "variant":
            parts.append(str(value))
        elif key == "fraction":
            parts.append(f"f{value:g}")
        else:
            parts.append(f"{short(key)}_{_value_slug(value)}")
    return "-".join([*parts, f"s{seed}"]) if not budget_only else f"f{point['fraction']:g}-s{seed}"


def _value_slug(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (str, int, bool)):
        text = str(value).split("/")[-1]
        clean = re.sub(r"[^A-Za-z0-9.+_]+", "_", text).strip("_")
        return clean[:40] if clean and len(text) <= 40 else clean[:24] + _digest(value)
    return _digest(value)


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


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


def packaged_grid(name: str) -> Path:
    """A grid shipped with the package: ``agentenv/recipes/grids/<name>.yaml`` (or a packaged ``<name>.yaml``)."""
    path = Path(__file__).parent / "grids" / f"{name}.yaml"
    return path if path.is_file() else packaged_recipe(name)


def packaged_grids() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).parent / "grids").glob("*.yaml"))


# ---- the plan: which runs a grid does, and what each cell reads from which run ---------------------------------
@dataclass
class Run:
    """One recipe run of the grid: a cell's own, or a shared one (SFT, or the starting model's evaluation)."""

    dir: Path
    recipe: Recipe
    shared: bool = False  # a run other cells start from, done before them

    @property
    def label(self) -> str:
        return self.dir.name


@dataclass
class Plan:
    cells: list[Cell]
    runs: list[Run]  # shared runs first
    own: dict[Path, Run]  # cell folder -> the run that trains it (its own folder)
    sft_from: dict[Path, Path]  # cell folder -> the shared run whose final weights its RL starts from
    before_from: dict[Path, Path]  # cell folder -> the run holding its starting model's evaluation


def plan_grid(grid: GridConfig) -> Plan:
    """Every run of ``grid``: shared SFT runs (for SFT stages two or more cells have in common), then the cells."""
    cells = grid.cells()
    by_sft: dict[str, list[Cell]] = {}
    for cell in cells:
        if grid.share_sft and cell.recipe.sft is not None and cell.recipe.rl is not None and not cell.recipe.model.lora:
            by_sft.setdefault(_sft_key(cell.recipe), []).append(cell)
    runs, own, sft_from, before_from = [], {}, {}, {}
    for key, members in by_sft.items():
        if len(members) < 2:
            continue
        shared = _sft_run(grid, members[0], key)
        runs.append(shared)
        for cell in members:
            sft_from[cell.dir] = before_from[cell.dir] = shared.dir
            recipe = load_recipe({**cell.recipe.to_dict(), "sft": None})
            recipe.model.name = str(shared.dir / "final")
            recipe.eval.before = recipe.eval.after_sft = False
            own[cell.dir] = Run(cell.dir, recipe)
    first_before: dict[str, Path] = {}
    for cell in cells:
        if cell.dir in own:
            continue
        own[cell.dir] = Run(cell.dir, cell.recipe)
        if cell.recipe.eval.before:
            before_from[cell.dir] = first_before.setdefault(_before_key(cell.recipe), cell.dir)
            cell.recipe.eval.before = before_from[cell.dir] == cell.dir
    for source in set(before_from.values()) - {r.dir for r in runs}:  # a cell others read their "before" from
        own[source].shared = sum(1 for d in before_from.values() if d == source) > 1
    mine = [own[c.dir] for c in cells]
    ordered = runs + [r for r in mine if r.shared] + [r for r in mine if not r.shared]
    return Plan(cells, ordered, own, sft_from, before_from)


def _comparable(recipe: Recipe, *sections: str) -> str:
    data = json.loads(json.dumps(recipe.to_dict(), default=str))
    return json.dumps({s: data[s] for s in sections}, sort_keys=True)


def _sft_key(recipe: Recipe) -> str:
    return _comparable(recipe, "seed", "env", "model", "sft", "eval")


def _before_key(recipe: Recipe) -> str:
    return _comparable(recipe, "seed", "env", "model", "eval")


def _sft_run(grid: GridConfig, cell: Cell, key: str) -> Run:
    """The shared run of an SFT stage: the starting model's evaluation, SFT, the after-SFT evaluation (as its
    ``after``), and the final weights the cells' RL loads."""
    folder = grid.output_dir / "shared" / f"sft{cell.recipe.sft.episodes}-s{cell.seed}-{_digest(key)}"
    data = cell.recipe.to_dict()
    data.update(name=f"{grid.name}-{folder.name}", rl=None)
    data["output"] = {**data["output"], "dir": str(folder), "save_final": True}
    data["eval"] = {**data["eval"], "after_sft": False}
    return Run(folder, load_recipe(data), shared=True)
