"""Run untrusted commands (an agent's ``bash``, a repository's tests) in a sandbox with limits.

:func:`open_sandbox` copies a source directory into a fresh workdir and returns a :class:`Sandbox`; ``run`` executes
a command there and returns an :class:`ExecResult` (a non-zero exit, a timeout, a memory error are data, never
exceptions); ``read_file`` / ``write_file`` / ``exists`` act on the workdir and refuse paths that leave it
(:class:`SandboxError`). Backends:

``bubblewrap`` (default, no daemon)
    Each command runs in fresh namespaces (``bwrap``) that show a minimal file system:

    - read-only: the system folders :data:`SYSTEM_FOLDERS` (``/usr``, ``/etc``, ``/bin``, ``/lib``...; symlinks stay
      symlinks) and this interpreter's folders (``sys.prefix``, ``sys.base_prefix``, ``sys.exec_prefix``, the
      executable's folder; the folders above them appear empty), so that the project's ``python`` and its packages
      (``pytest``...) run inside; inside those, the ``agentenv`` package itself (and its ``envs``/``rewards``/
      ``policies`` folders, and the source checkout of an editable install), the AgentEnv cache
      (:func:`agentenv.cache.cache_root`) and the folder that holds the workdirs are empty;
    - writable: ``/workspace`` (the workdir) and the sandbox's own ``/tmp`` (``HOME`` and ``TMPDIR``; both kept
      between its commands), a ``/dev/shm`` of at most ``memory_mb``;
    - ``/proc`` of its own PID namespace, a minimal ``/dev``, an empty ``/run`` (no daemon sockets);
    - nothing else of the host: no ``/root``, ``/home``, ``/work``, ``/opt``, ``/srv``, ``/mnt``, ``/var``, ``/sys``,
      no project checkout, no other sandbox's workdir.

    No network, not even the host's loopback; its own PID namespace, so when the command's first process exits or
    is killed, every process it started dies with it (a timeout kills the whole tree, nothing is left behind).
    About +9 ms per command (``benchmarks/sandbox_overhead.py``).

    Fork bombs: ``RLIMIT_NPROC`` does not apply to uid 0, and a user namespace made by root still maps to uid 0.
    So when AgentEnv runs as root, bwrap runs without a user namespace and the command drops (``setpriv``) to a
    uid of its own, one per live sandbox (:data:`SANDBOX_UID_BASE` + slot), which ``RLIMIT_NPROC`` then counts
    exactly; that uid also cannot read root's private files. Run as a normal user, bwrap makes a user namespace
    and ``RLIMIT_NPROC``, set inside it, counts only the sandbox's processes. The command's PID 1 is a shell that
    reaps the orphans (:data:`_INIT`).
``docker``
    One container per sandbox (docker SDK, ``pip install 'agentenv[docker]'``): no network, cgroup memory and
    process limits, the workdir copied in; containers are labelled and removed on close or at exit
    (:func:`remove_stale_containers` removes those of crashed processes).
``local``
    A plain subprocess in the workdir with the same limits and timeout but no isolation, for debugging; it warns.

Limits (:class:`Limits`) of the bubblewrap and local backends, see :func:`limit_support` for what holds here:

- per sandbox, through cgroups (v2, or v1 ``memory`` and ``pids`` hierarchies; one cgroup per sandbox, a child of
  this process's own, made at open and removed at close): ``memory_mb`` bounds the memory of all of the sandbox's
  processes together (no swap) and ``processes`` their number (every task: bwrap's own two and the waiting shell
  below included). Each
  command is in the cgroups before ``bwrap`` starts: a shell that joined them ahead of time runs it, because
  joining waits for an RCU grace period (~10 ms; :data:`_READY`). Needs a writable cgroup file system (root, or a
  delegated cgroup v2); on v2 a cgroup holding processes cannot give controllers to children, so when this process
  is alone in its cgroup it moves itself into a child ``agentenv-host`` first. Off with
  ``AGENTENV_SANDBOX_CGROUPS=0``.
- per sandbox, through a tmpfs of ``disk_mb`` mounted (as root) on the sandbox's folder before the workdir is
  copied in: the workdir and ``/tmp`` share that quota (a write beyond it fails with ``ENOSPC``); at most 256
  files and folders per MB. Its pages are memory: those written by the sandbox's commands count toward
  ``memory_mb``, the copy of the source toward this process's own memory. Off with ``AGENTENV_SANDBOX_DISK_QUOTA=0``.
- per process, through rlimits set by ``prlimit`` right before the command: the address space (``memory_mb``, so
  that one huge allocation fails with ``MemoryError`` at once), CPU seconds, file size, processes of the
  sandbox's uid (bubblewrap), no core files; plus the wall-clock timeout. Output beyond ``output_bytes`` per stream
  is dropped (head and tail kept) while it is read, so a command cannot exhaust the host's memory by printing.

Commands whose arguments add up to more than :data:`INLINE_COMMAND_MAX` bytes reach the sandbox as a script file in
its ``/tmp`` (removed after the command), never through argv, whose size the kernel caps. ``read_file`` and
``read_bytes`` read at most ``max_bytes`` (:data:`READ_LIMIT` by default) and never block on a FIFO.

Crash safety: a process killed with SIGKILL cannot remove its sandboxes, so each sandbox folder (and pool folder,
and cgroup) carries its owner's mark in its name: boot id, PID namespace, pid and start time (:func:`_owner_mark`).
:func:`reclaim_leftovers` removes those whose owner is gone (unmounting a tmpfs quota first); :func:`open_sandbox`
runs it on its base folder at most every :data:`RECLAIM_EVERY` seconds, ``agentenv clean`` on demand.

Without cgroups (not root, a read-only cgroup file system, no controllers) memory and processes fall back to those
per-process rlimits (the sum of the processes' memory is then not bounded); without the tmpfs (not root) disk space
is bounded per file only (``file_size_mb``). Either fallback warns once per process. With a disk quota a
:class:`WorkdirPool` saves nothing (its source is copied into the tmpfs, as a prepared copy would have to be).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import itertools
import os
import posixpath
import re
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
import uuid
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
#: The most :meth:`Sandbox.read_file` reads unless told otherwise (a bigger file raises :class:`SandboxError`).
READ_LIMIT = 16 * 2**20
#: Commands whose arguments add up to more bytes than this reach the sandbox as a script file in its ``/tmp``, never
#: through argv (the kernel caps one argument at 128 KiB and all of them at ``ARG_MAX``).
INLINE_COMMAND_MAX = 8192


class SandboxError(ValueError):
    """An operation the sandbox refuses: a path that leaves the root, a NUL byte in a command.

    An agent's tool call that causes it is an invalid turn, not a crash.
    """


class FileTooLargeError(SandboxError):
    """A file read refused because it holds more bytes than the reader's ``max_bytes``."""


