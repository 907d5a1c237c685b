"""Run untrusted commands (an agent's ``bash``, a repository's tests) in a sandbox with limits.

:func:`open_sandbox` copies a source directory into a fresh workdir and returns a :class:`Sandbox`; ``run`` executes
a command there and returns an :class:`ExecResult` (a non-zero exit, a timeout, a memory error are data, never
exceptions); ``read_file`` / ``write_file`` / ``exists`` act on the workdir and refuse paths that leave it
(:class:`SandboxError`). Backends:

``bubblewrap`` (default, no daemon)
    Each command runs in fresh namespaces (``bwrap``): the host's file system read-only; writable only
    ``/workspace`` and the sandbox's own ``/tmp`` (``HOME`` and ``TMPDIR``; both kept between its commands) and a
    ``/dev/shm`` of at most ``memory_mb``; an empty ``/run`` (no daemon sockets); no network, not even the host's
    loopback; its own PID namespace, so when the command's first process exits or is killed, every process it
    started dies with it (a timeout kills the whole tree, nothing is left behind). About +9 ms per command
    (``benchmarks/sandbox_overhead.py``).

    Fork bombs: ``RLIMIT_NPROC`` does not apply to uid 0, and a user namespace made by root still maps to uid 0.
    So when AgentEnv runs as root, bwrap runs without a user namespace and the command drops (``setpriv``) to a
    uid of its own, one per live sandbox (:data:`SANDBOX_UID_BASE` + slot), which ``RLIMIT_NPROC`` then counts
    exactly; that uid also cannot read root's private files, and root-only folders that hold the interpreter
    (a pyenv in ``/root``) are shown as an empty folder holding only the interpreter. Run as a normal user,
    bwrap makes a user namespace and ``RLIMIT_NPROC``, set inside it, counts only the sandbox's processes.
``docker``
    One container per sandbox (docker SDK, ``pip install 'agentenv[docker]'``): no network, cgroup memory and
    process limits, the workdir copied in; containers are labelled and removed on close or at exit
    (:func:`remove_stale_containers` removes those of crashed processes).
``local``
    A plain subprocess in the workdir with the same rlimits and timeout but no isolation, for debugging; it warns.

Limits (:class:`Limits`) are rlimits set by ``prlimit`` right before the command (address space, CPU seconds,
file size, processes, no core files) plus the wall-clock timeout; output beyond ``output_bytes`` per stream is
dropped (head and tail kept) while it is read, so a command cannot exhaust the host's memory by printing. Not
bounded (no cgroups, so that it works wherever bwrap does): the sum of the processes' memory (each one is) and
the disk space written to the workdir and ``/tmp`` (each file is).
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import selectors
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError, check_choice, check_range

BACKENDS = ("bubblewrap", "docker", "local")
DEFAULT_IMAGE = "python:3.11-slim"
#: Sandboxed commands run as uid ``SANDBOX_UID_BASE + slot`` when AgentEnv runs as root (one slot per live sandbox,
#: claimed through an abstract Unix socket, so it is freed when the process dies). The range holds no real users.
SANDBOX_UID_BASE = 1_900_000_000
SANDBOX_UID_SLOTS = 100_000
#: Label on docker containers made by this module (value: ``<hostname>:<pid>`` of the owning process).
DOCKER_LABEL = "agentenv.sandbox"
_FOLDER_PREFIX = "agentenv-sandbox-"


class SandboxError(ValueError):
    """An operation the sandbox refuses: a path that leaves the root, a NUL byte in a command.

    An agent's tool call that causes it is an invalid turn, not a crash.
    """


# ---- limits and results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits of every command in a sandbox (validated; errors name the field).

    ``memory_mb`` bounds each process's address space (``RLIMIT_AS``; docker: the container's cgroup memory),
    ``processes`` the processes and threads of the sandbox's uid (docker: ``pids_limit``), ``cpu_seconds`` the
    CPU time of each process, ``file_size_mb`` the size of any file written,
    ``output_bytes`` what is kept of each of stdout and stderr.
    """

    wall_seconds: float = 60.0
    cpu_seconds: int = 120
    memory_mb: int = 4096
    processes: int = 256
    file_size_mb: int = 512
    output_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        check_range("wall_seconds", self.wall_seconds, 0.01)
        check_range("cpu_seconds", self.cpu_seconds, 1, integer=True)
        check_range("memory_mb", self.memory_mb, 32, integer=True)
        check_range("processes", self.processes, 2, integer=True)
        check_range("file_size_mb", self.file_size_mb, 1, integer=True)
        check_range("output_bytes", self.output_bytes, 64, integer=True)


