"""``agentenv search``: build retrieval indexes ahead of training, serve one over HTTP.

Added to the ``agentenv`` command through the ``agentenv.cli`` entry point ``search`` (:func:`register`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentenv.terminal import console

app = typer.Typer(
    help="Search envs: build retrieval indexes ahead of training, serve one over HTTP.", no_args_is_help=True
)
CorpusOption = Annotated[str, typer.Option(help="'world' (the envs' default world), 'pydocs', or a corpus JSONL")]
KindOption = Annotated[str, typer.Option(help="bm25 | dense | hybrid")]


def register(cli: typer.Typer) -> None:
    """The ``agentenv.cli`` entry point: ``agentenv search ...``."""
    cli.add_typer(app, name="search")


@app.command("index")
def search_index(
    corpus: CorpusOption = "world",
    kind: KindOption = "bm25",
    cache_dir: Annotated[Path | None, typer.Option(help="index cache (default $AGENTENV_CACHE/search)")] = None,
) -> None:
    """Build the cached index of a corpus (dense embeddings take minutes per 10k passages on a CPU)."""
    from agentenv.envs.search.env import load_corpus
    from agentenv.envs.search.retrieval import build_index

    console.print_json(data=build_index(load_corpus(corpus), kind, cache_dir=cache_dir))


@app.command("serve")
def search_serve(
    corpus: CorpusOption = "world",
    kind: KindOption = "bm25",
    host: str = "127.0.0.1",
    port: int = 8000,
    cache_dir: Annotated[Path | None, typer.Option(help="index cache (default $AGENTENV_CACHE/search)")] = None,
) -> None:
    """Serve a retrieval index over HTTP (GET /health, /info, /document/ID; POST /search), for
    `retriever=http://HOST:PORT` in the search envs."""
    from agentenv.envs.search.env import load_corpus
    from agentenv.envs.search.server import serve

    options = {"cache_dir": cache_dir} if cache_dir else {}
    serve(load_corpus(corpus), kind=kind, host=host, port=port, **options)
