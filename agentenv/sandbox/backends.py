"""Choosing a backend and opening a sandbox: :func:`open_sandbox`, :func:`available_backends`, :func:`limit_support`."""

from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError, check_choice
from agentenv.sandbox.base import Sandbox
from agentenv.sandbox.bubblewrap import BubblewrapSandbox, _bubblewrap_problem, _check_bwrap_root
from agentenv.sandbox.cgroups import _cgroup_parents, _cgroups_off
from agentenv.sandbox.docker import DockerSandbox, _docker_problem
from agentenv.sandbox.limits import Limits, _limit_mode, _warn_fallbacks
from agentenv.sandbox.local import LocalSandbox
from agentenv.sandbox.owners import _FOLDER_PREFIX, _owner_mark
from agentenv.sandbox.workdirs import (
    WorkdirPool,
    _base_dir,
    _check_source,
    _disk_quota_off,
    _prepare_workdir,
    _reclaim_now_and_then,
    _remove_tree,
)

BACKENDS = ("bubblewrap", "docker", "local")


def available_backends() -> dict[str, str | None]:
    """Each backend mapped to ``None`` when it can run here, else the reason it cannot."""
    return {
        "bubblewrap": _bubblewrap_problem(),
        "docker": _docker_problem(),
        "local": None if sys.platform != "win32" and shutil.which("prlimit") else "prlimit not found (util-linux)",
    }


def limit_support() -> dict[str, str]:
    """How ``memory_mb``, ``processes`` and ``disk_mb`` hold for a bubblewrap sandbox opened now, e.g.
    ``{"memory_mb": "cgroup v1: whole sandbox", ...}``; a fallback starts with ``rlimit`` or ``file_size_mb`` and
    says why (see the package docstring). ``Sandbox.limit_mode`` says the same for one open sandbox."""
    cgroups, disk = _cgroups_off(), _disk_quota_off()
    return _limit_mode(None if cgroups else _cgroup_parents()[0], cgroups, disk, backend="bubblewrap")


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
        no_disk_quota = _prepare_workdir(folder, workdir, source, limits)
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