# ---- limits and results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits of a sandbox (validated; errors name the field); the module docstring says how each holds.

    ``memory_mb`` bounds the memory of all of the sandbox's processes together (cgroup, tmpfs pages included;
    docker: the container's) and each one's address space (``RLIMIT_AS``); ``processes`` the sandbox's tasks
    (cgroup, bwrap's own three included; docker: ``pids_limit``) and the processes and threads of its uid;
    ``disk_mb`` what its workdir and ``/tmp`` hold together (tmpfs; default 1 GiB; not the docker backend);
    ``cpu_seconds`` the CPU time of each process, ``file_size_mb`` the size of any file written, ``output_bytes``
    what is kept of each of stdout and stderr.
    """

    wall_seconds: float = 60.0
    cpu_seconds: int = 120
    memory_mb: int = 4096
    processes: int = 256
    file_size_mb: int = 512
    disk_mb: int = 1024
    output_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        check_range("wall_seconds", self.wall_seconds, 0.01)
        check_range("cpu_seconds", self.cpu_seconds, 1, integer=True)
        check_range("memory_mb", self.memory_mb, 32, integer=True)
        check_range("processes", self.processes, 4, integer=True)
        check_range("file_size_mb", self.file_size_mb, 1, integer=True)
        check_range("disk_mb", self.disk_mb, 1, integer=True)
        check_range("output_bytes", self.output_bytes, 64, integer=True)


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


# ---- workdirs ----------------------------------------------------------------------------------------------


def _base_dir(base_dir: str | Path | None) -> Path:
    base = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return base.resolve()


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)


def _remove_tree(path: Path) -> None:
    """Remove ``path`` even when the sandboxed code left folders without permissions in it (or a tmpfs on it)."""
    if not os.path.lexists(path):
        return
    if os.path.ismount(path):
        _unmount(path)
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
    and owns it (with a disk quota it copies the pool's source into its tmpfs instead). ``close()`` removes every
    copy still in the pool's folder (also run at interpreter exit).
    """

    def __init__(self, source: str | Path, size: int = 4, *, base_dir: str | Path | None = None):
        check_range("size", size, 0, integer=True)
        self.source, self.size = _check_source(source), size
        self.base_dir = _base_dir(base_dir)
        _reclaim_now_and_then(self.base_dir)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}pool-{_owner_mark()}-", dir=self.base_dir))
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


# ---- owners: what a killed process leaves behind is reclaimed --------------------------------------------------

#: How often (seconds) opening a sandbox also looks for leftovers of dead processes in its base folder.
RECLAIM_EVERY = 60.0
_OWNED = re.compile(r"(?:pool-|probe-)?([0-9a-f]{8})\.(\d+)\.(\d+)\.(\d+)-")
_LEGACY_CGROUP = re.compile(r"(\d+)-\d+$")
_last_reclaim: dict[str, float] = {}
_reclaim_lock = threading.Lock()


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot: ``/proc/<pid>/stat`` field 22); ``None`` if none runs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[19])


