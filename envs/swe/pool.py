"""Sandboxes opened ahead of time on the pristine library trees, so that an SWE reset does not wait for one.

:class:`TreePool` keeps ``per_library`` sandboxes open and idle for each library an env plays (each holding its own
full copy of the pristine tree, in its own tmpfs when the disk quota holds, owned by its own uid), opened by one
background thread, and closes the sandboxes of finished episodes on that thread too. A reset takes a ready sandbox
(or opens one at once when none is ready) and applies the task's bug in it; a sandbox serves exactly one episode
and is never handed out again, so no episode can see another's edits, and nothing an agent does reaches the pristine
tree: the copies share no inode with it (no hard links; measured below) and the pristine tree itself is never shown
in a sandbox (the AgentEnv cache is hidden there).

Why copies and not hard-link farms or reflinks (measured on this machine, ext4 root, 2 cores): as root every
sandbox's workdir is a tmpfs of its own (the disk quota), and a hard link cannot cross file systems; without the
quota a hard link would share the pristine inode, which the sandbox's uid owns after the chown that makes the tree
writable, so ``open(path, 'w')`` or ``echo > path`` in the sandbox would write the pristine file. Reflinks are not
supported by ext4 or tmpfs (``cp --reflink=always`` fails). Copying a library into a tmpfs costs 4-26 ms
(``cp -al`` of the same tree on ext4: 3-13 ms), so the copy is cheap enough once it is made ahead of the reset.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from agentenv.errors import check_range

#: How long :meth:`TreePool.take` waits for the sandbox the thread is opening for its library before opening one.
WAIT_SECONDS = 30.0


class PoolClosedError(RuntimeError):
    """The pool was closed: no sandbox can be taken from it."""


class _PoolState:
    """What the thread and the finalizer share (not the pool itself, so that an unreferenced pool is collected)."""

    def __init__(self, open_box: Callable[[Any], Any], per_library: int, libraries: Iterable[Hashable]):
        self.open_box, self.per_library = open_box, per_library
        self.ready: dict[Any, list[Any]] = {name: [] for name in libraries}
        self.retired: list[Any] = []
        self.failed: dict[Any, str] = {}  # library -> why its last opening failed (not tried again until taken)
        self.closed = False
        self.changed = threading.Condition()
        self.opened = 0  # sandboxes the thread opened (for tests and benchmarks)
        self.opening: Any = None  # the library the thread is opening a sandbox for now
        self.busy = False  # the thread is opening or closing a sandbox now

    def next_job(self) -> tuple[str, Any] | None:
        """What the thread does next: ``("close", box)``, ``("open", library)``, or ``None`` to stop. Waits for work."""
        with self.changed:
            self.busy = False
            self.changed.notify_all()
            while True:
                if self.closed:
                    return None
                if self.retired:
                    self.busy = True
                    return "close", self.retired.pop(0)
                wanting = self.wanting()
                if wanting:  # the emptiest first: the library a reset just took from
                    self.opening = min(wanting, key=lambda name: len(self.ready[name]))
                    self.busy = True
                    return "open", self.opening
                self.changed.wait()

    def wanting(self) -> list[Any]:
        """The libraries with fewer than ``per_library`` sandboxes ready, but for those whose opening failed."""
        return [name for name, boxes in self.ready.items() if len(boxes) < self.per_library and name not in self.failed]

    def run(self) -> None:
        """The background thread: close retired sandboxes first, then open sandboxes up to ``per_library`` each."""
        while (job := self.next_job()) is not None:
            kind, target = job
            if kind == "close":
                with contextlib.suppress(Exception):  # a sandbox that fails to close leaves its folder to the janitor
                    target.close()
                continue
            try:
                box = self.open_box(target)
            except Exception as e:  # reported by take(), which opens at once and raises the real error
                with self.changed:
                    self.failed[target] = f"{type(e).__name__}: {e}"
                    self.opening = None
                    self.changed.notify_all()
                continue
            with self.changed:
                self.opening = None
                self.changed.notify_all()
                self.failed.pop(target, None)
                self.opened += 1
                if self.closed:
                    keep = False
                else:
                    self.ready[target].append(box)
                    keep = True
            if not keep:
                box.close()

    def close(self, thread: threading.Thread) -> None:
        with self.changed:
            self.closed = True
            boxes = [b for ready in self.ready.values() for b in ready] + self.retired
            self.ready = {s: [] for s in self.ready}
            self.retired = []
            self.changed.notify_all()
        if thread is not threading.current_thread():
            thread.join()
        for box in boxes:
            with contextlib.suppress(Exception):
                box.close()


class TreePool:
    """``per_library`` sandboxes kept open and idle for each of ``libraries``, opened by ``open_box(library)`` (a
    fresh sandbox holding a copy of the library's pristine tree) on a background thread; retired sandboxes are
    closed there too.

    :meth:`take` hands out a sandbox that no one else has used (opened at once when none is ready: the error of a
    failed opening is raised there, never swallowed); :meth:`retire` hands one back to be closed off the caller's
    path. ``close()`` stops the thread and closes every sandbox the pool holds (also run at interpreter exit). The
    pool pickles as nothing: it holds processes and a thread (an env makes a new one when it needs one).
    """

    def __init__(self, open_box: Callable[[Any], Any], libraries: Iterable[Hashable], per_library: int = 2):
        check_range("per_library", per_library, 1, 64, integer=True)
        self.open_box = open_box
        self._state = _PoolState(open_box, per_library, libraries)
        self._thread = threading.Thread(target=self._state.run, name="agentenv-swe-tree-pool", daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, self._state.close, self._thread)

    @property
    def per_library(self) -> int:
        return self._state.per_library

    @property
    def closed(self) -> bool:
        return self._state.closed

    def ready_count(self, library: Hashable | None = None) -> int:
        """How many sandboxes are ready (for ``library``, or in all)."""
        with self._state.changed:
            ready = self._state.ready
            return sum(len(b) for name, b in ready.items() if library is None or name == library)

    def ready_boxes(self, library: Hashable | None = None) -> list[Any]:
        """The sandboxes ready now (for ``library``, or all), for tests: no episode may see or change them."""
        with self._state.changed:
            return [b for name, boxes in self._state.ready.items() for b in boxes if library in (None, name)]

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until every library has ``per_library`` sandboxes ready (but those whose opening failed) and every
        retired one is closed (or ``timeout`` s); whether that is so."""
        deadline = time.monotonic() + timeout
        state = self._state
        with state.changed:
            while state.busy or state.retired or state.wanting():
                if state.closed or time.monotonic() >= deadline:
                    return False
                state.changed.wait(0.05)
            return True

    @property
    def failures(self) -> dict[Any, str]:
        """Why the thread's last opening failed, per library (cleared by a success or a take)."""
        with self._state.changed:
            return dict(self._state.failed)

    def take(self, library: Hashable) -> Any:
        """A sandbox on ``library`` that no episode has used: a ready one, or one opened now (whose error, if it
        fails, is raised here)."""
        state = self._state
        with state.changed:
            if state.closed:
                raise PoolClosedError("this TreePool is closed")
            ready = state.ready.setdefault(library, [])
            deadline = time.monotonic() + WAIT_SECONDS
            while not ready and state.opening == library and not state.closed and time.monotonic() < deadline:
                state.changed.wait(deadline - time.monotonic())  # it is nearly done: sooner than opening another
            if state.closed:  # closed while waiting: its sandboxes are being closed
                raise PoolClosedError("this TreePool is closed")
            box = ready.pop(0) if ready else None
            state.failed.pop(library, None)  # try again in the background now
            state.changed.notify_all()
        return box if box is not None else self.open_box(library)

    def retire(self, box: Any) -> None:
        """Close ``box`` on the background thread (at once when the pool is closed)."""
        with self._state.changed:
            if not self._state.closed:
                self._state.retired.append(box)
                self._state.changed.notify_all()
                return
        box.close()

    def close(self) -> None:
        """Stop the thread, close every ready and retired sandbox. Idempotent."""
        self._finalizer()

    def __getstate__(self) -> None:
        raise TypeError("a TreePool holds open sandboxes and a thread: it does not pickle (its env makes a new one)")