_SIGNAL_REASONS = {
    signal.SIGKILL: "killed (SIGKILL): out of memory or killed",
    signal.SIGXCPU: "killed (SIGXCPU): CPU time limit (cpu_seconds) reached",
    signal.SIGXFSZ: "killed (SIGXFSZ): file size limit (file_size_mb) reached",
    signal.SIGSEGV: "crashed (SIGSEGV)",
}


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


# ---- workdirs ----------------------------------------------------------------------------------------------


def _base_dir(base_dir: str | Path | None) -> Path:
    base = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return base.resolve()


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)


def _remove_tree(path: Path) -> None:
    """Remove ``path`` even when the sandboxed code left folders without permissions in it."""
    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)
    except OSError:
        for folder, dirs, _ in os.walk(path):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(folder, name), 0o700, follow_symlinks=False)
        shutil.rmtree(path, ignore_errors=True)


def _check_source(source: str | Path) -> Path:
    path = Path(source)
    if not path.is_dir():
        raise ConfigError(f"source={str(source)!r} is not a directory; give the folder to copy into the sandbox")
    return path.resolve()


class _PoolState:
    """What the refill thread and the finalizer share (not the pool itself, so that it can be collected)."""

    def __init__(self, source: Path, size: int, folder: Path):
        self.source, self.size, self.folder = source, size, folder
        self.ready: list[Path] = []
        self.count = 0
        self.closed = False
        self.changed = threading.Condition()

    def new_path(self) -> Path:
        with self.changed:
            self.count += 1
            return self.folder / f"copy-{self.count}"

    def fill(self) -> None:
        """Keep ``size`` copies ready (the refill thread)."""
        while True:
            with self.changed:
                while not self.closed and len(self.ready) >= self.size:
                    self.changed.wait()
                if self.closed:
                    return
            path = self.new_path()
            try:
                _copy_tree(self.source, path)
            except OSError:  # disk full, source gone: try again at the next take()
                _remove_tree(path)
                with self.changed:
                    self.changed.wait()
                continue
            with self.changed:
                self.ready.append(path)

    def close(self, thread: threading.Thread) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()
        if thread is not threading.current_thread():
            thread.join()
        _remove_tree(self.folder)


class WorkdirPool:
    """Prepared copies of one source folder, so that resetting an env does not wait for a copy.

    ``take()`` hands out a fresh copy (made at once when none is ready) and a background thread makes new ones
    up to ``size``. Pass the pool as ``source`` to :func:`open_sandbox`: the sandbox moves the copy out of the pool
    and owns it. ``close()`` removes every copy still in the pool's folder (also run at interpreter exit).
    """

    def __init__(self, source: str | Path, size: int = 4, *, base_dir: str | Path | None = None):
        check_range("size", size, 0, integer=True)
        self.source, self.size = _check_source(source), size
        self.base_dir = _base_dir(base_dir)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}pool-", dir=self.base_dir))
        self._state = _PoolState(self.source, size, self.folder)
        thread = threading.Thread(target=self._state.fill, name="agentenv-workdir-pool", daemon=True)
        thread.start()
        self._finalizer = weakref.finalize(self, self._state.close, thread)

    def take(self) -> Path:
        """A fresh copy of the source, inside the pool's folder: ``close()`` removes it unless it was moved out."""
        state = self._state
        with state.changed:
            if state.closed:
                raise SandboxError("this WorkdirPool is closed")
            path = state.ready.pop(0) if state.ready else None
            state.changed.notify_all()
        if path is None:
            path = state.new_path()
            _copy_tree(self.source, path)
        return path

    def close(self) -> None:
        """Stop refilling and remove every copy in the pool. Idempotent."""
        self._finalizer()

    def __enter__(self) -> WorkdirPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the base class ----------------------------------------------------------------------------------------