@lru_cache(maxsize=1)
def _boot_and_namespace() -> tuple[str, int]:
    """This boot (the first 8 hex digits of its id) and PID namespace: a pid means one process only within both."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    return boot, os.stat("/proc/self/ns/pid").st_ino


def _owner_mark() -> str:
    """``boot.pidns.pid.start`` of this process, put in the names of the folders and cgroups it makes, so that
    a later process can tell when their owner is dead (the start time, so that a reused pid does not fool it)."""
    try:
        boot, namespace = _boot_and_namespace()
        start = _process_start(os.getpid())
    except (OSError, ValueError, IndexError):  # no /proc (not Linux): folders then carry no owner
        return "unowned"
    return f"{boot}.{namespace}.{os.getpid()}.{start}"


def _owner_dead(name: str) -> int | None:
    """The pid of the dead process that owned the folder or cgroup ``name`` (its part after the prefix), or ``None``:
    owner alive, or in another PID namespace of this boot (then this process cannot tell), or no owner mark."""
    found = _OWNED.match(name)
    if found is None:
        return None
    boot, namespace, pid, start = found.group(1), int(found.group(2)), int(found.group(3)), int(found.group(4))
    try:
        my_boot, my_namespace = _boot_and_namespace()
    except (OSError, ValueError):
        return None
    if boot != my_boot:  # made before the last reboot
        return pid
    if namespace != my_namespace:
        return None
    return None if _process_start(pid) == start else pid


@dataclass(frozen=True)
class Leftover:
    """A sandbox folder (workdir and ``/tmp``, or a pool's copies) or a cgroup whose owning process is dead."""

    kind: str  # "folder" or "cgroup"
    path: Path
    owner_pid: int
    mounted: bool = False  # a folder with its tmpfs quota still mounted


def reclaim_leftovers(base_dir: str | Path | None = None, *, dry_run: bool = False) -> list[Leftover]:
    """Remove what the sandboxes of dead processes left behind: their folders in ``base_dir`` (default: the temp
    dir; a tmpfs quota on one is unmounted first) and their cgroups. Returns what was removed (with ``dry_run``:
    what would be).

    A folder or cgroup is removed only when its name carries an owner mark (pid and start time, see
    :func:`_owner_mark`) of a process that is gone; a live owner's, one in another PID namespace, or one without a
    mark is never touched. ``open_sandbox`` runs this on its base folder at most every :data:`RECLAIM_EVERY`
    seconds; ``agentenv clean`` runs it on demand.
    """
    base = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir())
    found: list[Leftover] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            if not entry.name.startswith(_FOLDER_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            pid = _owner_dead(entry.name[len(_FOLDER_PREFIX) :])
            if pid is not None:
                path = Path(entry.path)
                found.append(Leftover("folder", path, pid, mounted=os.path.ismount(path)))
    if not _cgroups_off():
        with contextlib.suppress(OSError):
            found += _stale_cgroups(_cgroup_parents()[1])
    if not dry_run:
        for leftover in found:
            if leftover.kind == "folder":
                _remove_tree(leftover.path)
            else:
                _remove_cgroup(leftover.path)
    return found


def _reclaim_now_and_then(base: Path) -> None:
    """:func:`reclaim_leftovers` on ``base``, unless this process did so less than :data:`RECLAIM_EVERY` s ago."""
    now = time.monotonic()
    with _reclaim_lock:
        last = _last_reclaim.get(str(base))
        if last is not None and now - last < RECLAIM_EVERY:
            return
        _last_reclaim[str(base)] = now
    try:
        reclaim_leftovers(base)
    except OSError as e:  # never a reason not to open a sandbox
        _warn_once("reclaim", f"could not remove the sandboxes that dead processes left in {base}: {e}")


# ---- limits of the whole sandbox: cgroups and a tmpfs quota ------------------------------------------------

#: Set to ``0`` to keep sandboxes out of cgroups (memory and processes then bounded per process only).
CGROUPS_SWITCH = "AGENTENV_SANDBOX_CGROUPS"
#: Set to ``0`` to keep the workdir on the host's disk (disk space then bounded per file only).
DISK_QUOTA_SWITCH = "AGENTENV_SANDBOX_DISK_QUOTA"
_CGROUP_PREFIX = "agentenv-sandbox-"
_CGROUP_HOST = "agentenv-host"  # where this process moves itself on cgroup v2 (see the module docstring)
_CGROUP_NAMES = itertools.count()
_JOIN_CGROUPS = 'for f; do shift; [ "$f" = -- ] && exec "$@"; echo $$ > "$f" || exit 125; done'
#: Moving a task into a cgroup waits for an RCU grace period (~10 ms), so each sandbox keeps one shell that has
#: joined its cgroups ahead of time: it reads a command (``exec ...``) from its stdin, up to this line, and runs it
#: with the rest of its stdin. Commands longer than :data:`_READY_SCRIPT_MAX` bytes (the shell reads byte by byte)
#: join the cgroups themselves.
_END_OF_COMMAND = f"agentenv-end-of-command-{uuid.uuid4().hex}"
_READY = (
    'for f; do echo $$ > "$f" || exit 125; done; s=; '
    f'while IFS= read -r l; do [ "$l" = {_END_OF_COMMAND} ] && break; s="$s$l\n"; done; eval "$s"'
)
_READY_SCRIPT_MAX = 16384
_ENV = "/usr/bin/env" if os.path.exists("/usr/bin/env") else "env"
_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2
_INODES_PER_MB = 256
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


def _switched_off(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("0", "false", "no", "off")


def _unescape(field: str) -> str:
    """A path from /proc/self/mountinfo, where space, tab, newline and backslash are octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _own_cgroups() -> dict[str, Path]:
    """This process's cgroup folder in each mounted hierarchy: by controller for v1, under ``""`` for v2."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    found: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, tail = line.partition(" - ")
            root, point = _unescape(fields.split()[3]), _unescape(fields.split()[4])
            kind, _, options = [*tail.split(), "", "", ""][:3]
            keys = [""] if kind == "cgroup2" else options.split(",") if kind == "cgroup" else []
            for key in keys:
                path = paths.get(key)
                if key in found or path is None or not _under(Path(path), root):
                    continue
                found[key] = Path(point, os.path.relpath(path, root))
    return found


def _read_int(path: Path, key: str | None = None) -> int:
    """The number in a cgroup file, or the one after ``key`` in a flat-keyed file (``memory.events``)."""
    text = path.read_text()
    if key is None:
        return int(text.split()[0])
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _enable_v2_controllers(parent: Path) -> None:
    """Give the memory and pids controllers to the children of ``parent`` (a cgroup v2 folder)."""
    control = parent / "cgroup.subtree_control"
    if {"memory", "pids"} <= set(control.read_text().split()):
        return
    try:
        control.write_text("+memory +pids")
        return
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
    # "No internal processes": a cgroup that holds processes cannot give controllers to its children.
    if (parent / "cgroup.procs").read_text().split() != [str(os.getpid())]:
        raise OSError(errno.EBUSY, f"{parent} holds other processes, so its children cannot have memory/pids limits")
    host = parent / _CGROUP_HOST
    host.mkdir(exist_ok=True)
    (host / "cgroup.procs").write_text(str(os.getpid()))
    control.write_text("+memory +pids")


def _stale_cgroups(parents: Sequence[Path]) -> list[Leftover]:
    """The sandbox cgroups under ``parents`` whose owning process is dead (see :func:`reclaim_leftovers`; cgroups
    named by older versions, ``<pid>-<n>``, when no process has that pid)."""
    found = []
    for parent in parents:
        for folder in parent.glob(f"{_CGROUP_PREFIX}*"):
            name = folder.name[len(_CGROUP_PREFIX) :]
            pid = _owner_dead(name)
            legacy = _LEGACY_CGROUP.match(name)
            if pid is None and legacy is not None and not os.path.exists(f"/proc/{legacy.group(1)}"):
                pid = int(legacy.group(1))
            if pid is not None and folder.is_dir():
                found.append(Leftover("cgroup", folder, pid))
    return found


def _remove_cgroup(folder: Path) -> None:
    """Kill what is left in a dead owner's cgroup, then remove it (retrying while the processes exit)."""
    with contextlib.suppress(OSError):
        (folder / "cgroup.kill").write_text("1")
    with contextlib.suppress(OSError, ValueError):
        for pid in (folder / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
    for _ in range(200):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


@lru_cache(maxsize=1)
def _cgroup_parents() -> tuple[str, tuple[Path, ...]]:
    """The cgroup version and the folders under which sandboxes get their cgroups: (memory, pids) for v1, one for v2.

    Raises ``OSError`` saying why there is none.
    """
    own = _own_cgroups()
    problem = "no cgroup hierarchy with the memory and pids controllers is mounted"
    if "" in own:
        unified = own[""]
        if unified.name == _CGROUP_HOST:  # moved there by an earlier call (or a parent process)
            unified = unified.parent
        try:
            if {"memory", "pids"} <= set((unified / "cgroup.controllers").read_text().split()):
                _enable_v2_controllers(unified)
                for stale in _stale_cgroups([unified]):
                    _remove_cgroup(stale.path)
                return "v2", (unified,)
        except OSError as e:
            problem = f"cgroup v2: {e}"
    if "memory" in own and "pids" in own:
        for stale in _stale_cgroups([own["memory"], own["pids"]]):
            _remove_cgroup(stale.path)
        return "v1", (own["memory"], own["pids"])
    raise OSError(errno.ENOENT, problem)


class _Cgroups:
    """One sandbox's cgroup (v2) or cgroups (v1: one in the memory hierarchy, one in the pids hierarchy)."""

    def __init__(self, limits: Limits):
        self.version, parents = _cgroup_parents()
        name = f"{_CGROUP_PREFIX}{_owner_mark()}-{next(_CGROUP_NAMES)}"
        self.folders = [parent / name for parent in parents]
        self.memory, self.pids = self.folders[0], self.folders[-1]
        memory, made = str(limits.memory_mb * 2**20), []
        try:
            for folder in self.folders:
                folder.mkdir()
                made.append(folder)
            if self.version == "v2":
                self._write("memory.max", memory)
                self._write("memory.swap.max", "0", optional=True)
            else:
                self._write("memory.limit_in_bytes", memory)
                self._write("memory.memsw.limit_in_bytes", memory, optional=True)  # absent without swap accounting
                self._write("memory.swappiness", "0", optional=True)
            (self.pids / "pids.max").write_text(str(limits.processes))
        except BaseException:
            self.folders = made
            self.remove()
            raise

    def _write(self, name: str, value: str, *, optional: bool = False) -> None:
        try:
            (self.memory / name).write_text(value)
        except OSError:
            if not optional:
                raise

    def join(self, argv: list[str]) -> list[str]:
        """``argv`` started by a shell that first puts itself in the sandbox's cgroups (so all it starts is in)."""
        return ["/bin/sh", "-c", _JOIN_CGROUPS, "sh", *(str(f / "cgroup.procs") for f in self.folders), "--", *argv]

    def ready(self) -> list[str]:
        """A shell that joins the sandbox's cgroups, then runs the command it reads from its stdin (:data:`_READY`)."""
        return ["/bin/sh", "-c", _READY, "sh", *(str(f / "cgroup.procs") for f in self.folders)]

    def oom_kills(self) -> int:
        """How many of the sandbox's processes the kernel killed for want of memory so far (0 if it cannot tell)."""
        name, key = ("memory.events", "oom_kill") if self.version == "v2" else ("memory.oom_control", "oom_kill")
        with contextlib.suppress(OSError, ValueError):
            return _read_int(self.memory / name, key)
        return 0

    def usage(self) -> dict[str, int]:
        names = {"memory_bytes": "memory.current", "memory_peak_bytes": "memory.peak"}
        if self.version == "v1":
            names = {"memory_bytes": "memory.usage_in_bytes", "memory_peak_bytes": "memory.max_usage_in_bytes"}
        found = {key: self.memory / name for key, name in names.items()}
        found |= {"processes": self.pids / "pids.current", "processes_peak": self.pids / "pids.peak"}
        usage = {}
        for key, path in found.items():
            with contextlib.suppress(OSError, ValueError):
                usage[key] = _read_int(path)
        return usage

    def _pids(self) -> set[int]:
        pids: set[int] = set()
        for folder in self.folders:
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
        return pids

    def remove(self) -> None:
        """Kill every process left in the cgroups and remove them (retrying while the processes exit)."""
        deadline = time.monotonic() + 5
        while self.folders:
            if self.version == "v2" and (self.pids / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (self.pids / "cgroup.kill").write_text("1")
            for pid in self._pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for folder in list(self.folders):
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    continue
                self.folders.remove(folder)
            if not self.folders or time.monotonic() > deadline:
                return
            time.sleep(0.01)


@lru_cache(maxsize=1)
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _mount_quota(folder: Path, disk_mb: int) -> None:
    """Mount a tmpfs of ``disk_mb`` on ``folder`` (raises ``OSError``, e.g. without the right to mount)."""
    options = f"size={disk_mb}m,nr_inodes={disk_mb * _INODES_PER_MB},mode=0700".encode()
    target = os.fsencode(folder)
    if _libc().mount(b"tmpfs", target, b"tmpfs", _MS_NOSUID | _MS_NODEV, options) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot mount a tmpfs on {folder}: {os.strerror(code)}")


def _unmount(folder: Path) -> None:
    """Detach the file system mounted on ``folder`` (lazily: it goes once nothing uses it)."""
    _libc().umount2(os.fsencode(folder), _MNT_DETACH)


@lru_cache(maxsize=1)
def _cgroup_problem() -> str | None:
    """Why sandboxes cannot have cgroups here (switch aside), found by making and removing one; ``None`` if they can."""
    try:
        _Cgroups(Limits()).remove()
    except OSError as e:
        return f"no usable cgroups ({e})"
    return None


@lru_cache(maxsize=1)
def _disk_quota_problem() -> str | None:
    """Why sandboxes cannot have a tmpfs quota here (switch aside), found by mounting one; ``None`` if they can."""
    if not sys.platform.startswith("linux"):
        return "no tmpfs quota off Linux"
    if os.geteuid() != 0:
        return "no tmpfs quota without root"
    probe = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}probe-{_owner_mark()}-"))
    try:
        _mount_quota(probe, 1)
        _unmount(probe)
    except OSError as e:
        return f"no tmpfs quota ({e})"
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()
    return None


def _cgroups_off() -> str | None:
    if _switched_off(CGROUPS_SWITCH):
        return f"cgroups switched off ({CGROUPS_SWITCH}=0)"
    if not sys.platform.startswith("linux"):
        return "no cgroups off Linux"
    return _cgroup_problem()


def _disk_quota_off() -> str | None:
    if _switched_off(DISK_QUOTA_SWITCH):
        return f"disk quota switched off ({DISK_QUOTA_SWITCH}=0)"
    return _disk_quota_problem()


def limit_support() -> dict[str, str]:
    """How ``memory_mb``, ``processes`` and ``disk_mb`` hold for a bubblewrap sandbox opened now, e.g.
    ``{"memory_mb": "cgroup v1: whole sandbox", ...}``; a fallback starts with ``rlimit`` or ``file_size_mb`` and
    says why (see the module docstring). ``Sandbox.limit_mode`` says the same for one open sandbox."""
    cgroups, disk = _cgroups_off(), _disk_quota_off()
    return _limit_mode(None if cgroups else _cgroup_parents()[0], cgroups, disk, backend="bubblewrap")


def _limit_mode(version: str | None, cgroups: str | None, disk: str | None, *, backend: str) -> dict[str, str]:
    if version is not None:
        mode = {"memory_mb": f"cgroup {version}: whole sandbox", "processes": f"cgroup {version}: whole sandbox"}
    else:
        unbounded = backend == "local" and os.geteuid() == 0  # RLIMIT_NPROC would count all of root's processes
        processes = "not bounded" if unbounded else "rlimit: processes of the sandbox's uid"
        mode = {"memory_mb": f"rlimit: each process: {cgroups}", "processes": f"{processes}: {cgroups}"}
    mode["disk_mb"] = f"file_size_mb: each file: {disk}" if disk else "tmpfs: workdir and /tmp together"
    return mode


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


@lru_cache(maxsize=1)
def _shell() -> tuple[str, str]:
    return ("/bin/bash", "-c") if os.path.exists("/bin/bash") else ("/bin/sh", "-c")


def _argv_bytes(argv: Sequence[str]) -> int:
    return sum(len(arg.encode("utf-8", "surrogateescape")) + 1 for arg in argv)


def _script(argv: Sequence[str], shell: str) -> bytes:
    """A script for ``shell`` that does what ``argv`` does: the command of ``[shell, "-c", command]`` itself."""
    text = argv[2] if len(argv) == 3 and argv[:2] == [shell, "-c"] else f"exec {shlex.join(argv)}"
    return text.encode("utf-8", "surrogateescape") + b"\n"


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

    def __init__(self, workdir: Path, *, limits: Limits, root: str, folder: Path, no_disk_quota: str | None):
        super().__init__(workdir, limits=limits, root=root, folder=folder)
        self.tmp = folder / "tmp"  # the commands' /tmp and HOME, kept between commands
        self.tmp.mkdir()
        no_cgroups = _cgroups_off()
        if no_cgroups is None:
            try:
                self._resources.cgroups = _Cgroups(limits)
            except OSError as e:
                no_cgroups = f"no usable cgroups ({e})"
        version = self._resources.cgroups.version if self._resources.cgroups is not None else None
        self.limit_mode = _limit_mode(version, no_cgroups, no_disk_quota, backend=self.backend)

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
        sandbox_cwd = self._cwd(cwd)
        if _argv_bytes(argv) <= INLINE_COMMAND_MAX:
            return self._run_argv(argv, shown, timeout=timeout, cwd=sandbox_cwd, env=env, stdin=stdin)
        name = f".agentenv-command-{uuid.uuid4().hex}"
        script = self.tmp / name
        try:
            fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with open(fd, "wb") as f:
                f.write(_script(argv, _shell()[0]))
        except OSError as e:  # the sandbox's disk is full, or its /tmp is gone
            with contextlib.suppress(OSError):
                script.unlink()
            problem = f"the command ({_argv_bytes(argv)} bytes) could not be passed to the sandbox: {e.strerror or e}"
            return ExecResult(shown, 126, "", problem + "\n", False, 0.0)
        try:
            inside = posixpath.join(self._tmp_inside, name)
            return self._run_argv([_shell()[0], inside], shown, timeout=timeout, cwd=sandbox_cwd, env=env, stdin=stdin)
        finally:
            with contextlib.suppress(OSError):
                script.unlink()

    @property
    def _tmp_inside(self) -> str:
        """The sandbox's ``/tmp`` as its commands see it."""
        return "/tmp"

    def _run_argv(
        self, argv: list[str], shown: str, *, timeout: float, cwd: str, env: dict[str, str], stdin: str | None
    ) -> ExecResult:
        popen_argv, popen_env, popen_cwd = self._popen(argv, cwd, env)
        cgroups = self._resources.cgroups
        oom_kills = cgroups.oom_kills() if cgroups is not None else 0
        start = time.monotonic()
        data = stdin.encode("utf-8") if stdin is not None else None
        process, data = self._start(popen_argv, popen_env, popen_cwd, data)
        try:
            out, err, timed_out = self._communicate(process, data, start + timeout)
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
            if cgroups is not None and cgroups.oom_kills() > oom_kills:
                killed = _OOM_REASON
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

    def _start(
        self, argv: list[str], env: dict[str, str], cwd: str | None, stdin: bytes | None
    ) -> tuple[subprocess.Popen, bytes | None]:
        """The command's process (tracked for close) and the bytes to write to its stdin.

        With cgroups, the ready shell (already in them) runs the command it reads first from its stdin; without one
        (another thread took it, it died, the command is too long) a new process joins the cgroups, then runs it.
        """
        cgroups = self._resources.cgroups
        if cgroups is not None:
            with self._resources.lock:
                ready, self._resources.ready = self._resources.ready, None
            script = self._ready_script(argv, env, cwd)
            if ready is not None and ready.poll() is None and len(script) <= _READY_SCRIPT_MAX:
                with self._resources.lock:
                    self._resources.processes.add(ready)
                self._make_ready()  # for the next command: it joins the cgroups while this one runs
                return ready, script + (stdin or b"")
            if ready is not None:
                _discard(ready)
            self._make_ready()
            argv = cgroups.join(argv)
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: the timeout kills the group
        )
        with self._resources.lock:
            self._resources.processes.add(process)
        return process, stdin

    def _ready_env(self) -> dict[str, str]:
        return self._popen([], self.root, {})[1]

    def _make_ready(self) -> None:
        """Start the shell that will run the next command, already in the sandbox's cgroups (see :data:`_READY`)."""
        cgroups = self._resources.cgroups
        if cgroups is None:
            return
        pipe = subprocess.PIPE
        try:
            process: subprocess.Popen | None = subprocess.Popen(
                cgroups.ready(), stdin=pipe, stdout=pipe, stderr=pipe, env=self._ready_env(), start_new_session=True
            )
        except OSError:  # e.g. no process left to the host: the next command joins the cgroups itself
            return
        with self._resources.lock:
            if not self._resources.released and self._resources.ready is None:
                self._resources.ready, process = process, None
        if process is not None:  # closed meanwhile, or another thread made one
            _discard(process)

    def _ready_script(self, argv: list[str], env: dict[str, str], cwd: str | None) -> bytes:
        """What the ready shell runs for ``argv`` (with ``env`` in ``cwd``), ended by :data:`_END_OF_COMMAND`."""
        if env != self._ready_env():
            argv = [_ENV, "-i", "--", *(f"{key}={value}" for key, value in env.items()), *argv]
        script = f"cd -- {shlex.quote(cwd)} || exit 126\n" if cwd is not None else ""
        script += f"exec {shlex.join(argv)}\n{_END_OF_COMMAND}\n"
        return os.fsencode(script)

    def _communicate(
        self, process: subprocess.Popen, stdin: bytes | None, deadline: float
    ) -> tuple[_Capture, _Capture, bool]:
        """Feed stdin and read both pipes until the command ends or the deadline passes, then kill its group.

        The group is killed before the process is reaped (its pid, hence the group id, cannot be reused by then):
        that also ends what a ``local`` command left in the background.
        """
        limit = self.limits.output_bytes
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


#: The host's system folders that every bubblewrap sandbox shows, read-only (a symlink stays a symlink).
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: Subpackages of ``agentenv`` that live in folders of their own (``package-dir``); hidden like the package.
_AGENTENV_FOLDERS = ("agentenv", "agentenv.envs", "agentenv.rewards", "agentenv.policies")


def _system_folders() -> list[str]:
    """The system folders that exist here and are real folders (not symlinks)."""
    return [path for path in SYSTEM_FOLDERS if os.path.isdir(path) and not os.path.islink(path)]


@lru_cache(maxsize=1)
def _interpreter_paths() -> tuple[str, ...]:
    """The outermost of this interpreter's folders (prefixes, executable's folder; as given and resolved) that the
    system folders do not show already."""
    needed = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, Path(sys.executable).parent)}
    needed |= {p.resolve() for p in needed}
    needed = {p for p in needed if p != p.parent and not any(_under(p, s) for s in SYSTEM_FOLDERS)}
    return tuple(sorted(str(p) for p in needed if not any(q != p and q in p.parents for q in needed)))


