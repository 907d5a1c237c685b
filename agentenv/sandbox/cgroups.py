"""Per-sandbox memory and process limits through cgroups (v2, or the v1 ``memory`` and ``pids`` hierarchies).

One cgroup per sandbox, a child of this process's own, made at open and removed at close (:class:`_Cgroups`); on v2
this process moves itself into a child ``agentenv-host`` when it is alone in its cgroup; a shell joins them ahead of
time (:data:`_READY`); the cgroups of dead owners are found (:func:`_stale_cgroups`) and removed.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from agentenv.sandbox.limits import CGROUPS_SWITCH, Limits, _switched_off
from agentenv.sandbox.owners import Leftover, _owner_dead, _owner_mark

_CGROUP_PREFIX = "agentenv-sandbox-"

_CGROUP_HOST = "agentenv-host"  # where this process moves itself on cgroup v2 (see this module's docstring)

_CGROUP_NAMES = itertools.count()

_LEGACY_CGROUP = re.compile(r"(\d+)-\d+$")

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


def _under(path: Path, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or inside it (by path components, no file system access)."""
    return path == Path(folder) or Path(folder) in path.parents


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
def _cgroup_problem() -> str | None:
    """Why sandboxes cannot have cgroups here (switch aside), found by making and removing one; ``None`` if they can."""
    try:
        _Cgroups(Limits()).remove()
    except OSError as e:
        return f"no usable cgroups ({e})"
    return None


def _cgroups_off() -> str | None:
    if _switched_off(CGROUPS_SWITCH):
        return f"cgroups switched off ({CGROUPS_SWITCH}=0)"
    if not sys.platform.startswith("linux"):
        return "no cgroups off Linux"
    return _cgroup_problem()
