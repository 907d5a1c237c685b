"""One command as a host process: what it did (:class:`ExecResult`, and why it was killed), its output captured up to
``output_bytes`` per stream (head and tail kept), its stdin fed and its timeout enforced by killing its whole process
group (:func:`_communicate`), and a command too long for argv turned into a script."""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

#: Commands whose arguments add up to more bytes than this reach the sandbox as a script file in its ``/tmp``, never
#: through argv (the kernel caps one argument at 128 KiB and all of them at ``ARG_MAX``).
INLINE_COMMAND_MAX = 8192

_SIGNAL_REASONS = {
    signal.SIGKILL: "killed (SIGKILL): out of memory or killed",
    signal.SIGXCPU: "killed (SIGXCPU): CPU time limit (cpu_seconds) reached",
    signal.SIGXFSZ: "killed (SIGXFSZ): file size limit (file_size_mb) reached",
    signal.SIGSEGV: "crashed (SIGSEGV)",
}

_OOM_REASON = "killed (SIGKILL): out of memory (memory_mb, whole sandbox)"


@dataclass(frozen=True)
class ExecResult:
    """What a command did. ``exit_code`` is ``None`` when the sandbox killed it (``killed`` says why).

    A command killed by a signal inside the sandbox exits with ``128 + signal`` (the shell's convention);
    ``killed`` then names the likely cause (memory, CPU or file-size limit).
    """

    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration: float
    killed: str | None = None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        """stdout then stderr (each kept whole or as head and tail), and why the command was killed: for an agent."""
        parts = [p for p in (self.stdout, self.stderr) if p]
        text = "\n".join(p.rstrip("\n") for p in parts) + ("\n" if parts else "")
        return text + (f"[{self.killed}]\n" if self.killed else "")


def _kill_reason(exit_code: int) -> str | None:
    if exit_code > 128 and exit_code - 128 in _SIGNAL_REASONS:
        return _SIGNAL_REASONS[signal.Signals(exit_code - 128)]
    return None


class _Capture:
    """The bytes of one stream, at most ``limit`` of them: everything when it fits, else its head and its tail."""

    def __init__(self, limit: int):
        self.limit, self.head, self.tail, self.total = limit, bytearray(), bytearray(), 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - len(self.head)
        self.head += data[:room]
        if len(data) > room:
            self.tail += data[room:]
            if len(self.tail) > self.limit:  # trim now and then, not on every chunk
                del self.tail[: -self.limit // 2]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self, name: str) -> str:
        if not self.truncated:
            return self.head.decode("utf-8", errors="replace")
        keep = self.limit // 2
        head, tail = self.head[:keep], (self.head[keep:] + self.tail)[-(self.limit - keep) :]
        note = f"\n[... {self.total - len(head) - len(tail)} bytes of {name} dropped (output_bytes={self.limit}) ...]\n"
        return head.decode("utf-8", errors="replace") + note + tail.decode("utf-8", errors="replace")


@lru_cache(maxsize=1)
def _shell() -> tuple[str, str]:
    return ("/bin/bash", "-c") if os.path.exists("/bin/bash") else ("/bin/sh", "-c")


def _argv_bytes(argv: Sequence[str]) -> int:
    return sum(len(arg.encode("utf-8", "surrogateescape")) + 1 for arg in argv)


def _script(argv: Sequence[str], shell: str) -> bytes:
    """A script for ``shell`` that does what ``argv`` does: the command of ``[shell, "-c", command]`` itself."""
    text = argv[2] if len(argv) == 3 and argv[:2] == [shell, "-c"] else f"exec {shlex.join(argv)}"
    return text.encode("utf-8", "surrogateescape") + b"\n"


def _communicate(
    process: subprocess.Popen, stdin: bytes | None, deadline: float, limit: int
) -> tuple[_Capture, _Capture, bool]:
    """Feed stdin and read both pipes until the command ends or the deadline passes, then kill its group.

    The group is killed before the process is reaped (its pid, hence the group id, cannot be reused by then):
    that also ends what a ``local`` command left in the background.
    """
    captures = {process.stdout: _Capture(limit), process.stderr: _Capture(limit)}
    pending = memoryview(stdin) if stdin is not None else None
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for pipe in captures:
            selector.register(pipe, selectors.EVENT_READ)
        if process.stdin is not None:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin, selectors.EVENT_WRITE)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not timed_out:
                timed_out = True
                _kill_group(process)
                deadline = time.monotonic() + 5.0  # the pipes close once every process holding them is gone
                continue
            if remaining <= 0:
                break  # something out of reach holds a pipe open: stop reading
            for key, _ in selector.select(remaining):
                if key.fileobj is process.stdin:
                    try:
                        written = os.write(key.fd, pending[:65536]) if pending else 0
                    except BrokenPipeError:  # the command does not read its stdin
                        written, pending = 0, None
                    pending = pending[written:] if pending is not None else None
                    if not pending:
                        selector.unregister(key.fileobj)
                        process.stdin.close()
                    continue
                data = os.read(key.fd, 65536)
                if data:
                    captures[key.fileobj].feed(data)
                else:
                    selector.unregister(key.fileobj)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()
    if not timed_out and not _wait_exit(process, deadline - time.monotonic()):
        timed_out = True  # it closed its output but kept running
    _kill_group(process)
    process.wait()
    return captures[process.stdout], captures[process.stderr], timed_out


def _discard(process: subprocess.Popen) -> None:
    """Kill, reap and close a process that no command waits for."""
    _kill_group(process)
    process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def _kill_group(process: subprocess.Popen) -> None:
    if process.returncode is not None:  # reaped: its group id may belong to someone else now
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait_exit(process: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``process`` to exit *without reaping it*; whether it exited."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel or Python): reap, losing only the group-kill guarantee
        try:
            process.wait(timeout=max(timeout, 0))
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            return bool(selector.select(max(timeout, 0)))
    finally:
        os.close(pidfd)
