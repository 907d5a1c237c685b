"""The default backend: each command in fresh namespaces made by ``bwrap`` that show a minimal view of the host
(the package docstring says what it holds); as root, each sandbox's commands drop to a uid of their own."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from agentenv.errors import ConfigError
from agentenv.sandbox.cgroups import _under
from agentenv.sandbox.errors import SandboxError
from agentenv.sandbox.host import _clean_env, _ProcessSandbox
from agentenv.sandbox.limits import Limits, _prlimit

#: Sandboxed commands run as uid ``SANDBOX_UID_BASE + slot`` when AgentEnv runs as root (one slot per live sandbox,
#: claimed through an abstract Unix socket, so it is freed when the process dies). The range holds no real users.
SANDBOX_UID_BASE = 1_900_000_000

SANDBOX_UID_SLOTS = 100_000

#: The host's system folders that every bubblewrap sandbox shows, read-only (a symlink stays a symlink).
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")

#: Subpackages of ``agentenv`` that live in folders of their own (``package-dir``); hidden like the package.
_AGENTENV_FOLDERS = ("agentenv", "agentenv.envs", "agentenv.rewards", "agentenv.policies")

#: The PID 1 of a bubblewrap command: it starts the command (its own messages silenced), reaps orphans while it
#: waits, and exits with the command's status (128 + signal if killed). It keeps bwrap's uid (the command drops
#: to the sandbox's), so that it dies with bwrap (a change of uid clears the parent-death signal). bwrap's own
#: PID 1 would be left a zombie for the host's init to reap, counting in the sandbox's pids cgroup until then.
_INIT = 'exec 3>&2 2>/dev/null; (exec "$@" 2>&3 3>&-); exit $?'


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
    """bwrap options for the read-only part of the view (package docstring), after ``/tmp`` is mounted: the
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


class BubblewrapSandbox(_ProcessSandbox):
    """Each command in fresh namespaces made by ``bwrap`` (see the package docstring for what is isolated)."""

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
