"""The ``local`` backend: plain host processes in the workdir, with the limits and the timeout but no isolation
(for debugging; opening one warns)."""

from __future__ import annotations

from pathlib import Path

from agentenv.sandbox.host import _clean_env, _ProcessSandbox
from agentenv.sandbox.limits import Limits, _prlimit


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
