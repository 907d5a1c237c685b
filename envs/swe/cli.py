"""``agentenv swe``: build a task set by bug injection, validate a task file, list the pinned libraries.

Added to the ``agentenv`` command through the ``agentenv.cli`` entry point ``swe`` (:func:`register`); ``app`` also
runs on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="swe",
    help="SWE tasks: build bug-injection task sets from pinned libraries, validate task files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def register(cli: typer.Typer) -> None:
    """The ``agentenv.cli`` entry point: ``agentenv swe ...``."""
    cli.add_typer(app, name="swe")


@app.command("build-tasks")
def build_tasks_command(
    library: Annotated[
        list[str] | None,
        typer.Option("--library", "-l", help="A pinned library (repeatable; default: all, see `swe libraries`)"),
    ] = None,
    per_library: Annotated[int, typer.Option(help="Tasks wanted per library")] = 25,
    seed: Annotated[int, typer.Option(help="Seed of the mutant sampling")] = 0,
    out: Annotated[Path, typer.Option(help="Where to write the tasks (JSONL)")] = Path("swe_tasks.jsonl"),
    workers: Annotated[int, typer.Option(help="Mutants tested at once (each runs pytest)")] = 1,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds per mutant run (default: 3x the baseline suite, at least 10)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar and summary table")] = True,
) -> None:
    """Inject bugs into pinned libraries, keep those their tests catch, validate each task, write JSONL."""
    from agentenv.envs.swe.build import build_tasks

    tasks = build_tasks(library, per_library, seed, out, workers, progress, timeout=timeout)
    typer.echo(f"wrote {len(tasks)} tasks to {out}")


@app.command("validate-tasks")
def validate_tasks_command(
    path: Annotated[Path, typer.Argument(help="A task file (JSONL) built by build-tasks, or the shipped one")],
    workers: Annotated[int, typer.Option(help="Tasks validated at once")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds per test run")] = 120,
    limit: Annotated[int | None, typer.Option(help="Validate only the first N tasks of each library")] = None,
) -> None:
    """Re-check tasks from scratch: buggy tree fails FAIL_TO_PASS and passes PASS_TO_PASS, gold passes all.

    Exits 1 if any task is invalid.
    """
    from rich.console import Console
    from rich.table import Table

    from agentenv.envs.swe.build import validate_tasks
    from agentenv.envs.swe.tasks import load_tasks

    tasks = load_tasks(path)
    if limit is not None:
        seen: dict[str, int] = {}
        chosen = []
        for task in tasks:
            seen[task.repo] = seen.get(task.repo, 0) + 1
            if seen[task.repo] <= limit:
                chosen.append(task)
        tasks = chosen
    problems = validate_tasks(tasks, workers=workers, timeout=timeout)
    bad = {k: v for k, v in problems.items() if v}
    console = Console()
    if bad:
        table = Table(title=f"{len(bad)} of {len(tasks)} tasks invalid")
        table.add_column("instance_id")
        table.add_column("problem", overflow="fold")
        for instance_id, problem in bad.items():
            table.add_row(instance_id, problem)
        console.print(table)
        raise typer.Exit(1)
    console.print(f"all {len(tasks)} tasks valid")


@app.command("libraries")
def libraries_command() -> None:
    """The pinned libraries: version, sdist sha256, test paths, mutable packages."""
    from rich.console import Console
    from rich.table import Table

    from agentenv.envs.swe.sources import LIBRARIES

    table = Table(title="Pinned libraries for SWE tasks")
    for column in ("library", "version", "sha256", "tests", "mutated"):
        table.add_column(column, overflow="fold")
    for lib in LIBRARIES.values():
        table.add_row(
            lib.name, lib.version, lib.sha256[:16] + "…", " ".join(lib.test_paths), " ".join(lib.package_paths)
        )
    Console().print(table)
