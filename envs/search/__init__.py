"""Search: question answering over a local corpus with retrieval tools (see README.md in this folder)."""

from __future__ import annotations

#: Registered presets: id suffix -> (kwargs, description).
PRESETS: dict[str, tuple[dict, str]] = {
    "Search-World-h1-v0": ({"hops": 1}, "fictional world, 1-hop questions (2.8k docs, BM25)"),
    "Search-World-h2-v0": ({"hops": 2}, "fictional world, 2-hop questions"),
    "Search-World-h3-v0": ({"hops": 3}, "fictional world, 3-hop questions"),
    "Search-World-h4-v0": ({"hops": 4}, "fictional world, 4-hop questions (hard)"),
    "Search-PyDocs-v0": (
        {"corpus": "pydocs"},
        "CPython 3.11 docs (Debian python3.11-doc; `make corpus-pydocs`), 7k questions",
    ),
}


#: Single-turn reading presets (``agentenv.envs.search.reading``): the gold documents are shown, no search.
READING_PRESETS: dict[str, tuple[dict, str]] = {
    "Search-World-Read-v0": ({"hops": 1}, "fictional world, the answering documents shown: answer in one turn"),
}


def register_envs() -> None:
    from agentenv.registry import register

    for name, (kwargs, description) in PRESETS.items():
        register(name, "agentenv.envs.search.env:SearchEnv", kwargs=kwargs, family="search", description=description)
    for name, (kwargs, description) in READING_PRESETS.items():
        register(name, "agentenv.envs.search.reading:ReadingEnv", kwargs=kwargs, family="reading",
                 description=description)  # fmt: skip
