"""The contract of every backend: :class:`Sandbox` runs commands and reads and writes files confined to its root, and
releases what it holds (:class:`_Resources`) on close or at interpreter exit."""

from __future__ import annotations

import os
import shlex
import socket
import stat
import subprocess
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentenv.errors import check_range
from agentenv.sandbox.cgroups import _Cgroups
from agentenv.sandbox.errors import FileTooLargeError, SandboxError
from agentenv.sandbox.limits import Limits
from agentenv.sandbox.process import ExecResult, _discard, _kill_group, _shell
from agentenv.sandbox.workdirs import _remove_tree

#: The most :meth:`Sandbox.read_file` reads unless told otherwise (a bigger file raises :class:`SandboxError`).
READ_LIMIT = 16 * 2**20


def _check_text(field: str, value: str) -> None:
    if "\0" in value:
        raise SandboxError(f"{field} contains a NUL byte")
    try:
        value.encode("utf-8", "surrogateescape")  # undecodable bytes of file names are fine, lone surrogates not
    except UnicodeEncodeError:
        raise SandboxError(f"{field} contains a lone surrogate (not valid Unicode)") from None


class _Resources:
    """What a sandbox must release: its folder, its running process groups, its uid slot. Shared with the finalizer
    (which must not hold the sandbox itself) so that everything is released at interpreter exit too."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.processes: set[subprocess.Popen] = set()
        self.ready: subprocess.Popen | None = None  # a shell in the cgroups, waiting for a command (see _READY)
        self.cgroups: _Cgroups | None = None
        self.uid_slot: socket.socket | None = None
        self.lock = threading.Lock()
        self.released = False

    def release(self) -> None:
        with self.lock:
            processes, self.processes = set(self.processes), set()
            ready, self.ready, self.released = self.ready, None, True
        for process in processes:
            _kill_group(process)
        if ready is not None:
            _discard(ready)
        if self.cgroups is not None:
            self.cgroups.remove()
            self.cgroups = None
        if self.folder is not None:
            _remove_tree(self.folder)
        if self.uid_slot is not None:
            self.uid_slot.close()
            self.uid_slot = None


class Sandbox:
    """A writable copy of a folder where commands run with limits; subclasses are the backends.

    ``root`` is where the copy appears to the commands; ``workdir`` is the copy on the host (``None`` for docker).
    File paths are relative to ``root`` or absolute inside it; any other path raises :class:`SandboxError`.
    """

    backend: str = ""

    def __init__(self, workdir: Path | None, *, limits: Limits, root: str, folder: Path | None):
        self.workdir, self.limits, self.root = workdir, limits, root
        self.uid: int | None = None  # the host uid that commands run as, when it differs from ours
        #: How memory_mb, processes and disk_mb hold for this sandbox (see :func:`limit_support`).
        self.limit_mode: dict[str, str] = {}
        self._resources = _Resources(folder)
        self._finalizer = weakref.finalize(self, self._resources.release)
        self._closed = False

    # -- commands
    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> ExecResult:
        """Run ``command`` (a string for ``bash -c``, or an argv) and return what it did. Never raises for the
        command's own failures (non-zero exit, timeout, memory): they are data in the :class:`ExecResult`."""
        if self._closed:
            raise SandboxError("this sandbox is closed")
        if isinstance(command, str):
            _check_text("command", command)
            shown, argv = command, [*_shell(), command]
        else:
            argv = [str(a) for a in command]
            if not argv:
                raise SandboxError("command is an empty argv")
            for arg in argv:
                _check_text("command", arg)
            shown = shlex.join(argv)
        timeout = self.limits.wall_seconds if timeout is None else timeout
        check_range("timeout", timeout, 0.01)
        extra = {str(key): str(value) for key, value in (env or {}).items()}
        for key, value in extra.items():
            _check_text("env", key + value)
            if not key or "=" in key:
                raise SandboxError(f"env has a bad variable name {key!r}")
        return self._run(argv, shown, timeout=float(timeout), cwd=cwd, env=extra, stdin=stdin)

    def _run(
        self, argv: list[str], shown: str, *, timeout: float, cwd: str | None, env: dict[str, str], stdin: str | None
    ) -> ExecResult:
        raise NotImplementedError

    # -- files (host-side for the backends that keep the workdir on the host)
    def _host_path(self, path: str) -> Path:
        """The host path of ``path`` inside the workdir, every symlink resolved (absolute targets inside ``root``
        are followed as the sandbox sees them); raises :class:`SandboxError` if it leaves the workdir."""
        assert self.workdir is not None
        if not isinstance(path, str):
            raise SandboxError(f"path must be a string, not {type(path).__name__}")
        _check_text("path", path)
        root = self.root.rstrip("/")
        relative = path
        if path.startswith("/"):
            if path != root and not path.startswith(root + "/"):
                raise SandboxError(f"{path!r} is outside the sandbox root {self.root}")
            relative = path[len(root) :]
        pending = [p for p in reversed(relative.split("/")) if p not in ("", ".")]
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.pop()
            if part == "..":
                if not resolved:
                    raise SandboxError(f"{path!r} leaves the sandbox root {self.root}")
                resolved.pop()
                continue
            candidate = self.workdir.joinpath(*resolved, part)
            if not candidate.is_symlink():
                resolved.append(part)
                continue
            hops += 1
            if hops > 40:
                raise SandboxError(f"{path!r}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                if target.rstrip("/") != root and not target.startswith(root + "/"):
                    raise SandboxError(f"{path!r} leads outside the sandbox root through a symlink to {target!r}")
                resolved, target = [], target[len(root) :]
            pending.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
        return self.workdir.joinpath(*resolved)

    def read_file(self, path: str, *, max_bytes: int = READ_LIMIT) -> str:
        """The UTF-8 text of a file in the sandbox (``FileNotFoundError``, ``IsADirectoryError``,
        ``UnicodeDecodeError`` as usual; :class:`SandboxError` for a path outside the root, a file that is not a
        regular file, or one of more than ``max_bytes`` bytes)."""
        return self.read_bytes(path, max_bytes=max_bytes).decode("utf-8")

    def read_bytes(self, path: str, *, max_bytes: int = READ_LIMIT) -> bytes:
        """The bytes of a regular file in the sandbox; a bigger file than ``max_bytes`` raises :class:`SandboxError`
        before anything is read, and no more than ``max_bytes + 1`` bytes are ever read (the file may grow)."""
        host = self._host_path(path)
        if host.is_dir():
            raise IsADirectoryError(f"{path!r} is a directory")
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block the host
        with open(fd, "rb") as f:
            status = os.fstat(f.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise SandboxError(f"{path!r} is not a regular file")
            too_big = f"{path!r} has more than max_bytes={max_bytes} bytes"
            if status.st_size > max_bytes:
                raise FileTooLargeError(too_big)
            data = f.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise FileTooLargeError(too_big)
            return data

    def write_file(self, path: str, text: str) -> None:
        """Write ``text`` (UTF-8) to a file in the sandbox, creating its folders; owned by the sandbox's uid."""
        host = self._host_path(path)
        if host == self.workdir:
            raise IsADirectoryError(f"{path!r} is the sandbox root")
        missing = [p for p in [host.parent, *host.parent.parents] if not p.exists()]
        for folder in reversed(missing):  # outermost first; all inside the workdir (the root exists)
            folder.mkdir()
            self._own(folder)
        created = not host.exists()
        if host.is_dir():
            raise IsADirectoryError(f"{path!r} is a directory")
        if not created and not host.is_file():
            raise SandboxError(f"{path!r} is not a regular file")
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        with open(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        if created:
            self._own(host)

    def exists(self, path: str) -> bool:
        """Whether ``path`` names an existing file or folder inside the root."""
        return self._host_path(path).exists()

    def _own(self, path: Path) -> None:
        if self.uid is not None:
            os.lchown(path, self.uid, self.uid)

    # -- limits
    @property
    def cgroups(self) -> tuple[Path, ...]:
        """The host folders of the sandbox's cgroups (one, or one per v1 hierarchy; none without cgroups)."""
        cgroups = self._resources.cgroups
        return tuple(cgroups.folders) if cgroups is not None else ()

    def usage(self) -> dict[str, int]:
        """What the sandbox holds now as its cgroups and tmpfs count it: ``memory_bytes``, ``memory_peak_bytes``,
        ``processes``, ``processes_peak``, ``disk_bytes`` (the ones this kernel and mode report)."""
        cgroups, folder = self._resources.cgroups, self._resources.folder
        usage = cgroups.usage() if cgroups is not None else {}
        if folder is not None and os.path.ismount(folder):
            status = os.statvfs(folder)
            usage["disk_bytes"] = (status.f_blocks - status.f_bfree) * status.f_frsize
        return usage

    # -- life cycle
    def close(self) -> None:
        """Kill every command still running, remove the cgroups and the workdir, free the uid. Idempotent."""
        self._closed = True
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r}, root={self.root!r}, workdir={self.workdir})"