def _clean_env(home: str, tmp: str) -> dict[str, str]:
    """A minimal environment, not the host's: the project's interpreter first on PATH."""
    path = [os.path.dirname(sys.executable), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"]
    path += ["/sbin", "/bin"]
    return {
        "PATH": ":".join(dict.fromkeys(path)),
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": tmp,
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }


def _check_text(field: str, value: str) -> None:
    if "\0" in value:
        raise SandboxError(f"{field} contains a NUL byte")


class _Resources:
    """What a sandbox must release: its folder, its running process groups, its uid slot. Shared with the finalizer
    (which must not hold the sandbox itself) so that everything is released at interpreter exit too."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.processes: set[subprocess.Popen] = set()
        self.uid_slot: socket.socket | None = None
        self.lock = threading.Lock()

    def release(self) -> None:
        with self.lock:
            processes, self.processes = set(self.processes), set()
        for process in processes:
            _kill_group(process)
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

    def read_file(self, path: str) -> str:
        """The UTF-8 text of a file in the sandbox (``FileNotFoundError``, ``IsADirectoryError``,
        ``UnicodeDecodeError`` as usual; :class:`SandboxError` for a path outside the root)."""
        host = self._host_path(path)
        if host.is_dir():
            raise IsADirectoryError(f"{path!r} is a directory")
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block the host
        with open(fd, "rb") as f:
            status = os.fstat(f.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise SandboxError(f"{path!r} is not a regular file")
            if status.st_size > self.limits.file_size_mb * 2**20:
                raise SandboxError(f"{path!r} is larger than file_size_mb={self.limits.file_size_mb}")
            return f.read().decode("utf-8")

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

    # -- life cycle
    def close(self) -> None:
        """Kill every command still running, remove the workdir, free the uid. Idempotent."""
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


@lru_cache(maxsize=1)
def _shell() -> tuple[str, str]:
    return ("/bin/bash", "-c") if os.path.exists("/bin/bash") else ("/bin/sh", "-c")


def _prlimit(limits: Limits, *, processes: bool) -> list[str]:
    """``prlimit`` options that set soft = hard limits (the command can lower them, never raise them)."""
    mb = 2**20
    options = {
        "as": limits.memory_mb * mb,
        "cpu": limits.cpu_seconds,
        "fsize": limits.file_size_mb * mb,
        "core": 0,
    }
    if processes:
        options["nproc"] = limits.processes
    return ["prlimit", *(f"--{name}={value}:{value}" for name, value in options.items()), "--"]


# ---- host processes (bubblewrap, local) ---------------------------------------------------------------------


class _ProcessSandbox(Sandbox):
    """A backend whose commands are host processes reading pipes: the timeout and output cap live here."""

    def __init__(self, workdir: Path, *, limits: Limits, root: str, folder: Path):
        super().__init__(workdir, limits=limits, root=root, folder=folder)
        self.tmp = folder / "tmp"  # the commands' /tmp and HOME, kept between commands
        self.tmp.mkdir()

    def _popen(self, argv: list[str], cwd: str, env: dict[str, str]) -> tuple[list[str], dict[str, str], str | None]:
        """The host argv, environment and working directory that run ``argv`` in ``cwd`` (as the sandbox sees it)."""
        raise NotImplementedError

    def _cwd(self, cwd: str | None) -> str:
        """The command's working directory as the sandbox sees it (checked to be a folder inside the root)."""
        if cwd is None:
            return self.root
        host = self._host_path(cwd)
        if not host.is_dir():
            raise SandboxError(f"cwd={cwd!r} is not a folder in the sandbox")
        assert self.workdir is not None
        relative = host.relative_to(self.workdir).as_posix()
        return self.root if relative == "." else posixpath.join(self.root, relative)

    def _run(
        self, argv: list[str], shown: str, *, timeout: float, cwd: str | None, env: dict[str, str], stdin: str | None
    ) -> ExecResult:
        popen_argv, popen_env, popen_cwd = self._popen(argv, self._cwd(cwd), env)
        start = time.monotonic()
        process = subprocess.Popen(
            popen_argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=popen_env,
            cwd=popen_cwd,
            start_new_session=True,  # its own process group: the timeout kills the group
        )
        with self._resources.lock:
            self._resources.processes.add(process)
        try:
            out, err, timed_out = self._communicate(process, stdin, start + timeout)
        finally:
            if process.returncode is None:  # an exception (e.g. KeyboardInterrupt) while it ran
                _kill_group(process)
                process.wait()
            with self._resources.lock:
                self._resources.processes.discard(process)
        duration = time.monotonic() - start
        code = process.returncode
        if timed_out:
            exit_code, killed = None, f"timed out after {timeout:g} s: killed"
        else:
            exit_code = 128 - code if code < 0 else code  # killed outside the sandbox: report like a shell
            killed = _kill_reason(exit_code)
        return ExecResult(
            command=shown,
            exit_code=exit_code,
            stdout=out.text("stdout"),
            stderr=err.text("stderr"),
            timed_out=timed_out,
            duration=duration,
            killed=killed,
            truncated=out.truncated or err.truncated,
        )

    def _communicate(
        self, process: subprocess.Popen, stdin: str | None, deadline: float
    ) -> tuple[_Capture, _Capture, bool]:
        """Feed stdin and read both pipes until the command ends or the deadline passes, then kill its group.

        The group is killed before the process is reaped (its pid, hence the group id, cannot be reused by then):
        that also ends what a ``local`` command left in the background.
        """
        limit = self.limits.output_bytes
        captures = {process.stdout: _Capture(limit), process.stderr: _Capture(limit)}
        pending = memoryview(stdin.encode("utf-8")) if stdin is not None else None
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


def _claim_uid() -> tuple[int, socket.socket]:
    """A uid no other live sandbox on this host uses, held by binding an abstract Unix socket named after it."""
    for slot in range(SANDBOX_UID_SLOTS):
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            holder.bind(f"\0agentenv-sandbox-uid-{slot}")
        except OSError:
            holder.close()
            continue
        return SANDBOX_UID_BASE + slot, holder
    raise SandboxError(f"all {SANDBOX_UID_SLOTS} sandbox uids are in use")


def _chown_tree(path: Path, uid: int) -> None:
    os.lchown(path, uid, uid)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, uid)