@lru_cache(maxsize=1)
def _agentenv_paths() -> tuple[Path, ...]:
    """Where AgentEnv's own code and data live: the package folders (in the checkout of an editable install, in
    site-packages otherwise), the checkout itself, and any ``agentenv`` folder on ``sys.path``."""
    import importlib.util

    found: set[Path] = set()
    for name in _AGENTENV_FOLDERS:
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            found |= {Path(p) for p in (spec.submodule_search_locations or [])} if spec is not None else set()
    for entry in sys.path:
        if entry and os.path.isdir(os.path.join(entry, "agentenv")):
            found.add(Path(entry, "agentenv"))
    found |= {p.resolve() for p in found}
    found |= {p.parent for p in found if (p.parent / "pyproject.toml").exists()}  # an editable install's checkout
    return tuple(sorted(found))


def _show(path: str, made: set[str]) -> list[str]:
    """bwrap options that show the host folder ``path`` read-only at the same place; the folders above it are made
    empty and world-readable (bwrap would make them private)."""
    options: list[str] = []
    for folder in map(str, reversed(Path(path).parents)):
        if folder not in made:
            made.add(folder)
            options += ["--perms", "0755", "--dir", folder]
    return [*options, "--ro-bind", path, path]


def _view_options(hidden: Sequence[Path]) -> list[str]:
    """bwrap options for the read-only part of the view (module docstring), after ``/tmp`` is mounted: the
    interpreter's folders, and an empty read-only tmpfs on each ``hidden`` folder that they or the system folders
    would show (the interpreter's folders inside one are shown again)."""
    shown = list(_interpreter_paths())
    made = {"/", "/tmp"}
    options = [option for path in shown for option in _show(path, made)]
    mounted = [*_system_folders(), *shown]
    done: list[Path] = []
    for folder in sorted(set(hidden)):
        if (
            not any(_under(folder, m) for m in mounted)
            or any(_under(folder, str(d)) for d in done)
            or any(_under(Path(m), str(folder)) for m in _system_folders())
            or str(folder) in shown
        ):
            continue
        done.append(folder)
        options += ["--perms", "0755", "--tmpfs", str(folder)]
        made |= {str(folder)}
        for path in shown:
            if _under(Path(path), str(folder)):
                options += _show(path, made)
        options += ["--remount-ro", str(folder)]
    return options


