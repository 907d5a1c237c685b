"""One HTTP client for OpenAI-compatible servers (vLLM, SGLang, llama.cpp, TGI, hosted APIs).

Shared by the HTTP judge backend (:class:`agentenv.rewards.OpenAIServer`) and the HTTP policy
(:class:`agentenv.policies.OpenAIPolicy`): JSON POSTs with at most ``concurrency`` requests in flight per event
loop, retries with exponential backoff on transport errors (timeouts included), 429 and 5xx, and
:func:`run_sync` to call the async API from synchronous code whether or not the caller's thread runs a loop.
httpx is imported only when a request is made.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from agentenv.errors import ConfigError, check_range

T = TypeVar("T")

MAX_BACKOFF_S = 30.0


class OpenAIClient:
    """POSTs JSON to ``base_url + path`` (``base_url`` ends with ``/v1``); see the module docstring for retries.

    A request that still fails raises ``RuntimeError`` naming the status (``HTTP 503: ...``) or the transport error
    and the number of attempts; a 4xx other than 429 is not retried (the request itself is wrong).
    """

    def __init__(
        self, base_url: str, *, api_key: str | None = None, concurrency: int = 8, retries: int = 3,
        backoff: float = 0.5, timeout: float = 60.0,
    ):  # fmt: skip
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url={base_url!r} must be an http(s) URL, e.g. 'http://127.0.0.1:8000/v1'")
        check_range("concurrency", concurrency, 1, integer=True)
        check_range("retries", retries, 0, integer=True)
        check_range("backoff", backoff, 0)
        check_range("timeout", timeout, 0)
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.concurrency, self.retries, self.backoff, self.timeout = concurrency, retries, backoff, timeout
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIClient({self.base_url!r}, concurrency={self.concurrency})"

    def session(self) -> Any:
        """An ``httpx.AsyncClient`` to use as ``async with client.session() as session``."""
        try:
            import httpx
        except ImportError as e:
            raise ImportError("OpenAI-compatible HTTP calls need httpx: pip install agentenv[train] (or httpx)") from e
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return httpx.AsyncClient(timeout=self.timeout, headers=headers, limits=limits)

    def limit(self) -> asyncio.Semaphore:
        """The running loop's semaphore: concurrent calls on one loop share the ``concurrency`` budget."""
        loop = asyncio.get_running_loop()
        if loop not in self._limits:
            self._limits[loop] = asyncio.Semaphore(self.concurrency)
        return self._limits[loop]

    async def post(self, session: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S))
            async with self.limit():
                try:
                    response = await session.post(self.base_url + path, json=body)
                except httpx.TransportError as e:  # connection refused or reset, timeouts
                    error = f"{type(e).__name__}: {e}"
                    continue
            if response.status_code == 429 or response.status_code >= 500:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code >= 400:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            return response.json()
        raise RuntimeError(f"{error} (after {self.retries + 1} attempts)")


def run_sync(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None = None) -> T:
    """Run a coroutine to completion from synchronous code.

    On ``loop`` when it is given, running, and not this thread's loop (a sync call made from a worker thread on
    behalf of an async caller: requests then share that loop's concurrency limit); else on a fresh loop, in a new
    thread if this thread already runs one (``asyncio.run`` refuses to nest).
    """
    if loop is not None and loop.is_running() and not _on_loop_thread(loop):
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
    if not _on_loop_thread(None):
        return asyncio.run(coro)
    box: list[tuple[bool, Any]] = []
    worker = threading.Thread(target=lambda: box.append(_capture(asyncio.run, coro)))
    worker.start()
    worker.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _on_loop_thread(loop: asyncio.AbstractEventLoop | None) -> bool:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return loop is None or running is loop


def _capture(fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except BaseException as e:
        return False, e


__all__ = ["OpenAIClient", "run_sync"]