@lru_cache(maxsize=1)
def _interpreter_mounts() -> tuple[str, ...]:
    """bwrap options that let another uid run this interpreter when it lives under a root-only folder.

    E.g. a pyenv Python in ``/root/.pyenv``: ``/root`` becomes an empty folder holding only ``.pyenv``, which also
    keeps the rest of root's home out of sight.
    """
    needed = {Path(p).resolve() for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    needed.add(Path(sys.executable).resolve().parent)
    outermost = sorted(p for p in needed if not any(q != p and q in p.parents for q in needed))
    options: list[str] = []
    hidden: set[Path] = set()
    for path in outermost:
        blocked = next((a for a in reversed(path.parents) if a != a.parent and not a.stat().st_mode & 0o001), None)
        if blocked is None:
            continue
        if blocked not in hidden:
            hidden.add(blocked)
            options += ["--perms", "0755", "--tmpfs", str(blocked)]
        for folder in reversed(path.parents):  # bwrap would make the folders in between private
            if blocked in folder.parents:
                options += ["--perms", "0755", "--dir", str(folder)]
        options += ["--ro-bind", str(path), str(path)]
    return tuple(options)


@lru_cache(maxsize=4)
def _interpreter_paths_under(folder: str) -> tuple[str, ...]:
    """The outermost of this interpreter's folders (prefix, base prefix, executable's folder) under ``folder``,
    which a mount on ``folder`` would otherwise hide from the commands."""
    needed = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, Path(sys.executable).parent)}
    needed |= {p.resolve() for p in needed}
    inside = {p for p in needed if _under(p, folder) and p != Path(folder)}
    return tuple(sorted(str(p) for p in inside if not any(q != p and q in p.parents for q in inside)))