def _check_bwrap_root(root: str) -> None:
    """``root`` must be a folder bwrap can mount on: outside the read-only folders of the view, or existing there."""
    if not root.startswith("/") or posixpath.normpath(root) != root or root == "/":
        raise ConfigError(f"root={root!r} must be a normalised absolute path other than '/' (e.g. '/workspace')")
    top = "/" + root.split("/")[1]
    if top in ("/proc", "/dev", "/run"):
        raise ConfigError(f"root={root!r} cannot be under {top}")
    for needed in (sys.prefix, sys.base_prefix):
        if _under(Path(needed).resolve(), root) or _under(Path(needed), root):
            raise ConfigError(f"root={root!r} would hide this Python ({needed}) from the commands; choose another")
    inside = next((m for m in (*SYSTEM_FOLDERS, *_interpreter_paths()) if _under(Path(root), m)), None)
    if inside is None or os.path.isdir(root):
        return
    raise ConfigError(
        f"root={root!r} cannot be mounted: {inside} is read-only in the sandbox and {root} does not exist there; "
        "choose a new top-level folder such as '/workspace', or a path under /tmp"
    )


#: The PID 1 of a bubblewrap command: it starts the command (its own messages silenced), reaps orphans while it
#: waits, and exits with the command's status (128 + signal if killed). It keeps bwrap's uid (the command drops
#: to the sandbox's), so that it dies with bwrap (a change of uid clears the parent-death signal). bwrap's own
#: PID 1 would be left a zombie for the host's init to reap, counting in the sandbox's pids cgroup until then.
_INIT = 'exec 3>&2 2>/dev/null; (exec "$@" 2>&3 3>&-); exit $?'


class BubblewrapSandbox(_ProcessSandbox):
    """Each command in fresh namespaces made by ``bwrap`` (see the module docstring for what is isolated)."""

    backend = "bubblewrap"

    def __init__(
        self,
        workdir: Path,
        *,
        limits: Limits,
        root: str,
        folder: Path,
        network: bool = False,
        no_disk_quota: str | None = None,
    ):
        _check_bwrap_root(root)
        super().__init__(workdir, limits=limits, root=root, folder=folder, no_disk_quota=no_disk_quota)
        self.network = network
        self.as_root = os.geteuid() == 0
        if self.as_root:
            self.uid, self._resources.uid_slot = _claim_uid()
            _chown_tree(workdir, self.uid)
            os.lchown(self.tmp, self.uid, self.uid)
        self._base_options = self._options()
        self._make_ready()

    def _options(self) -> list[str]:
        options = ["bwrap"]
        for path in SYSTEM_FOLDERS:
            if os.path.islink(path):
                options += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                options += ["--ro-bind", path, path]
        options += ["--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--size", str(2**20), "--tmpfs", "/run"]
        shm = str(self.limits.memory_mb * 2**20)  # POSIX semaphores and shared memory (multiprocessing)
        options += ["--perms", "1777", "--size", shm, "--tmpfs", "/dev/shm"]
        options += ["--bind", str(self.tmp), "/tmp"]
        resolv = os.path.realpath("/etc/resolv.conf")
        if self.network and resolv.startswith("/run/"):
            options += ["--ro-bind-try", resolv, resolv]
        assert self.workdir is not None
        from agentenv.cache import cache_root

        base = self.workdir.parent.parent  # holds the other sandboxes' folders
        hidden = [base, cache_root(), *_agentenv_paths()]
        options += _view_options([*hidden, *(p.resolve() for p in hidden)])
        options += ["--bind", str(self.workdir), self.root, "--remount-ro", "/"]
        options += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        options += [] if self.network else ["--unshare-net"]
        options += ["--hostname", "sandbox", "--die-with-parent", "--new-session", "--as-pid-1"]
        if self.as_root:  # no user namespace: the uid must be a real host uid for RLIMIT_NPROC to apply
            options += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            options += ["--unshare-user"]
        return options

    def _popen(self, argv: list[str], cwd: str, env: dict[str, str]) -> tuple[list[str], dict[str, str], str | None]:
        command = [*self._base_options, "--chdir", cwd, "--", "/bin/sh", "-c", _INIT, "sh"]
        command += _prlimit(self.limits, processes=True)
        if self.as_root:
            uid = str(self.uid)
            command += ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "--inh-caps=-all", "--"]
        return [*command, *argv], {**_clean_env("/tmp", "/tmp"), **env}, None


