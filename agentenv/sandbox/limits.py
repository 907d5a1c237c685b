"""What a sandbox may use (:class:`Limits`) and how each limit holds here.

Per process through rlimits that ``prlimit`` sets right before the command (:func:`_prlimit`); per sandbox through
cgroups (:mod:`agentenv.sandbox.cgroups`) and a tmpfs quota (:mod:`agentenv.sandbox.workdirs`), each with a switch
that turns it off. :func:`_limit_mode` says which holds for one sandbox, :func:`_warn_fallbacks` warns once per process
about the limits that fall back to per-process rlimits.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from agentenv.errors import check_range


@dataclass(frozen=True)
class Limits:
    """Resource limits of a sandbox (validated; errors name the field); the package docstring says how each holds.

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


#: Set to ``0`` to keep sandboxes out of cgroups (memory and processes then bounded per process only).
CGROUPS_SWITCH = "AGENTENV_SANDBOX_CGROUPS"

#: Set to ``0`` to keep the workdir on the host's disk (disk space then bounded per file only).
DISK_QUOTA_SWITCH = "AGENTENV_SANDBOX_DISK_QUOTA"

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


def _switched_off(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("0", "false", "no", "off")


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


def _limit_mode(version: str | None, cgroups: str | None, disk: str | None, *, backend: str) -> dict[str, str]:
    if version is not None:
        mode = {"memory_mb": f"cgroup {version}: whole sandbox", "processes": f"cgroup {version}: whole sandbox"}
    else:
        unbounded = backend == "local" and os.geteuid() == 0  # RLIMIT_NPROC would count all of root's processes
        processes = "not bounded" if unbounded else "rlimit: processes of the sandbox's uid"
        mode = {"memory_mb": f"rlimit: each process: {cgroups}", "processes": f"{processes}: {cgroups}"}
    mode["disk_mb"] = f"file_size_mb: each file: {disk}" if disk else "tmpfs: workdir and /tmp together"
    return mode


def _warn_fallbacks(mode: Mapping[str, str]) -> None:
    """Say once per process which limits do not hold per sandbox here (the package docstring says why)."""
    if not mode["memory_mb"].startswith("cgroup"):
        why = mode["memory_mb"].split(": ", 2)[-1]
        _warn_once("cgroups", f"sandboxes run without cgroups here ({why}): memory_mb bounds each process, not "
                   "their sum, and processes only the processes of the sandbox's uid")  # fmt: skip
    if not mode["disk_mb"].startswith("tmpfs"):
        why = mode["disk_mb"].split(": ", 2)[-1]
        _warn_once("disk", f"sandboxes run without a disk quota here ({why}): disk_mb is not enforced, the workdir "
                   "and /tmp are on the host's disk with each file bounded by file_size_mb")  # fmt: skip