def _host_root_options() -> list[str]:
    """The host's top-level folders, read-only, on bwrap's own root (so that ``root`` can be a new folder)."""
    options: list[str] = []
    for name in sorted(os.listdir("/")):
        path = "/" + name
        if name in ("proc", "dev", "tmp", "run"):
            continue
        if os.path.islink(path):
            options += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path) or os.path.isfile(path):
            options += ["--ro-bind", path, path]
    return options


def _check_bwrap_root(root: str) -> None:
    """``root`` must be a folder bwrap can mount on: new at the top level, under ``/tmp``, or existing."""
    if not root.startswith("/") or posixpath.normpath(root) != root or root == "/":
        raise ConfigError(f"root={root!r} must be a normalised absolute path other than '/' (e.g. '/workspace')")
    top = "/" + root.split("/")[1]
    if top in ("/proc", "/dev", "/run"):
        raise ConfigError(f"root={root!r} cannot be under {top}")
    for needed in (sys.prefix, sys.base_prefix):
        if _under(Path(needed).resolve(), root):
            raise ConfigError(f"root={root!r} would hide this Python ({needed}) from the commands; choose another")
    if top == "/tmp" or not os.path.lexists(top) or os.path.isdir(root):
        return
    raise ConfigError(
        f"root={root!r} cannot be mounted: {top} exists on the host (read-only inside) and {root} does not; "
        "choose a new top-level folder such as '/workspace', or a path under /tmp"
    )


class BubblewrapSandbox(_ProcessSandbox):
    """Each command in fresh namespaces made by ``bwrap`` (see the module docstring for what is isolated)."""

    backend = "bubblewrap"

    def __init__(self, workdir: Path, *, limits: Limits, root: str, folder: Path, network: bool = False):
        _check_bwrap_root(root)
        super().__init__(workdir, limits=limits, root=root, folder=folder)
        self.network = network
        self.as_root = os.geteuid() == 0
        if self.as_root:
            self.uid, self._resources.uid_slot = _claim_uid()
            _chown_tree(workdir, self.uid)
            os.lchown(self.tmp, self.uid, self.uid)
        self._base_options = self._options()

    def _options(self) -> list[str]:
        options = ["bwrap", *_host_root_options()]
        options += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/run"]
        shm = str(self.limits.memory_mb * 2**20)  # POSIX semaphores and shared memory (multiprocessing)
        options += ["--perms", "1777", "--size", shm, "--tmpfs", "/dev/shm"]
        options += ["--bind", str(self.tmp), "/tmp"]
        for path in _interpreter_paths_under("/tmp"):  # e.g. a virtual environment in a clone under /tmp
            for folder in reversed(Path(path).parents):  # bwrap would make the folders in between private
                if _under(folder, "/tmp") and folder != Path("/tmp"):
                    options += ["--perms", "0755", "--dir", str(folder)]
            options += ["--ro-bind", path, path]
        resolv = os.path.realpath("/etc/resolv.conf")
        if self.network and resolv.startswith("/run/"):
            options += ["--ro-bind-try", resolv, resolv]
        assert self.workdir is not None
        base = self.workdir.parent.parent  # holds the other sandboxes' folders (hidden anyway under /tmp)
        needed = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.executable)]
        if not _under(base, "/tmp") and base != base.parent and not any(_under(p, str(base)) for p in needed):
            options += ["--tmpfs", str(base)]
        if self.as_root:
            options += list(_interpreter_mounts())
        options += ["--bind", str(self.workdir), self.root, "--remount-ro", "/"]
        options += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        options += [] if self.network else ["--unshare-net"]
        options += ["--hostname", "sandbox", "--die-with-parent", "--new-session"]
        if self.as_root:  # no user namespace: the uid must be a real host uid for RLIMIT_NPROC to apply
            options += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            options += ["--unshare-user"]
        return options

    def _popen(self, argv: list[str], cwd: str, env: dict[str, str]) -> tuple[list[str], dict[str, str], str | None]:
        command = [*self._base_options, "--chdir", cwd, "--", *_prlimit(self.limits, processes=True)]
        if self.as_root:
            uid = str(self.uid)
            command += ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "--inh-caps=-all", "--"]
        return [*command, *argv], {**_clean_env("/tmp", "/tmp"), **env}, None


