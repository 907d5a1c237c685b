"""The local cache: where AgentEnv keeps what it builds once and reuses (games, converted models, indexes).

``$AGENTENV_CACHE`` moves it (default: ``$XDG_CACHE_HOME/agentenv`` or ``~/.cache/agentenv``). Entries are folders
built by :func:`build_once`, safe under concurrent processes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    """``$AGENTENV_CACHE``, else ``$XDG_CACHE_HOME/agentenv`` or ``~/.cache/agentenv``."""
    explicit = os.environ.get("AGENTENV_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "agentenv"


def build_once(folder: Path, build: Callable[[Path], None], *, marker: str = "agentenv.json") -> Path:
    """``folder``, built by ``build(staging)`` unless it holds ``marker`` already.

    One process builds while the others wait on a file lock; the build goes to a staging folder beside ``folder``
    that is renamed into place, so a reader never sees half an entry. ``build`` must write ``marker``.
    """
    if (folder / marker).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / marker).exists():  # built by another process while this one waited
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            build(staging)
            if not (staging / marker).exists():
                raise RuntimeError(f"building {folder.name} wrote no {marker}")
            staging.chmod(0o755)  # mkdtemp makes it private; the entry is for every reader of the cache
            if folder.exists():  # a partial folder left by a crashed build: replace it
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder
