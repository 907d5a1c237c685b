"""Grading a SWE submission so that only a fix passes: a fresh tree, source changes only, a structured report,
canary tests and a screen of the diff for test-machinery tampering.

The agent's sandbox is never graded in place. :class:`Grader` builds a fresh sandbox from the pristine task tree
(pristine sources + the bug), copies in the agent's changes to the library's *source* files only, and runs the
task's listed tests there:

1. **Only source changes count.** A change is kept when it is a ``.py`` file inside the library's package
   (``Library.package_paths``) that is not a test. Dropped, and listed in ``info["grading"]["dropped"]`` with the
   reason: tests and ``conftest.py``; ``sitecustomize.py`` / ``usercustomize.py`` / ``*.pth``; pytest
   configuration (``pytest.ini``, ``tox.ini``, ``setup.cfg``, ``pyproject.toml``); ``pytest.py`` / ``_pytest`` and any
   other file outside the package (``python -m pytest`` puts the tree root first on ``sys.path``, so a top-level
   module would shadow pytest, pluggy or the standard library); bytecode and extension modules; symlinks.
2. **Results come from a report, never from stdout.** pytest writes a JUnit XML report (xunit1, the format the
   task builder validated the tasks with) into a folder with a fresh random name; nothing the tests print counts.
3. **Canary tests.** Two tests with fresh random names are added at grade time: one that must fail and one that
   must pass. A run where the must-fail canary passes or the must-pass one does not scores 0 and sets
   ``info["tampering"]``: the results were rewritten wholesale.
4. **A screen of the diff.** The kept changes still run inside the test process, where they could rewrite the
   report. So what they add is screened (Python tokens, counted before and after, comments ignored) for test
   machinery: pytest and its internals, ``atexit``, ``sys`` beyond a few read-only attributes (``sys.modules``,
   tracing hooks, ``sys.exit``), ``os`` beyond ``os.path`` and a few pure helpers (process control, the
   environment, file descriptors, directory listings), ``builtins``, dynamic imports and code execution
   (``__import__``, ``importlib``, ``exec``, ``eval``, bare ``getattr``/``open``), frame and garbage-collector
   introspection, ``ctypes``, ``signal``, ``subprocess``, temp files, and strings that name the test machinery or
   the report. A flagged change scores 0 and sets ``info["tampering"]``.

Residual risk, stated plainly: code that runs in the test process can do whatever the process can, so a screen of
tokens cannot prove a change harmless. An obfuscation that names none of the screened tokens (the usual routes —
``__subclasses__``, ``__globals__``, ``getattr``, ``__import__``, ``sys.modules`` — are screened, but not every
route is) could still rewrite the report selectively and pass the canaries. Honest fixes of injected bugs need
none of the screened constructs: the screen flags none of the 119 shipped gold patches (tests/test_swe_grading.py).
"""

from __future__ import annotations

import io
import os
import secrets
import stat
import tokenize
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