def _under(path: Path, folder: str) -> bool:
    return path == Path(folder) or Path(folder) in path.parents


class LocalSandbox(_ProcessSandbox):
    """Commands as plain host processes in the workdir: limits and timeout, no isolation (debugging only).

    ``root`` is the workdir's host path. A process that leaves the process group (``setsid``) survives the
    timeout; processes are not limited when running as root.
    """

    backend = "local"

    def __init__(self, workdir: Path, *, limits: Limits, folder: Path):
        super().__init__(workdir, limits=limits, root=str(workdir), folder=folder)

    def _popen(self, argv: list[str], cwd: str, env: dict[str, str]) -> tuple[list[str], dict[str, str], str | None]:
        # RLIMIT_NPROC counts all of the user's processes outside a user namespace: it would starve them.
        limited = [*_prlimit(self.limits, processes=False), *argv]
        return limited, {**_clean_env(str(self.tmp), str(self.tmp)), **env}, cwd

    def _cwd(self, cwd: str | None) -> str:
        return str(self._host_path(cwd)) if cwd is not None else self.root


# ---- docker -------------------------------------------------------------------------------------------------


def _import_docker() -> Any:
    try:
        import docker
    except ImportError as e:
        raise ConfigError("backend='docker' needs the Docker SDK: pip install 'agentenv[docker]'") from e
    return docker


def _owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _remove_container(client: Any, container_id: str) -> None:
    with contextlib.suppress(Exception):  # already gone, or the engine went away: nothing left to do at exit
        client.api.remove_container(container_id, force=True)


def remove_stale_containers(client: Any = None, *, all_owners: bool = False) -> int:
    """Remove sandbox containers whose owning process on this host is gone (every one with ``all_owners``).

    Returns how many were removed.
    """
    docker = _import_docker()
    client = client or docker.from_env()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": DOCKER_LABEL}):
        host, _, pid = container.labels.get(DOCKER_LABEL, "").rpartition(":")
        if not all_owners:
            if host != socket.gethostname() or not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # its owner is alive
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        container.remove(force=True)
        removed += 1
    return removed


