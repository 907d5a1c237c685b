"""Commands that run recipes: ``agentenv train`` (a recipe YAML), ``grid`` (an SFT/RL budget split) and ``demo`` (the
demo recipe on embedded defaults).

Added to the ``agentenv`` command through the ``agentenv.cli`` entry point ``recipes`` (:func:`register`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentenv.terminal import console, err


def register(app: typer.Typer) -> None:
    """The ``agentenv.cli`` entry point: ``agentenv train``, ``grid`` and ``demo``."""
    app.command()(train)
    app.command()(grid)
    app.command()(demo)


def _recipe_source(recipe: str) -> Path:
    from agentenv.recipes.config import packaged_recipe

    path = Path(recipe)
    return path if path.suffix in (".yaml", ".yml") or path.exists() else packaged_recipe(recipe)


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a recipe field: section.field=value (repeatable), e.g. -s rl.lr=1e-5"),
]


def train(
    recipe: Annotated[str, typer.Argument(help="A recipe YAML file, or the name of a packaged recipe (e.g. demo)")],
    set_: SetOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default: the recipe's)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the output folder from its checkpoints")] = False,
) -> None:
    """Run a training recipe: evaluate, SFT, RL, evaluate again; metrics, checkpoints and a report in one folder."""
    from agentenv.recipes.config import load_recipe
    from agentenv.recipes.run import run_recipe

    overrides = list(set_ or []) + ([f"output.dir={output}"] if output is not None else [])
    loaded = load_recipe(_recipe_source(recipe), overrides)
    import os

    from agentenv.policies.rl import DivergedError

    main_process = os.environ.get("RANK", "0") == "0"  # under accelerate/torchrun only rank 0 reports
    try:
        results = run_recipe(loaded, resume=resume, console=console if main_process else None)
    except DivergedError as e:
        _diverged(e)
    if main_process and loaded.verdict is not None:
        from agentenv.recipes.verdict import print_verdict_results

        print_verdict_results(console, results)
    elif main_process:
        _print_evaluations(loaded.name, results)


def grid(
    grid_file: Annotated[str, typer.Argument(help="A grid YAML file, or the name of a packaged grid (e.g. budget)")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a grid field (repeatable): -s budget=256 -s recipe.rl.lr=1e-5"),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default: the grid's)")] = None,
) -> None:
    """Split one training budget between SFT demonstrations and RL episodes at several SFT fractions; run each cell
    (finished cells are skipped), then write grid.json, grid.md and grid.png and print the table."""
    from agentenv.recipes.grid import grid_table, load_grid, run_grid

    overrides = list(set_ or []) + ([f"output={output}"] if output is not None else [])
    loaded = load_grid(_recipe_source(grid_file), overrides)
    summary = run_grid(loaded, console=console)
    header, rows = grid_table(summary)
    table = Table(title=f"{loaded.name}: budget {loaded.budget:g} RL episodes, 1 SFT demo = {loaded.sft_cost:g}")
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    out = loaded.output_dir
    console.print(f"table: {out / 'grid.md'}  plot: {out / 'grid.png'}  data: {out / 'grid.json'}")


def _diverged(e: Exception) -> None:
    """A run stopped on a non-finite loss, gradient or weight: say so without a traceback, exit 1."""
    from rich.markup import escape

    err.print(f"[bold red]training stopped:[/] {escape(str(e))}. No final model was written; the last "
              "checkpoint, if any, holds finite weights: lower the learning rate or check the data.")  # fmt: skip
    raise typer.Exit(1) from e


def _print_evaluations(name: str, results: dict[str, Any]) -> None:
    evaluations = results["evaluations"]
    envs = sorted({s.get("env_id", "") for s in evaluations.values()})
    table = Table(title=f"{name}: held-out test tasks of {', '.join(e.split('/')[-1] for e in envs)}")
    for column in ("evaluation", "episodes", "success", "95% CI", "return", "turns", "invalid"):
        table.add_column(column, justify="left" if column == "evaluation" else "right")
    for label, s in evaluations.items():
        table.add_row(label, str(s["episodes"]), f"{s['success_rate']:.1%}",
                      f"{s['success_ci_low']:.0%}-{s['success_ci_high']:.0%}", f"{s['mean_return']:.2f}",
                      f"{s['mean_turns']:.1f}", f"{s['invalid_rate']:.0%}")  # fmt: skip
    console.print(table)
    seconds = results.get("seconds", {})
    console.print("[dim]" + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()) + "[/]")


def demo(
    set_: SetOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder")] = None,
) -> None:
    """The main job on embedded defaults: the demo recipe (SFT on walkthroughs, then PPO) on a tiny TextWorld
    preset with the offline small model; prints success on held-out tasks before and after, and a plot."""
    import time

    from agentenv.recipes.config import load_recipe, packaged_recipe
    from agentenv.recipes.run import run_recipe

    folder = output or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    from agentenv.policies.rl import DivergedError

    loaded = load_recipe(packaged_recipe("demo"), [*(set_ or []), f"output.dir={folder}"])
    try:
        results = run_recipe(loaded, console=console)
    except DivergedError as e:
        _diverged(e)
    _print_evaluations(loaded.name, results)
    console.print(f"report: {folder / 'report.html'}  plot: {folder / 'curves.png'}  model: {folder / 'final'}")
