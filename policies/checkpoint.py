"""Checkpoint folders that a kill at any instant leaves resumable: written beside, marked complete, renamed in.

A folder for ``path`` is written into ``<path>.tmp``; its files are fsynced, then the marker :data:`COMPLETE` (a
sequence number, one more than the folder it replaces) is written last. The old folder is renamed to ``<path>.old``,
the new one to ``path``, and only then is the old one deleted (its marker first, so a half-deleted folder never looks
complete). Whatever a kill leaves — ``path``, ``.tmp``, ``.old``, each complete or not — :func:`recover` moves the
newest complete folder to ``path`` and deletes the rest.

:func:`crash_point` marks each step of the swap; ``$AGENTENV_CRASH_AT`` makes the process SIGKILL itself at one of
them, so that tests can kill a run at every step instead of at random times.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The file written last into a checkpoint folder: it is complete when this file is there.
COMPLETE = "checkpoint.complete"
#: ``NAME:N`` kills this process the N-th time it reaches crash point NAME; ``N`` at the N-th point of any name.
CRASH_AT = "AGENTENV_CRASH_AT"
#: A file that every crash point reached is appended to (one name a line): how tests find the points a run passes.
CRASH_LOG = "AGENTENV_CRASH_LOG"

_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """SIGKILL this process here if ``$AGENTENV_CRASH_AT`` says so (a no-op otherwise): a test hook for kill safety."""
    target = os.environ.get(CRASH_AT)
    log = os.environ.get(CRASH_LOG)
    if not target and not log:
        return
    _reached[name] += 1
    _reached["*"] += 1
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    if target:
        point, _, count = target.rpartition(":")
        if _reached[point or "*"] == int(count) and point in ("", name):
            os.kill(os.getpid(), signal.SIGKILL)


def siblings(path: Path) -> tuple[Path, Path]:
    """``(<path>.tmp, <path>.old)``: where a new folder is written, where the one it replaces waits to be deleted."""
    return path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")


def sequence(folder: Path, *, legacy: bool = False) -> int | None:
    """The sequence number of a complete checkpoint folder, None if it is incomplete (or absent). With ``legacy``, a
    folder written before markers existed (it has a ``trainer.json``) counts as complete, older than any marked one."""
    try:
        return int(json.loads((folder / COMPLETE).read_text())["sequence"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1 if legacy and (folder / "trainer.json").is_file() else None


def is_complete(path: str | Path) -> bool:
    return sequence(Path(path), legacy=True) is not None


def recover(path: str | Path) -> Path | None:
    """``path`` holding the newest complete folder that a kill left at ``path``, ``<path>.tmp`` or ``<path>.old``;
    the others are deleted. None when none is complete (everything is deleted). Safe to kill at any step, and a
    no-op on a tidy folder."""
    path = Path(path)
    candidates = [folder for folder in (path, *siblings(path)) if folder.exists()]
    ranked = [(s, folder == path, folder) for folder in candidates
              if (s := sequence(folder, legacy=folder == path)) is not None]  # fmt: skip
    best = max(ranked, key=lambda r: r[:2])[2] if ranked else None
    if best is not None and best != path:
        if path.exists():
            remove(path, "recover.clearing")
        best.rename(path)
        fsync_dir(path.parent)
        crash_point("recover.renamed")
    for folder in candidates:
        if folder != path or best is None:
            remove(folder, "recover.deleting")
    return path if best is not None else None


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Write a folder's files into the yielded folder (``<path>.tmp``); when the block succeeds, mark it complete and
    swap it in for ``path`` (see the module docstring). A failing block leaves the previous folder in place."""
    path = Path(path)
    previous = recover(path)
    last = sequence(previous, legacy=True) if previous is not None else None
    number = 0 if last is None else last + 1
    tmp, old = siblings(path)
    tmp.mkdir(parents=True)
    crash_point("checkpoint.started")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    crash_point("checkpoint.written")
    for file in sorted(tmp.rglob("*")):
        if file.is_file():
            fsync_file(file)
    (tmp / COMPLETE).write_text(json.dumps({"sequence": number}))
    fsync_file(tmp / COMPLETE)
    fsync_dir(tmp)
    crash_point("checkpoint.marked")
    if path.exists():
        path.rename(old)
        crash_point("checkpoint.moved-old")
    tmp.rename(path)
    fsync_dir(path.parent)
    crash_point("checkpoint.swapped")
    remove(old, "checkpoint.deleting-old")
    crash_point("checkpoint.done")


def remove(folder: Path, point: str) -> None:
    """Delete a checkpoint folder, its marker first (a kill half-way leaves an incomplete folder, never a complete
    one that lacks files)."""
    if not folder.exists():
        return
    (folder / COMPLETE).unlink(missing_ok=True)
    fsync_dir(folder)
    crash_point(point)
    shutil.rmtree(folder)


def fsync_file(file: Path) -> None:
    fd = os.open(file, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make renames and new names in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
