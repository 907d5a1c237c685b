"""Commands that run recipes: ``agentenv train`` (a recipe YAML), ``grid`` (a sweep of recipes), ``report`` (the seed
paper's findings beside our grids) and ``demo`` (the demo recipe on embedded defaults).

Added to the ``agentenv`` command through the ``agentenv.cli`` entry point ``recipes`` (:func:`register`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentenv.terminal import console, err


def register(app: typer.Typer) -> None:
    """The ``agentenv.cli`` entry point: ``agentenv train``, ``grid``, ``report`` and ``demo``."""
    app.command()(train)
    app.command()(grid)
    app.command()(report)
    app.command()(demo)


def _recipe_source(recipe: str) -> Path:
    from agentenv.recipes.config import packaged_recipe

    path = Path(recipe)
    return path if path.suffix in (".yaml", ".yml") or path.exists() else packaged_recipe(recipe)


# The demo's stated time: minutes on an idle 2-core machine with the games already built (benchmarks/demo_contention.py
# measured 17.3 on 2026-12-03, and 24.1 beside one CPU-bound process: 1.40x).
DEMO_MINUTES = 17
DEMO_BUSY_MINUTES = 24


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


GRID_HELP = "A grid YAML file, or the name of a packaged grid (e.g. budget, algorithms-cpu)"
RAY_HELP = "Run cells as tasks on a Ray cluster at this address ('local': start one here)"


def grid(
    grid_file: Annotated[str, typer.Argument(help=GRID_HELP)],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a grid field (repeatable): -s 'seeds=[0,1]' -s recipe.rl.lr=1e-5"),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default: the grid's)")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Cells run at a time, each in its own process")] = 1,
    gpus: Annotated[str | None, typer.Option(help="GPUs to spread cells over, one each: --gpus 0,1,2,3")] = None,
    ray: Annotated[str | None, typer.Option(help=RAY_HELP)] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads per cell (default: cores / jobs)")] = None,
) -> None:
    """Run an experiment grid: a sweep over recipe fields (axes, variants, seeds) or an SFT:RL budget split. Each
    cell is a recipe run in its own folder; finished cells are skipped and killed ones resume, so running the same
    command again continues a grid. Writes grid.json, grid.csv, grid.md and grid.png and prints the table."""
    from agentenv.recipes.grid import load_grid, packaged_grid
    from agentenv.recipes.grid_exec import run_grid
    from agentenv.recipes.grid_table import grid_table

    path = Path(grid_file)
    source = path if path.suffix in (".yaml", ".yml") or path.exists() else packaged_grid(grid_file)
    overrides = list(set_ or []) + ([f"output={output}"] if output is not None else [])
    loaded = load_grid(source, overrides)
    summary = run_grid(loaded, jobs=jobs, gpus=gpus.split(",") if gpus else None, ray=ray, threads=threads,
                       console=console)  # fmt: skip
    header, rows = grid_table(summary)
    title = f"{loaded.name}: " + (f"budget {loaded.budget:g} RL episodes, 1 SFT demo = {loaded.sft_cost:g}"
                                  if loaded.is_budget else f"{len(summary['rows'])} points")  # fmt: skip
    table = Table(title=title)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    out = loaded.output_dir
    console.print(f"table: {out / 'grid.md'}  plot: {out / 'grid.png'}  data: {out / 'grid.json'}, {out / 'grid.csv'}")
    if summary["failed"]:
        err.print(f"[bold red]{len(summary['failed'])} cell(s) did not finish[/] (see grid.md); run the same command "
                  "again to retry them")  # fmt: skip
        raise typer.Exit(1)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A folder holding finished grids (e.g. runs/findings)")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write (default: RUN_DIR)")] = None,
) -> None:
    """The seed paper's findings beside our grids' numbers: for each finding the paper's table values, ours with
    95% intervals, every ordering the paper reports checked on ours, and a verdict (reproduced / not at this scale /
    opposite). Writes report.md, report.html (plots inline) and report.json."""
    from agentenv.recipes.findings import build_report
    from agentenv.recipes.findings_report import VERDICT_MARK, write_report

    if not run_dir.is_dir():
        err.print(f"[bold red]{run_dir}[/] is not a folder: give the folder your grids wrote into")
        raise typer.Exit(2)
    built = build_report(run_dir)
    paths = write_report(built, output or run_dir)
    table = Table(title=f"findings under {run_dir}")
    for column in ("finding", "verdict", "why"):
        table.add_column(column)
    for f in built["findings"]:
        table.add_row(f["finding"], VERDICT_MARK[f["verdict"]], f["why"])
    console.print(table)
    console.print(f"report: {paths['md']}  {paths['html']}")


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
    console.print(f"expected time: about {DEMO_MINUTES} minutes on 2 free CPU cores, about {DEMO_BUSY_MINUTES} beside "
                  "one busy process (a first run also builds ~290 TextWorld games: a few minutes more)")  # fmt: skip
    try:
        results = run_recipe(loaded, console=console)
    except DivergedError as e:
        _diverged(e)
    _print_evaluations(loaded.name, results)
    console.print(f"report: {folder / 'report.html'}  plot: {folder / 'curves.png'}  model: {folder / 'final'}")
