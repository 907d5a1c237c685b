"""Owner marks: the folders and cgroups a sandbox makes carry their owner's boot, PID namespace, pid and start time in
their names, so that a later process can tell when their owner is dead and reclaim them
(:func:`agentenv.sandbox.workdirs.reclaim_leftovers`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_FOLDER_PREFIX = "agentenv-sandbox-"

_OWNED = re.compile(r"(?:pool-|probe-)?([0-9a-f]{8})\.(\d+)\.(\d+)\.(\d+)-")


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