#: Names that are never a source change, wherever they are.
MACHINERY_NAMES = frozenset({"sitecustomize.py", "usercustomize.py", "conftest.py", "pytest.py", "py.py"})
CONFIG_NAMES = frozenset({"pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "setup.py"})
MACHINERY_DIRS = frozenset({"pytest", "_pytest", "__pycache__"})
TEST_DIRS = frozenset({"tests", "test", "testing"})
#: The largest source file a change may be (a bigger one is dropped, not read into memory).
MAX_SOURCE_BYTES = 1 << 20

#: Names whose use in an added line flags the change, wherever they appear: modules and attributes of the test
#: machinery, process control and introspection.
SCREENED_NAMES = frozenset(
    {
        "pytest", "_pytest", "pluggy", "atexit", "builtins", "__builtins__", "__import__", "importlib", "ctypes",
        "cffi", "gc", "inspect", "signal", "subprocess", "multiprocessing", "faulthandler", "tracemalloc",
        "sitecustomize", "usercustomize", "tempfile", "glob", "shutil", "pty", "socket", "settrace", "setprofile",
        "_getframe", "f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "__subclasses__", "__globals__",
        "__code__", "__closure__", "__loader__", "__spec__", "excepthook", "unraisablehook",
    }
)  # fmt: skip
#: Built-in functions flagged when called by their bare name (``re.compile`` or ``self.open`` are fine).
SCREENED_BUILTINS = frozenset({"exec", "eval", "compile", "open", "globals", "vars", "breakpoint", "input",
                               "setattr", "delattr", "getattr", "exit", "quit"})  # fmt: skip
#: ``sys.X`` / ``os.X`` attributes an honest fix may use; any other attribute of ``sys`` or ``os`` is flagged.
SYS_ALLOWED = frozenset(
    {"version_info", "maxsize", "maxunicode", "float_info", "int_info", "byteorder", "platform", "hexversion",
     "implementation", "getrecursionlimit", "getdefaultencoding", "getfilesystemencoding", "intern", "version",
     "getsizeof", "float_repr_style", "hash_info"}
)  # fmt: skip
OS_ALLOWED = frozenset({"path", "sep", "altsep", "extsep", "pathsep", "linesep", "curdir", "pardir", "fspath", "name",
                        "PathLike", "fsencode", "fsdecode"})  # fmt: skip
#: Substrings of string literals in added lines that flag the change (they name the test machinery or report).
SCREENED_STRINGS = ("pytest", "atexit", "junit", "conftest", "sitecustomize", "usercustomize", "builtins",
                    "importlib", "PASSED", "FAILED", "agentenv", "testcase", "/tmp", "/proc", "__import__")  # fmt: skip


@dataclass
class Grade:
    """What the grader found: per-test statuses of the listed tests, and what it dropped or flagged."""

    statuses: dict[str, str]
    applied: list[str] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    tampering: str | None = None
    finished: bool = True
    output: str = ""

    def info(self) -> dict[str, Any]:
        """JSON-ready, and encodable: undecodable bytes of file names show as U+FFFD."""
        dropped = [{**d, "path": shown_path(d["path"])} for d in self.dropped]
        return {"applied": [shown_path(p) for p in self.applied], "dropped": dropped, "tampering": self.tampering,
                "report": self.finished}  # fmt: skip


def shown_path(path: str) -> str:
    """A path from the file system as text an agent or a log can take (undecodable bytes become U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# ---- which changes count ---------------------------------------------------------------------------------------


def drop_reason(path: str, *, package_paths: Sequence[str], test_paths: Sequence[str] = ()) -> str | None:
    """Why a changed file at ``path`` (relative to the tree root) does not count as a source change, or None."""
    parts = PurePosixPath(path).parts
    name = parts[-1]
    if name in MACHINERY_NAMES or name.endswith(".pth") or MACHINERY_DIRS & set(parts[:-1]):
        return "test machinery (conftest, sitecustomize, pytest shadowing, .pth, bytecode)"
    if name in CONFIG_NAMES:
        return "configuration (pytest and packaging settings are not part of a fix)"
    if name.startswith("test_") or name.endswith("_test.py") or TEST_DIRS & set(parts[:-1]):
        return "test file (the tests are graded as they were)"
    if any(path == t or path.startswith(t.rstrip("/") + "/") for t in test_paths):
        return "test file (the tests are graded as they were)"
    if not name.endswith(".py"):
        return "not a Python source file"
    if package_paths and not any(path.startswith(p.rstrip("/") + "/") for p in package_paths):
        return "outside the library's package (a top-level module could shadow pytest or the standard library)"
    return None


def screen(before: str, after: str) -> list[str]:
    """What a source change adds that touches test machinery (empty: nothing).

    Python tokens are compared, not lines: a use is flagged when ``after`` has more of it than ``before`` (so a fix
    that restores a line already using ``os.open`` is not flagged, but a new ``atexit`` is); comments are ignored.
    """
    had = Counter(_flags(before))
    found = []
    for what, count in Counter(_flags(after)).items():
        if count > had.get(what, 0):
            found.append(what)
    return found


def _flags(source: str) -> list[str]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return []  # not valid Python: it cannot run, and the tests say so
    found: list[str] = []
    previous: list[tokenize.TokenInfo] = []
    for token in tokens:
        what = _flag(token, previous)
        if what:
            found.append(what)
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = [*previous[-1:], token]
    return found


def _flag(token: tokenize.TokenInfo, previous: list[tokenize.TokenInfo]) -> str | None:
    if token.type == tokenize.NAME:
        attribute = bool(previous) and previous[-1].string == "."
        if token.string in SCREENED_NAMES or (token.string in SCREENED_BUILTINS and not attribute):
            return f"uses {token.string!r}"
        if attribute and len(previous) == 2 and previous[0].type == tokenize.NAME:
            owner = previous[0].string
            if owner == "sys" and token.string not in SYS_ALLOWED:
                return f"uses 'sys.{token.string}'"
            constant = token.string.startswith(("O_", "SEEK_")) or token.string.endswith("_OK")
            if owner == "os" and token.string not in OS_ALLOWED and not constant:
                return f"uses 'os.{token.string}'"
        return None
    if token.type == tokenize.STRING:
        for needle in SCREENED_STRINGS:
            if needle.lower() in token.string.lower():
                return f"a string naming {needle!r}"
    return None


# ---- the grader ----------------------------------------------------------------------------------------------


class Grader:
    """Grades a task's listed tests on the pristine tree plus an agent's source changes (see the module docstring).

    ``reference`` maps every file of the tree the agent started from (relative path) to its bytes: the pristine
    tree with the bug applied. ``open_box`` opens a fresh sandbox holding the pristine tree. ``screen_changes=False``
    turns the token screen off, to measure what the other defences (report, canaries) catch on their own.
    """

    def __init__(
        self,
        task: Any,
        pristine: Path,
        *,
        package_paths: Sequence[str],
        open_box: Any,
        timeout: float,
        screen_changes: bool = True,
    ):
        from agentenv.envs.swe.tasks import patched_texts

        self.task, self.pristine, self.package_paths = task, Path(pristine), tuple(package_paths)
        self.open_box, self.timeout, self.screen_changes = open_box, timeout, screen_changes
        self.test_paths = tuple(task.test_paths)
        self.buggy = patched_texts(self.pristine, task.bug_patch) if task.bug_patch else {}

    def _reference(self, relative: str) -> bytes | None:
        if relative in self.buggy:
            text = self.buggy[relative]
            return None if text is None else text.encode("utf-8")
        path = self.pristine / relative
        return path.read_bytes() if path.is_file() and not path.is_symlink() else None

    def changes(self, box: Any) -> tuple[dict[str, str | None], list[dict[str, str]]]:
        """The agent's kept source changes (path -> new text, ``None`` for a deletion) and the dropped ones."""
        from agentenv.envs.swe.sources import SOURCE_MARKER

        if getattr(box, "workdir", None) is None:
            raise NotImplementedError(
                f"grading a {box.backend!r} sandbox is not yet supported: the grader reads the agent's tree on the "
                "host (use sandbox='bubblewrap')"
            )
        kept: dict[str, str | None] = {}
        dropped: list[dict[str, str]] = []
        seen: set[str] = set()
        workdir = Path(box.workdir)
        for folder, dirs, files in os.walk(workdir):
            dirs.sort()
            for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                host = Path(folder, name)
                relative = host.relative_to(workdir).as_posix()
                seen.add(relative)
                status = os.lstat(host)
                reference = self._reference(relative)
                regular = stat.S_ISREG(status.st_mode)
                if (
                    regular
                    and reference is not None
                    and status.st_size == len(reference)
                    and host.read_bytes() == reference
                ):
                    continue
                why = drop_reason(relative, package_paths=self.package_paths, test_paths=self.test_paths)
                if why is None and not stat.S_ISREG(status.st_mode):
                    why = "not a regular file (symlink, FIFO or device)"
                if why is None and status.st_size > MAX_SOURCE_BYTES:
                    why = f"larger than {MAX_SOURCE_BYTES} bytes"
                text = None
                if why is None:
                    try:
                        text = host.read_bytes().decode("utf-8")
                    except (OSError, UnicodeDecodeError) as e:
                        why = f"unreadable as UTF-8 text ({type(e).__name__})"
                if why is not None:
                    dropped.append({"path": relative, "reason": why})
                else:
                    kept[relative] = text
        for relative in self._reference_files():
            if relative not in seen and relative != SOURCE_MARKER:
                why = drop_reason(relative, package_paths=self.package_paths, test_paths=self.test_paths)
                if why is None:
                    kept[relative] = None
                else:
                    dropped.append({"path": relative, "reason": f"deleted {why}"})
        return kept, dropped

    def _reference_files(self) -> list[str]:
        files = {p.relative_to(self.pristine).as_posix() for p in self.pristine.rglob("*") if p.is_file()}
        files |= {path for path, text in self.buggy.items() if text is not None}
        return sorted(f for f in files if self._reference(f) is not None)

    def grade(self, box: Any, tests: Sequence[str]) -> Grade:
        """Grade ``tests`` (node ids) on a fresh tree holding the agent's kept changes from ``box``."""
        from agentenv.envs.swe.build import parse_junit

        kept, dropped = self.changes(box)
        flags = []
        for relative, text in kept.items() if self.screen_changes else ():
            if text is not None:
                before = self._reference(relative)
                flags += [f"{relative} {f}" for f in screen(before.decode("utf-8", "replace") if before else "", text)]
        token = secrets.token_hex(6)
        canary_dir = self._canary_dir()
        canary = f"{canary_dir}/test_canary_{token}.py" if canary_dir else f"test_canary_{token}.py"
        must_pass, must_fail = f"test_{secrets.token_hex(6)}", f"test_{secrets.token_hex(6)}"
        report = f".grade-{secrets.token_hex(8)}/report.xml"
        grading = self.open_box()
        try:
            for relative, text in self.buggy.items():
                if text is None:
                    grading.run(f"rm -f -- {_quote(relative)}")
                else:
                    grading.write_file(relative, text)
            # Deletions first: a file the agent turned into a folder is removed before the folder's files are written.
            deleted = [relative for relative, text in kept.items() if text is None]
            if deleted:
                grading.run("rm -f -- " + " ".join(_quote(relative) for relative in deleted))
            for relative, text in list(kept.items()):
                if text is None:
                    continue
                try:
                    grading.write_file(relative, text)
                except (OSError, ValueError) as e:  # a folder of it is a file there (that change was dropped)
                    del kept[relative]
                    why = getattr(e, "strerror", None) or str(e)
                    dropped.append({"path": relative, "reason": f"could not be applied in the graded tree ({why})"})
            grading.write_file(canary, _canary_source(must_pass, must_fail))
            command = self.task.command([canary, *tests], junitxml=report)
            result = grading.run(command, timeout=self.timeout)
            try:
                outcomes = parse_junit(grading.read_file(report))
                finished = True
            except (FileNotFoundError, ValueError, SyntaxError):  # no report, or not XML (ParseError)
                outcomes, finished = {}, False
        finally:
            grading.close()
        statuses = {node: outcome.status for node, outcome in outcomes.items()}
        tampering = None
        if flags:
            tampering = "the change touches test machinery: " + "; ".join(flags[:5])
        elif finished:
            if statuses.get(f"{canary}::{must_fail}") == "passed":
                tampering = "a canary test that must fail was reported as passing"
            elif statuses.get(f"{canary}::{must_pass}") != "passed":
                tampering = "a canary test that must pass was not reported as passing"
        listed = {t: statuses[t] for t in tests if t in statuses}
        text = result.output if not result.timed_out else f"stopped at the {self.timeout:g} s limit\n{result.output}"
        return Grade(listed, applied=sorted(kept), dropped=dropped, tampering=tampering, finished=finished,
                     output=text)  # fmt: skip

    def _canary_dir(self) -> str:
        first = self.test_paths[0] if self.test_paths else ""
        if first.endswith(".py"):
            parent = str(PurePosixPath(first).parent)
            return "" if parent == "." else parent
        return first.rstrip("/")


def _canary_source(must_pass: str, must_fail: str) -> str:
    return (
        '"""Canary tests added by the grader: one must pass, one must fail."""\n\n\n'
        f"def {must_pass}():\n    assert sorted([3, 1, 2]) == [1, 2, 3]\n\n\n"
        f"def {must_fail}():\n    assert sorted([3, 1, 2]) == [3, 2, 1]\n"
    )


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path)
