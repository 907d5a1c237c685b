"""SWE tasks: the record format (SWE-bench compatible), JSONL files, unified diffs and difficulty tiers.

A task is a pristine source tree (named by ``repo``, ``version`` and ``base_commit``), a bug (``bug_patch``, which
the env applies before the agent sees the tree), an issue text (``problem_statement``) and the tests that grade a
fix: every ``FAIL_TO_PASS`` test fails on the buggy tree and must pass after the fix; every ``PASS_TO_PASS`` test
passes on both. ``patch`` is the gold fix. The field names are SWE-bench's, so :func:`load_tasks` also reads
SWE-bench / SWE-Gym JSONL (whose test lists are JSON strings); their fields that this format lacks stay in
``extra`` and are written back by :func:`save_tasks`.

Diffs are plain unified diffs with ``a/`` and ``b/`` paths relative to the tree root. :func:`unified_diff` makes
them and :func:`apply_patch` applies them in pure Python (no ``patch`` binary), strictly: a hunk whose context
does not match raises :class:`PatchError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import shlex
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError

#: Difficulty tiers, easiest first.
DIFFICULTIES = ("easy", "medium", "hard")
#: SWE-bench Verified's annotated fix times, read as tiers.
_VERIFIED_DIFFICULTY = {
    "<15 min fix": "easy",
    "15 min - 1 hour": "medium",
    "1-4 hours": "hard",
    ">4 hours": "hard",
}
#: ``created_by`` of the tasks this package builds.
CREATED_BY = "agentenv.envs.swe.build"
#: The shipped task set (built by ``agentenv swe build-tasks``; see TASKS.md for the command).
DEFAULT_TASKS = Path(__file__).parent / "data" / "tasks.jsonl"


class TaskFormatError(ConfigError):
    """A task record or task file that does not follow the format; the message names the line and the field."""


class PatchError(ValueError):
    """A diff that does not parse or does not apply to the tree (a hunk's context differs, a file is missing)."""


@dataclass
class SWETask:
    """One repair task. Field names and meanings follow SWE-bench; the fields after ``test_patch`` are ours.

    ``test_command`` is a POSIX shell command run from the tree root (relative paths only, so the tree may be
    mounted anywhere) with ``python`` on ``PATH``; the node ids to run are appended to it (see :meth:`command`).
    ``mutation`` (operator, file, line) says where the bug was injected: metadata for analysis, never shown to
    the agent.
    """

    instance_id: str
    repo: str
    problem_statement: str
    FAIL_TO_PASS: list[str]
    patch: str
    version: str = ""
    base_commit: str = ""
    PASS_TO_PASS: list[str] = field(default_factory=list)
    test_patch: str = ""
    bug_patch: str = ""
    test_command: str = ""
    test_paths: list[str] = field(default_factory=list)
    difficulty: str = ""
    mutation: dict[str, Any] = field(default_factory=dict)
    created_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tests(self) -> list[str]:
        """The graded tests: ``FAIL_TO_PASS`` then ``PASS_TO_PASS``."""
        return [*self.FAIL_TO_PASS, *self.PASS_TO_PASS]

    def command(self, tests: Sequence[str] = (), *, junitxml: str | None = None) -> str:
        """The shell command that runs ``tests`` (pytest node ids), or the task's ``test_paths`` when empty.

        ``junitxml`` (a path relative to the tree root) adds ``--junitxml`` in the xunit1 family, whose
        ``file`` attribute lets :func:`agentenv.envs.swe.build.parse_junit` rebuild node ids.
        """
        if not self.test_command:
            raise TaskFormatError(f"task {self.instance_id}: field 'test_command' is empty; cannot run its tests")
        parts = [self.test_command]
        if junitxml:
            parts += ["-o", "junit_family=xunit1", shlex.quote(f"--junitxml={junitxml}")]
        parts += [shlex.quote(t) for t in (tests or self.test_paths)]
        return " ".join(parts)

    def to_record(self) -> dict[str, Any]:
        """The JSON record: the fields in order, then the ``extra`` fields at top level."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        record.update(self.extra)
        return record


_FIELDS = {f.name: f for f in dataclasses.fields(SWETask)}
_REQUIRED = ("instance_id", "repo", "problem_statement", "FAIL_TO_PASS", "patch")
_TEXT = ("instance_id", "repo", "problem_statement", "patch", "base_commit", "test_patch", "bug_patch")
_TEXT += ("test_command", "created_by")
_LISTS = ("FAIL_TO_PASS", "PASS_TO_PASS", "test_paths")


def task_from_record(record: Mapping[str, Any], where: str = "task") -> SWETask:
    """Validate one record (ours or SWE-bench's) into a :class:`SWETask`; errors start with ``where``."""
    if not isinstance(record, Mapping):
        raise TaskFormatError(f"{where}: a task must be a JSON object, got {type(record).__name__}")
    missing = [name for name in _REQUIRED if name not in record]
    if missing:
        raise TaskFormatError(f"{where}: missing required field(s) {missing}; required: {list(_REQUIRED)}")
    values: dict[str, Any] = {}
    for name in _TEXT:
        if name in record:
            value = record[name]
            if value is None and name not in _REQUIRED:
                value = ""
            if not isinstance(value, str):
                raise TaskFormatError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
            values[name] = value
    if not values["instance_id"].strip():
        raise TaskFormatError(f"{where}: field 'instance_id' is empty")
    if "version" in record:
        version = record["version"]
        if isinstance(version, bool) or not isinstance(version, str | int | float | type(None)):
            raise TaskFormatError(f"{where}: field 'version' must be a string, got {type(version).__name__}")
        values["version"] = "" if version is None else str(version)
    for name in _LISTS:
        if name in record:
            values[name] = _string_list(record[name], f"{where}: field {name!r}")
    if not values["FAIL_TO_PASS"]:
        raise TaskFormatError(f"{where}: field 'FAIL_TO_PASS' is empty; a task needs at least one failing test")
    if "difficulty" in record:
        values["difficulty"] = _difficulty(record["difficulty"], where)
    if "mutation" in record:
        mutation = record["mutation"]
        if mutation is None:
            mutation = {}
        if not isinstance(mutation, Mapping):
            raise TaskFormatError(f"{where}: field 'mutation' must be an object, got {type(mutation).__name__}")
        values["mutation"] = dict(mutation)
    values["extra"] = {k: v for k, v in record.items() if k not in _FIELDS}
    return SWETask(**values)


def _string_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):  # SWE-bench stores the test lists as JSON strings
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as e:
            raise TaskFormatError(f"{what} is a string but not a JSON list: {e}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaskFormatError(f"{what} must be a list of strings (or a JSON string of one), got {value!r:.80}")
    return list(value)


def _difficulty(value: Any, where: str) -> str:
    if value is None or value == "":
        return ""
    if value in DIFFICULTIES:
        return value
    if value in _VERIFIED_DIFFICULTY:
        return _VERIFIED_DIFFICULTY[value]
    allowed = [*DIFFICULTIES, *_VERIFIED_DIFFICULTY]
    raise TaskFormatError(f"{where}: field 'difficulty'={value!r} is not allowed; choose one of {allowed}")


def load_tasks(path: str | os.PathLike) -> list[SWETask]:
    """Tasks from a JSONL file (one record a line; blank lines skipped); instance ids must be unique."""
    path = Path(path)
    if not path.is_file():
        raise TaskFormatError(f"task file {str(path)!r} does not exist")
    tasks: list[SWETask] = []
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskFormatError(f"{where}: not valid JSON ({e})") from None
            task = task_from_record(record, where)
            if task.instance_id in first_line:
                raise TaskFormatError(
                    f"{where}: field 'instance_id'={task.instance_id!r} repeats line {first_line[task.instance_id]}"
                )
            first_line[task.instance_id] = number
            tasks.append(task)
    return tasks


def save_tasks(tasks: Iterable[SWETask], path: str | os.PathLike) -> Path:
    """Write ``tasks`` as JSONL (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for task in tasks:
                out.write(json.dumps(task.to_record(), ensure_ascii=False) + "\n")
        os.chmod(staging, 0o644)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return path


# ---- unified diffs --------------------------------------------------------------------------------------------

_NO_NEWLINE = "\\ No newline at end of file"
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def split_lines(text: str) -> list[str]:
    """Lines with their ``\\n`` kept, split at ``\\n`` only (``str.splitlines`` also splits at form feeds)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def unified_diff(path: str, before: str, after: str, context: int = 3) -> str:
    """The unified diff that turns ``before`` into ``after`` for the file ``path`` (``a/`` and ``b/`` prefixes).

    Empty when the texts are equal. A last line without a newline is marked the way ``diff`` and ``git`` do.
    """
    if before == after:
        return ""
    lines = difflib.unified_diff(split_lines(before), split_lines(after), f"a/{path}", f"b/{path}", n=context)
    out = []
    for line in lines:
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n" + _NO_NEWLINE + "\n")
    return "".join(out)


@dataclass
class _FilePatch:
    old: str | None  # None: the file is created
    new: str | None  # None: the file is deleted
    hunks: list[tuple[int, list[str]]] = field(default_factory=list)  # (old start, lines with their +/-/space)


def _strip_prefix(name: str) -> str | None:
    name = name.split("\t")[0].strip()
    if name == "/dev/null":
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def parse_patch(diff: str) -> list[_FilePatch]:
    """The files and hunks of a unified diff (git's ``diff --git`` headers are allowed and skipped)."""
    files: list[_FilePatch] = []
    lines = split_lines(diff)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            files.append(_FilePatch(_strip_prefix(line[4:]), _strip_prefix(lines[i + 1][4:])))
            i += 2
            continue
        match = _HUNK.match(line)
        if match:
            if not files:
                raise PatchError(f"diff line {i + 1}: a hunk before any '---'/'+++' file header")
            old_count = 1 if match.group(2) is None else int(match.group(2))
            new_count = 1 if match.group(4) is None else int(match.group(4))
            body: list[str] = []
            i += 1
            while (old_count > 0 or new_count > 0) and i < len(lines):
                text = lines[i]
                tag = text[:1]
                if tag == "\\":
                    if body:
                        body[-1] = body[-1].rstrip("\n")
                    i += 1
                    continue
                if tag not in (" ", "-", "+") and text not in ("\n", "\r\n"):
                    break
                if tag in (" ", "\n", "\r"):
                    old_count -= 1
                    new_count -= 1
                    body.append(" " + text[1:] if tag == " " else " " + text)
                elif tag == "-":
                    old_count -= 1
                    body.append(text)
                else:
                    new_count -= 1
                    body.append(text)
                i += 1
            if old_count or new_count:
                raise PatchError(f"diff hunk {match.group(0)!r} is truncated")
            if i < len(lines) and lines[i].startswith("\\"):  # a no-newline marker after the last body line
                body[-1] = body[-1].rstrip("\n")
                i += 1
            start = int(match.group(1))
            files[-1].hunks.append((start, body))
            continue
        i += 1
    if not files and diff.strip():
        raise PatchError("no '--- a/...' / '+++ b/...' file header in the diff")
    return files


def patched_texts(tree: str | os.PathLike, diff: str) -> dict[str, str | None]:
    """What a unified diff makes of the files under ``tree``, without writing: relative path -> new text
    (``None`` for a deleted file). Each hunk must match its context exactly (see :func:`apply_patch`)."""
    tree = Path(tree)
    results: dict[str, str | None] = {}
    for file_patch in parse_patch(diff):
        target = file_patch.new if file_patch.new is not None else file_patch.old
        if target is None:
            raise PatchError("a diff file header names /dev/null on both sides")
        _check_inside(tree, target)
        if file_patch.old is None:
            before = ""
        else:
            _check_inside(tree, file_patch.old)
            source = tree / file_patch.old
            if not source.is_file():
                raise PatchError(f"{file_patch.old}: the patch changes a file that is not in the tree")
            before = source.read_bytes().decode("utf-8")
        after = _apply_hunks(before, file_patch.hunks, target)
        results[target] = None if file_patch.new is None else after
    return results


def apply_patch(tree: str | os.PathLike, diff: str) -> list[str]:
    """Apply a unified diff to the files under ``tree``; returns the paths it touched (relative).

    Each hunk must match its context exactly; it is looked for at its stated line first, then at the nearest
    line where it matches. Nothing is written unless every file's hunks apply.
    """
    tree = Path(tree)
    results = patched_texts(tree, diff)
    for rel, text in results.items():
        path = tree / rel
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
    return list(results)


def _check_inside(tree: Path, rel: str) -> None:
    if os.path.isabs(rel) or ".." in Path(rel).parts:
        raise PatchError(f"{rel}: a patched path must be relative to the tree and stay inside it")


def _apply_hunks(text: str, hunks: list[tuple[int, list[str]]], path: str) -> str:
    lines = split_lines(text)
    offset = 0
    for start, body in hunks:
        old = [line[1:] for line in body if line[0] in " -"]
        new = [line[1:] for line in body if line[0] in " +"]
        expected = start - 1 + offset if old else start + offset
        at = _find(lines, old, max(expected, 0))
        if at is None:
            raise PatchError(f"{path}: hunk @@ -{start} does not apply (its context differs from the file)")
        lines[at : at + len(old)] = new
        offset += len(new) - len(old)
    return "".join(lines)


def _find(lines: list[str], old: list[str], expected: int) -> int | None:
    if not old:
        return min(expected, len(lines))
    for distance in range(len(lines) + 1):
        for at in (expected - distance, expected + distance):
            if 0 <= at <= len(lines) - len(old) and lines[at : at + len(old)] == old:
                return at
        if expected - distance < 0 and expected + distance > len(lines):
            break
    return None


def patch_stats(diff: str) -> tuple[int, int]:
    """``(lines changed, files)`` of a diff: added plus removed lines, and the files it touches."""
    changed = 0
    files = parse_patch(diff)
    for file_patch in files:
        changed += sum(1 for _, body in file_patch.hunks for line in body if line[0] in "+-")
    return changed, len(files)


# ---- difficulty tiers -----------------------------------------------------------------------------------------

#: A fix of at most this many changed lines (added + removed) can be easy; one-line fixes change 2.
EASY_MAX_LINES = 2
#: Easy needs at least this many FAIL_TO_PASS tests: many failing tests point at the fault from several sides.
EASY_MIN_FAIL_TO_PASS = 5
#: A fix of more than this many changed lines is hard.
HARD_MIN_LINES = 5


def difficulty_tier(patch: str, fail_to_pass: int) -> str:
    """The tier of a task from its gold patch and its number of FAIL_TO_PASS tests (thresholds above).

    * hard: the fix touches more than one file, or changes ``HARD_MIN_LINES`` lines or more, or a single
      test fails (one signal to localise the fault from);
    * easy: one file, at most ``EASY_MAX_LINES`` changed lines and at least ``EASY_MIN_FAIL_TO_PASS`` failing
      tests;
    * medium: the rest.
    """
    changed, files = patch_stats(patch)
    if files > 1 or changed >= HARD_MIN_LINES or fail_to_pass <= 1:
        return "hard"
    if changed <= EASY_MAX_LINES and fail_to_pass >= EASY_MIN_FAIL_TO_PASS:
        return "easy"
    return "medium"
