"""What the ``agentenv`` commands share, whichever layer contributes them: the consoles, the ``--kw`` option and its
parser, and how a metric prints.

Command modules (``envs/<family>/cli.py``, ``policies/cli.py``, ``recipes/cli.py``, a plugin's) import these from
here rather than from :mod:`agentenv.cli`: the CLI imports the command modules (through the ``agentenv.cli`` entry
points) while it loads, so a command module that imported it back would find it half-loaded.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

console = Console()
err = Console(stderr=True)

KwOption = Annotated[
    list[str] | None,
    typer.Option("--kw", "-k", help="Env keyword argument as key=value (repeatable), e.g. -k size=4 -k reward=dense"),
]


def parse_kwargs(pairs: list[str] | None) -> dict[str, Any]:
    """``--kw key=value`` pairs as env kwargs, each value read as YAML (``-k size=4`` gives the int 4)."""
    from agentenv.errors import ConfigError

    kwargs: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--kw {pair!r} must look like key=value")
        kwargs[key.strip()] = yaml.safe_load(value)
    return kwargs


def fmt_metric(x: Any) -> str:
    """A metric for a table cell: floats to 3 decimals, NaN as '-'."""
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.3f}"
    return str(x)