def _tar_file(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class DockerSandbox(Sandbox):
    """One container per sandbox; the workdir lives only in the container (``workdir`` is ``None``).

    Containers run ``sleep infinity`` under docker's init with no network, all capabilities dropped,
    ``no-new-privileges``, cgroup memory (``memory_mb``, no swap) and pids (``processes``) limits and ``cpus``
    CPUs; each command runs as ``timeout -k 1 <t> bash -c ...``. Processes a command leaves in the background
    keep running until the sandbox closes.
    """

    backend = "docker"

    def __init__(
        self,
        source: Path | None,
        *,
        limits: Limits,
        root: str,
        image: str | None = None,
        network: bool = False,
        cpus: float = 1.0,
        client: Any = None,
    ):
        check_range("cpus", cpus, 0.01)
        if not root.startswith("/") or posixpath.normpath(root) != root or root == "/":
            raise ConfigError(f"root={root!r} must be a normalised absolute path other than '/'")
        docker = _import_docker()
        super().__init__(None, limits=limits, root=root, folder=None)
        self.image = image or DEFAULT_IMAGE
        self._client = client or docker.from_env()
        mb = 2**20
        ulimits = [
            docker.types.Ulimit(name="fsize", soft=limits.file_size_mb * mb, hard=limits.file_size_mb * mb),
            docker.types.Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds),
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ]
        container = self._client.containers.run(
            self.image,
            command=["sleep", "infinity"],
            detach=True,
            init=True,
            labels={DOCKER_LABEL: _owner_label()},
            network_mode=None if network else "none",
            mem_limit=f"{limits.memory_mb}m",
            memswap_limit=f"{limits.memory_mb}m",
            pids_limit=limits.processes,
            nano_cpus=int(cpus * 1e9),
            ulimits=ulimits,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
        )
        self.container_id = container.id
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _remove_container, self._client, container.id)
        self._shell = ["bash", "-c"] if self._exec(["test", "-x", "/bin/bash"])[0] == 0 else ["sh", "-c"]
        self._exec(["mkdir", "-p", root])
        if source is not None:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                tar.add(source, arcname=".")
            self._client.api.put_archive(container.id, root, buffer.getvalue())

    def _exec(self, argv: list[str], workdir: str = "/") -> tuple[int, bytes]:
        api = self._client.api
        exec_id = api.exec_create(self.container_id, argv, workdir=workdir)["Id"]
        output = api.exec_start(exec_id)
        return api.exec_inspect(exec_id)["ExitCode"], output

    def _run(
        self, argv: list[str], shown: str, *, timeout: float, cwd: str | None, env: dict[str, str], stdin: str | None
    ) -> ExecResult:
        if argv[:2] == list(_shell()):
            argv = [*self._shell, argv[2]]
        workdir = self._resolve(cwd) if cwd is not None else self.root
        if stdin is not None:  # exec has no simple stdin: put it in a file and redirect
            name = f".agentenv-stdin-{time.monotonic_ns()}"
            self._client.api.put_archive(self.container_id, "/tmp", _tar_file(name, stdin.encode("utf-8")))
            argv = ["sh", "-c", f'exec "$@" < /tmp/{name}', "sh", *argv]
        wrapped = ["timeout", "-k", "1", f"{timeout:g}", *argv]
        api = self._client.api
        full_env = {"LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}
        full_env.update({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **env})
        start = time.monotonic()
        exec_id = api.exec_create(self.container_id, wrapped, workdir=workdir, environment=full_env)["Id"]
        out, err = _Capture(self.limits.output_bytes), _Capture(self.limits.output_bytes)
        for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
            if chunk_out:
                out.feed(chunk_out)
            if chunk_err:
                err.feed(chunk_err)
        duration = time.monotonic() - start
        code = api.exec_inspect(exec_id)["ExitCode"]
        timed_out = code in (124, 137) and duration >= timeout - 0.05
        exit_code = None if timed_out else code
        killed = f"timed out after {timeout:g} s: killed" if timed_out else _kill_reason(code)
        return ExecResult(shown, exit_code, out.text("stdout"), err.text("stderr"), timed_out, duration, killed,
                          out.truncated or err.truncated)  # fmt: skip

    def _resolve(self, path: str) -> str:
        """``path`` resolved inside the container (``realpath -m``), checked to stay under the root."""
        _check_text("path", path)
        joined = posixpath.join(self.root, path)
        code, output = self._exec(["realpath", "-m", "--", joined])
        resolved = output.decode("utf-8", errors="replace").strip()
        root = self.root.rstrip("/")
        if code != 0 or (resolved != root and not resolved.startswith(root + "/")):
            raise SandboxError(f"{path!r} is outside the sandbox root {self.root}")
        return resolved

    def read_file(self, path: str) -> str:
        from docker.errors import NotFound

        resolved = self._resolve(path)
        try:
            stream, info = self._client.api.get_archive(self.container_id, resolved)
        except NotFound:
            raise FileNotFoundError(f"{path}: no such file") from None
        if info.get("mode", 0) & (1 << 31):  # Go's os.ModeDir
            raise IsADirectoryError(f"{path} is a directory")
        if info.get("size", 0) > self.limits.file_size_mb * 2**20:
            raise SandboxError(f"{path!r} is larger than file_size_mb={self.limits.file_size_mb}")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            extracted = tar.extractfile(member) if member is not None else None
            if extracted is None:
                raise FileNotFoundError(f"{path}: not a regular file")
            return extracted.read().decode("utf-8")

    def write_file(self, path: str, text: str) -> None:
        resolved = self._resolve(path)
        if resolved == self.root.rstrip("/"):
            raise IsADirectoryError(f"{path!r} is the sandbox root")
        folder, name = posixpath.split(resolved)
        code, output = self._exec(["mkdir", "-p", "--", folder])
        if code != 0:
            raise NotADirectoryError(f"{path}: {output.decode('utf-8', errors='replace').strip()}")
        self._client.api.put_archive(self.container_id, folder, _tar_file(name, text.encode("utf-8")))

    def exists(self, path: str) -> bool:
        return self._exec(["test", "-e", self._resolve(path)])[0] == 0


# ---- opening ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _bubblewrap_problem() -> str | None:
    if shutil.which("bwrap") is None:
        return "bwrap not found (install bubblewrap, e.g. apt-get install bubblewrap)"
    tools = ["prlimit", "setpriv"] if os.geteuid() == 0 else ["prlimit"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (install util-linux)"
    probe = ["bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--unshare-pid", "--unshare-net"]
    probe += [] if os.geteuid() == 0 else ["--unshare-user"]
    try:
        done = subprocess.run([*probe, "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap does not run: {e}"
    if done.returncode != 0:
        return f"bwrap cannot make namespaces here: {done.stderr.strip() or f'exit code {done.returncode}'}"
    return None


def _docker_problem() -> str | None:
    try:
        import docker
    except ImportError:
        return "the Docker SDK is not installed: pip install 'agentenv[docker]'"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as e:  # the SDK raises DockerException, requests' errors, FileNotFoundError...
        return f"no Docker engine reachable: {e}"
    return None


def available_backends() -> dict[str, str | None]:
    """Each backend mapped to ``None`` when it can run here, else the reason it cannot."""
    return {
        "bubblewrap": _bubblewrap_problem(),
        "docker": _docker_problem(),
        "local": None if sys.platform != "win32" and shutil.which("prlimit") else "prlimit not found (util-linux)",
    }


def open_sandbox(
    source: str | Path | WorkdirPool | None = None,
    *,
    backend: str = "bubblewrap",
    limits: Limits | None = None,
    root: str = "/workspace",
    image: str | None = None,
    network: bool = False,
    **kwargs: Any,
) -> Sandbox:
    """A new sandbox holding a copy of ``source`` (a folder, or a :class:`WorkdirPool` to take a prepared copy
    from; ``None``: an empty workdir).

    Extra options: ``base_dir`` (where workdirs go; default: the temp dir; bubblewrap and local), ``cpus`` and
    ``client`` (docker). ``image`` is for docker only (default :data:`DEFAULT_IMAGE`). Raises
    :class:`~agentenv.errors.ConfigError` when the backend cannot run here, saying why.
    """
    check_choice("backend", backend, BACKENDS)
    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise ConfigError(f"limits must be a Limits, not {type(limits).__name__}")
    allowed = {"docker": {"cpus", "client"}}.get(backend, {"base_dir"})
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"open_sandbox(backend={backend!r}) got unknown options {unknown}; allowed: {sorted(allowed)}"
        )
    if image is not None and backend != "docker":
        raise ConfigError(f"image={image!r} is for backend='docker' only")
    if backend == "bubblewrap":
        _check_bwrap_root(root)
        problem = _bubblewrap_problem()
        if problem:
            raise ConfigError(f"backend='bubblewrap' cannot run here: {problem}")
    if backend == "docker":
        problem = None if "client" in kwargs else _docker_problem()
        if problem:
            raise ConfigError(f"backend='docker' cannot run here: {problem}")
        if isinstance(source, WorkdirPool):
            source = source.source
        source_path = _check_source(source) if source is not None else None
        return DockerSandbox(source_path, limits=limits, root=root, image=image, network=network, **kwargs)
    if source is not None and not isinstance(source, WorkdirPool):
        source = _check_source(source)
    if backend == "local":
        warnings.warn("backend='local' runs commands on the host without isolation", stacklevel=2)
    base = source.base_dir if isinstance(source, WorkdirPool) and "base_dir" not in kwargs else None
    folder = Path(tempfile.mkdtemp(prefix=_FOLDER_PREFIX, dir=_base_dir(kwargs.get("base_dir", base))))
    workdir = folder / "work"
    try:
        if isinstance(source, WorkdirPool):
            shutil.move(source.take(), workdir)
        elif source is not None:
            _copy_tree(source, workdir)
        else:
            workdir.mkdir()
        if backend == "local":
            return LocalSandbox(workdir, limits=limits, folder=folder)
        return BubblewrapSandbox(workdir, limits=limits, root=root, folder=folder, network=network)
    except BaseException:
        _remove_tree(folder)
        raise