def _under(path: Path, folder: str) -> bool:
    return path == Path(folder) or Path(folder) in path.parents


class LocalSandbox(_ProcessSandbox):
    """Commands as plain host processes in the workdir: limits and timeout, no isolation (debugging only).

    ``root`` is the workdir's host path. Cgroups and the disk quota apply as for bubblewrap (without cgroups,
    processes are not limited when running as root, and a process that leaves the process group (``setsid``)
    survives the timeout; with them, it dies at close).
    """

    backend = "local"

    def __init__(self, workdir: Path, *, limits: Limits, folder: Path, no_disk_quota: str | None = None):
        super().__init__(workdir, limits=limits, root=str(workdir), folder=folder, no_disk_quota=no_disk_quota)
        self._make_ready()

    def _popen(self, argv: list[str], cwd: str, env: dict[str, str]) -> tuple[list[str], dict[str, str], str | None]:
        # RLIMIT_NPROC counts all of the user's processes outside a user namespace: it would starve them.
        limited = [*_prlimit(self.limits, processes=False), *argv]
        return limited, {**_clean_env(str(self.tmp), str(self.tmp)), **env}, cwd

    def _cwd(self, cwd: str | None) -> str:
        return str(self._host_path(cwd)) if cwd is not None else self.root

    @property
    def _tmp_inside(self) -> str:
        return str(self.tmp)


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
        self.limit_mode = {"memory_mb": "cgroup (docker): whole sandbox", "processes": "cgroup (docker): whole sandbox"}
        self.limit_mode["disk_mb"] = "file_size_mb: each file: no disk quota in the docker backend"
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
        if _argv_bytes(argv) > INLINE_COMMAND_MAX:  # beyond what exec takes as arguments: a script file instead
            name = f".agentenv-command-{uuid.uuid4().hex}"
            self._client.api.put_archive(self.container_id, "/tmp", _tar_file(name, _script(argv, self._shell[0])))
            argv = [self._shell[0], f"/tmp/{name}"]
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

    def read_bytes(self, path: str, *, max_bytes: int = READ_LIMIT) -> bytes:
        from docker.errors import NotFound

        resolved = self._resolve(path)
        try:
            stream, info = self._client.api.get_archive(self.container_id, resolved)
        except NotFound:
            raise FileNotFoundError(f"{path}: no such file") from None
        if info.get("mode", 0) & (1 << 31):  # Go's os.ModeDir
            raise IsADirectoryError(f"{path} is a directory")
        if info.get("size", 0) > max_bytes:
            raise FileTooLargeError(f"{path!r} has more than max_bytes={max_bytes} bytes")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            extracted = tar.extractfile(member) if member is not None and member.isreg() else None
            if extracted is None:
                raise SandboxError(f"{path!r} is not a regular file")
            data = extracted.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise FileTooLargeError(f"{path!r} has more than max_bytes={max_bytes} bytes")
            return data

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
    base = _base_dir(kwargs.get("base_dir", base))
    _reclaim_now_and_then(base)
    folder = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{_owner_mark()}-", dir=base))
    workdir = folder / "work"
    try:
        no_disk_quota = _disk_quota_off()
        if no_disk_quota is None:
            try:
                _mount_quota(folder, limits.disk_mb)
            except OSError as e:
                no_disk_quota = f"no tmpfs quota ({e})"
        try:
            if isinstance(source, WorkdirPool) and no_disk_quota is None:
                _copy_tree(source.source, workdir)  # into the tmpfs: moving a prepared copy would copy it as well
            elif isinstance(source, WorkdirPool):
                shutil.move(source.take(), workdir)
            elif source is not None:
                _copy_tree(source, workdir)
            else:
                workdir.mkdir()
        except OSError as e:
            if no_disk_quota is None and (e.errno == errno.ENOSPC or f"[Errno {errno.ENOSPC}]" in str(e)):
                raise ConfigError(f"the source does not fit in the sandbox's disk_mb={limits.disk_mb}") from e
            raise
        if backend == "local":
            sandbox: Sandbox = LocalSandbox(workdir, limits=limits, folder=folder, no_disk_quota=no_disk_quota)
        else:
            sandbox = BubblewrapSandbox(
                workdir, limits=limits, root=root, folder=folder, network=network, no_disk_quota=no_disk_quota
            )
    except BaseException:
        _remove_tree(folder)
        raise
    _warn_fallbacks(sandbox.limit_mode)
    return sandbox


def _warn_fallbacks(mode: Mapping[str, str]) -> None:
    """Say once per process which limits do not hold per sandbox here (the module docstring says why)."""
    if not mode["memory_mb"].startswith("cgroup"):
        why = mode["memory_mb"].split(": ", 2)[-1]
        _warn_once("cgroups", f"sandboxes run without cgroups here ({why}): memory_mb bounds each process, not "
                   "their sum, and processes only the processes of the sandbox's uid")  # fmt: skip
    if not mode["disk_mb"].startswith("tmpfs"):
        why = mode["disk_mb"].split(": ", 2)[-1]
        _warn_once("disk", f"sandboxes run without a disk quota here ({why}): disk_mb is not enforced, the workdir "
                   "and /tmp are on the host's disk with each file bounded by file_size_mb")  # fmt: skip
