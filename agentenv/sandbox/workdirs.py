"""The sandbox's folder on the host: its tmpfs disk quota, the copy of the source in it (or a prepared copy from a
:class:`WorkdirPool`), its removal, and reclaiming what the sandboxes of dead processes left
(:func:`reclaim_leftovers`)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError, check_range
from agentenv.sandbox.cgroups import _cgroup_parents, _cgroups_off, _remove_cgroup, _stale_cgroups
from agentenv.sandbox.errors import SandboxError
from agentenv.sandbox.limits import DISK_QUOTA_SWITCH, Limits, _switched_off, _warn_once
from agentenv.sandbox.owners import _FOLDER_PREFIX, Leftover, _owner_dead, _owner_mark

#: How often (seconds) opening a sandbox also looks for leftovers of dead processes in its base folder.
RECLAIM_EVERY = 60.0

_last_reclaim: dict[str, float] = {}

_reclaim_lock = threading.Lock()

_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2

_INODES_PER_MB = 256


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


def _disk_quota_off() -> str | None:
    if _switched_off(DISK_QUOTA_SWITCH):
        return f"disk quota switched off ({DISK_QUOTA_SWITCH}=0)"
    return _disk_quota_problem()


def _prepare_workdir(folder: Path, workdir: Path, source: Path | WorkdirPool | None, limits: Limits) -> str | None:
    """Mount a tmpfs of ``disk_mb`` on the sandbox's ``folder`` where one can be, then fill ``workdir`` in it: a copy
    of ``source``, a prepared copy from a pool, or nothing. Returns why there is no quota (``None``: there is one)."""
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
    return no_disk_quota


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
