"""A retrieval server: one index in one process, shared over HTTP by many env workers (``agentenv search serve``).

Endpoints: ``GET /health``; ``GET /info`` (corpus name, size, fingerprint, retriever kind); ``POST /search``
``{"queries": [...], "k": 5}`` -> ``{"results": [[hit, ...], ...]}`` (one list per query, bad queries get ``[]``);
``GET /document/{doc_id}`` -> the document, or 404. :class:`~agentenv.envs.search.retrieval.RemoteRetriever` is
its client. fastapi and uvicorn are imported only here, when a server is made (``pip install 'agentenv[search]'``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentenv.envs.search.corpus import Corpus
from agentenv.envs.search.retrieval import MAX_K, Retriever, make_retriever

#: Queries in one POST /search: enough for a batch of env workers, small enough to bound one request's work.
MAX_BATCH = 1024
_INSTALL = "pip install 'agentenv[search]'"


class SearchRequest(BaseModel):
    """The body of ``POST /search``. ``k`` is clamped to [1, MAX_K] by the retriever, like a local call."""

    queries: list[str] = Field(max_length=MAX_BATCH)
    k: int = Field(default=5, description=f"hits per query, clamped to [1, {MAX_K}]")


def _web() -> tuple[Any, Any]:
    try:
        import fastapi
        import uvicorn
    except ImportError as e:
        raise ImportError(f"the search server needs fastapi and uvicorn: {_INSTALL}") from e
    return fastapi, uvicorn


def create_app(retriever: Retriever, corpus: Corpus, kind: str = "") -> Any:
    """A FastAPI app serving ``retriever`` over ``corpus`` (``kind`` is reported by ``/info``).

    Handlers are plain functions, so uvicorn runs them in its thread pool: searches from many clients overlap.
    """
    fastapi, _ = _web()
    app = fastapi.FastAPI(title=f"agentenv search: {corpus.name}", version="1")
    info = {"corpus": corpus.name, "size": len(corpus), "fingerprint": corpus.fingerprint,
            "kind": kind or getattr(retriever, "kind", type(retriever).__name__)}  # fmt: skip

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def get_info() -> dict[str, Any]:
        return info

    @app.post("/search")
    def search(request: SearchRequest) -> dict[str, Any]:
        results = retriever.search_batch(request.queries, request.k)
        return {"results": [[hit.to_dict() for hit in hits] for hits in results]}

    @app.get("/document/{doc_id:path}")
    def document(doc_id: str) -> dict[str, Any]:
        doc = retriever.document(doc_id)
        if doc is None:
            raise fastapi.HTTPException(status_code=404, detail=f"no document {doc_id!r} in corpus {corpus.name!r}")
        return doc.to_dict()

    return app


def serve(
    corpus: Corpus,
    kind: str = "bm25",
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    **retriever_kw: Any,
) -> None:
    """Build (or load) the ``kind`` index of ``corpus`` and serve it until interrupted (blocks)."""
    _, uvicorn = _web()
    app = create_app(make_retriever(corpus, kind, **retriever_kw), corpus, kind)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def serve_command(
    corpus: str | Path, kind: str = "bm25", host: str = "127.0.0.1", port: int = 8000,
    cache_dir: str | Path | None = None,
) -> None:  # fmt: skip
    """``agentenv search serve --corpus FILE.jsonl --kind bm25 --port 8000``: the CLI's entry."""
    path = Path(corpus)
    if not path.is_file():
        from agentenv.errors import ConfigError

        raise ConfigError(f"--corpus {str(corpus)!r} is not a file; give a corpus JSONL (Corpus.save_jsonl)")
    serve(Corpus.load_jsonl(path), kind, host, port, cache_dir=cache_dir)


class ServerThread:
    """A server running in a background thread of this process, on a free port: for tests, benchmarks, notebooks.

    ``with ServerThread(app) as url: RemoteRetriever(url)``; leaving the block stops the server.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, start_timeout: float = 30.0):
        self.app, self.host, self.port, self.start_timeout = app, host, port, start_timeout
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        _, uvicorn = _web()
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        waited = threading.Event()
        for _ in range(int(self.start_timeout / 0.01)):
            if self._server.started or not self._thread.is_alive():
                break
            waited.wait(0.01)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"search server on {self.host}:{self.port} did not start within {self.start_timeout}s")
        # port 0: uvicorn bound a free port (binding it here instead would leave TCP_NODELAY off: 40 ms per request)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.url

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["MAX_BATCH", "SearchRequest", "ServerThread", "create_app", "serve", "serve_command"]
