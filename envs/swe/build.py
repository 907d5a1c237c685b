"""The offline task builder: real libraries, injected bugs, tests that catch them, every task validated.

For each pinned library (:mod:`.sources`) :func:`build_tasks`

1. fetches the pristine tree and runs its suite once under coverage with per-test contexts
   (``dynamic_context = test_function``), reading per-test outcomes from a JUnit XML report: which tests pass,
   and which tests execute each source line;
2. lists the mutation sites of the mutable modules (:mod:`.mutate`) that at least one passing test covers, and
   orders them by a seeded round-robin over the operators (so every operator is represented);
3. for each candidate in that order writes the mutant into a scratch copy and runs only the covering tests, with
   a timeout that kills the whole process group (hanging mutants are dropped); it keeps a mutant that breaks
   1 to :data:`MAX_FAIL_TO_PASS` tests: those are ``FAIL_TO_PASS``; ``PASS_TO_PASS`` are the covering tests that
   still pass, then the other tests of the failing tests' files (at most :data:`MAX_PASS_TO_PASS`);
4. writes the issue text from the failing tests only (names, crash messages, the failing lines of test code),
   and drops it if it quotes the original or the mutated line;
5. validates each task from scratch, as the env will run it: pristine tree + ``bug_patch`` → every
   ``FAIL_TO_PASS`` test fails and every ``PASS_TO_PASS`` test passes; + gold ``patch`` → all of them pass.

Results do not depend on ``workers``: candidates are decided in their seeded order, and work done past the
quota is discarded. Tests run through a :data:`Runner`, by default :func:`local_runner` (a subprocess in the
tree); the env runs the same ``test_command`` in its sandbox.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import itertools
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agentenv.envs.swe.mutate import OPERATORS, Mutation, MutationError, apply_mutation, mutation_sites
from agentenv.envs.swe.sources import (
    LIBRARIES,
    PYTEST_OPTIONS,
    SOURCE_MARKER,
    TEST_ENV,
    Library,
    fetch_source,
    get_library,
    library_for,
    prepare_task_tree,
)
from agentenv.envs.swe.tasks import CREATED_BY, PatchError, SWETask, apply_patch, difficulty_tier, unified_diff
from agentenv.errors import ConfigError, check_range

#: A mutant that breaks more tests than this is too blunt to be a task.
MAX_FAIL_TO_PASS = 20
#: PASS_TO_PASS is capped to keep task files small and grading fast.
MAX_PASS_TO_PASS = 25
#: At most this many tasks per function, so a library's tasks spread over its code.
MAX_PER_FUNCTION = 2
#: Candidates tried per task wanted, at most (survivors and duplicates are common).
TRIES_PER_TASK = 8
#: The JUnit report, relative to the tree root, written by each run and removed after reading.
JUNIT_FILE = ".agentenv-junit.xml"
_COVERAGE_RC = ".agentenv-coverage.rc"
_COVERAGE_DATA = ".agentenv-coverage"


class BuildError(RuntimeError):
    """A library that cannot be built from (its baseline suite fails here, or imports an installed copy)."""


# ---- running tests --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one shell command did: exit code (``None`` when killed on timeout), combined output, seconds."""

    returncode: int | None
    output: str
    seconds: float
    timed_out: bool = False


#: ``runner(tree, command, timeout) -> RunResult``: run a shell command with ``tree`` as working directory and
#: ``python`` (with pytest and coverage) on ``PATH``; kill everything it started after ``timeout`` seconds.
Runner = Callable[[Path, str, float], RunResult]

_SCRUBBED_ENV = ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "COVERAGE_PROCESS_START", "COVERAGE_RCFILE")
_python_dir: Path | None = None


def python_bin_dir() -> Path:
    """A folder whose ``python`` is this interpreter (its own folder in a venv, else a wrapper script)."""
    global _python_dir
    if _python_dir is None:
        own = Path(sys.executable).parent
        if (own / "python").exists() and (own / "python").resolve() == Path(sys.executable).resolve():
            _python_dir = own
        else:
            folder = Path(tempfile.mkdtemp(prefix="agentenv-python-"))
            wrapper = folder / "python"
            wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
            wrapper.chmod(0o755)
            _python_dir = folder
    return _python_dir


def local_runner(tree: Path, command: str, timeout: float) -> RunResult:
    """Run ``command`` with ``sh -c`` in ``tree`` (unsandboxed), this interpreter first on ``PATH``.

    The command gets its own session; on timeout the whole process group is killed, so a mutant's infinite
    loop in a pytest child leaves nothing behind.
    """
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PATH"] = f"{python_bin_dir()}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    start = time.monotonic()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=tree,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        return RunResult(proc.returncode, output, time.monotonic() - start)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipe
            proc.kill()
            output = ""
        return RunResult(None, output or "", time.monotonic() - start, timed_out=True)


@dataclass(frozen=True)
class TestOutcome:
    """One test's result: ``passed``, ``failed`` (assertion or exception in the test), ``error`` (in a fixture)
    or ``skipped``; ``message`` is pytest's one-paragraph crash message (no source lines), ``traceback`` the
    full report (with source lines of every frame: library code included)."""

    __test__ = False  # not a pytest test class

    status: str
    message: str = ""
    traceback: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def parse_junit(xml_text: str) -> dict[str, TestOutcome]:
    """Per-test outcomes by pytest node id, from a JUnit XML report in pytest's ``xunit1`` family.

    Node ids are rebuilt from each ``testcase``'s ``file``, ``classname`` and ``name`` (``file.py::Class::test``).
    A test reported twice (a failure in the call, an error in teardown) keeps its worst outcome.
    """
    outcomes: dict[str, TestOutcome] = {}
    root = ElementTree.fromstring(xml_text)
    for case in root.iter("testcase"):
        node = _node_id(case.get("file", ""), case.get("classname", ""), case.get("name", ""))
        if node is None:
            continue
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = "failed" if child.tag == "failure" else child.tag
                message = child.get("message") or ""
                traceback = child.text or ""
                break
        else:
            traceback = ""
        previous = outcomes.get(node)
        if previous is None or _RANK[status] > _RANK[previous.status]:
            outcomes[node] = TestOutcome(status, message, traceback if status != "skipped" else "")
    return outcomes


def _node_id(file: str, classname: str, name: str) -> str | None:
    if not file or not name or not file.endswith(".py"):
        return None  # a collection error reports the module, not a test
    parts = classname.split(".") if classname else []
    module = file[:-3].replace("/", ".").replace("\\", ".")
    if classname == module or classname.startswith(module + "."):
        classes = classname[len(module) + 1 :].split(".") if classname != module else []
    else:
        stem = Path(file).stem
        at = len(parts) - 1 - parts[::-1].index(stem) if stem in parts else len(parts)
        classes = parts[at + 1 :]
    return "::".join([file, *[c for c in classes if c], name])


def run_tests(
    tree: Path, command: str, tests: Sequence[str], runner: Runner, timeout: float
) -> tuple[dict[str, TestOutcome] | None, RunResult]:
    """Run ``command`` + ``tests`` (node ids or paths) with a JUnit report; ``None`` outcomes if no report.

    ``command`` is a task's ``test_command``; the report goes to :data:`JUNIT_FILE` in the tree and is removed.
    """
    report = tree / JUNIT_FILE
    report.unlink(missing_ok=True)
    quoted = " ".join(shlex.quote(t) for t in tests)
    full = f"{command} -o junit_family=xunit1 --junitxml={JUNIT_FILE} {quoted}"
    result = runner(tree, full, timeout)
    try:
        text = report.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None, result
    finally:
        report.unlink(missing_ok=True)
    try:
        return parse_junit(text), result
    except ElementTree.ParseError:
        return None, result


def grade(outcomes: dict[str, TestOutcome] | None, task: SWETask) -> dict[str, list[str]]:
    """Which of a task's listed tests now pass, by list: ``{"FAIL_TO_PASS": [...], "PASS_TO_PASS": [...]}``
    each split into passing (``*_passed``) and not passing (``*_failed``; an unreported test has not passed)."""
    outcomes = outcomes or {}
    graded: dict[str, list[str]] = {}
    for name, tests in (("FAIL_TO_PASS", task.FAIL_TO_PASS), ("PASS_TO_PASS", task.PASS_TO_PASS)):
        ok = [t for t in tests if t in outcomes and outcomes[t].passed]
        graded[f"{name}_passed"] = ok
        graded[f"{name}_failed"] = [t for t in tests if t not in set(ok)]
    return graded


# ---- baseline: outcomes and per-line coverage ---------------------------------------------------------------


@dataclass
class Baseline:
    """The pristine suite's results: outcomes per test, and the passing tests that execute each line."""

    outcomes: dict[str, TestOutcome]
    covering: dict[str, dict[int, frozenset[str]]]  # file -> line -> passing node ids
    seconds: float

    @property
    def passing(self) -> set[str]:
        return {t for t, o in self.outcomes.items() if o.passed}

    def tests_for(self, mutation: Mutation) -> frozenset[str]:
        by_line = self.covering.get(mutation.file, {})
        found: set[str] = set()
        for line in mutation.lines:
            found |= by_line.get(line, frozenset())
        return frozenset(found)


def check_shadowing(lib: Library, tree: Path, runner: Runner) -> None:
    """Fail unless the tests, run as ``test_command`` runs them, import the tree's copy of the library."""
    if not lib.module:
        return
    probe = f"import os, {lib.module} as m; print(os.path.relpath(os.path.realpath(m.__file__)))"
    result = runner(tree, f"PYTHONPATH={lib.pythonpath} {TEST_ENV} python -c {shlex.quote(probe)}", 60)
    where = result.output.strip().splitlines()[-1:] or [""]
    if result.returncode != 0 or where[0].startswith("..") or os.path.isabs(where[0]):
        raise BuildError(
            f"{lib.name}: the tests would not import the tree's copy (python -c 'import {lib.module}' from the "
            f"tree root gives {where[0] or result.output.strip()[-300:]!r})"
        )


def require_build_tools() -> None:
    """Fail fast unless this interpreter has pytest and coverage (the ``swe`` extra)."""
    import importlib.util

    missing = [name for name in ("pytest", "coverage") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"building SWE tasks needs {missing} in this interpreter: pip install 'agentenv[swe]'")


def run_baseline(lib: Library, tree: Path, runner: Runner, timeout: float = 600) -> Baseline:
    """Run the whole suite once under coverage with per-test contexts (in ``tree``, which gets scratch files)."""
    from coverage import CoverageData  # coverage>=7: the per-test map needs dynamic contexts

    sources = ",".join(lib.package_paths)
    rc = f"[run]\ndynamic_context = test_function\ndata_file = {_COVERAGE_DATA}\nrelative_files = true\n"
    rc += f"source = {sources}\n"
    (tree / _COVERAGE_RC).write_text(rc)
    command = f"PYTHONPATH={lib.pythonpath} {TEST_ENV} python -m coverage run --rcfile={_COVERAGE_RC} -m pytest "
    command += PYTEST_OPTIONS
    try:
        outcomes, result = run_tests(tree, command, lib.test_paths, runner, timeout)
        if outcomes is None or result.timed_out:
            raise BuildError(f"{lib.name}: the baseline suite gave no report:\n{result.output[-1500:]}")
        passing = {t for t, o in outcomes.items() if o.passed}
        if not passing:
            raise BuildError(f"{lib.name}: no test passes at baseline:\n{result.output[-1500:]}")
        data = CoverageData(basename=str(tree / _COVERAGE_DATA))
        data.read()
        context_tests = functools.lru_cache(maxsize=None)(_context_index(passing))
        covering: dict[str, dict[int, frozenset[str]]] = {}
        for measured in data.measured_files():
            file = Path(measured)
            rel = str(file.relative_to(tree.resolve()) if file.is_absolute() else file)
            by_line = {}
            for line, contexts in (data.contexts_by_lineno(measured) or {}).items():
                tests = frozenset(t for c in contexts if c for t in context_tests(c))
                if tests:
                    by_line[line] = tests
            covering[rel] = by_line
    finally:
        for scratch in tree.glob(_COVERAGE_DATA + "*"):
            scratch.unlink()
        (tree / _COVERAGE_RC).unlink(missing_ok=True)
    return Baseline(outcomes, covering, result.seconds)


def _context_index(tests: Iterable[str]) -> Callable[[str], frozenset[str]]:
    """Coverage's ``test_function`` context (``pkg.test_mod.Class.test``) → the node ids it may stand for.

    A context names the function where it is defined: not its parameters, not the subclass that inherits a test
    method (``TestCustomMapping::test_merge`` runs as ``TestDict.test_merge``), and its module path depends on
    pytest's import mode. So a context maps to every test of that name in that file, whatever its class, and
    every dotted suffix of the file's module path is indexed. Over-approximating is safe: it only runs more tests.
    """
    index: dict[str, set[str]] = defaultdict(set)
    for test in tests:
        file, *names = test.split("::")
        function = names[-1].split("[")[0] if names else ""
        module = file[:-3].replace("/", ".").split(".")
        for k in range(len(module)):
            index[".".join(module[k:]) + "|" + function].add(test)

    def lookup(context: str) -> frozenset[str]:
        parts = context.split(".")
        for end in range(len(parts) - 1, 0, -1):  # parts[:end] is the module, parts[end:-1] the classes
            for start in range(end):
                found = index.get(".".join(parts[start:end]) + "|" + parts[-1])
                if found:
                    return frozenset(found)
        return frozenset()

    return lookup


# ---- candidates, mutant runs, validation ----------------------------------------------------------------------


def mutable_modules(lib: Library, tree: Path) -> list[str]:
    """The library's modules that may be mutated (relative paths, sorted)."""
    found = []
    for package in lib.package_paths:
        root = tree / package
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            rel = file.relative_to(tree).as_posix()
            if not any(fnmatch.fnmatch(rel, pattern) for pattern in lib.exclude):
                found.append(rel)
    return sorted(found)


def candidates(lib: Library, tree: Path, baseline: Baseline, seed: int) -> list[Mutation]:
    """Covered sites in a seeded round-robin over operators (each operator's sites shuffled)."""
    by_operator: dict[str, list[Mutation]] = defaultdict(list)
    for rel in mutable_modules(lib, tree):
        text = (tree / rel).read_bytes().decode("utf-8")
        for site in mutation_sites(text, rel):
            if baseline.tests_for(site):
                by_operator[site.operator].append(site)
    rng = random.Random(f"{seed}:{lib.name}")
    queues = []
    for operator in OPERATORS:
        sites = by_operator.get(operator, [])
        rng.shuffle(sites)
        queues.append(sites)
    return [m for group in itertools.zip_longest(*queues) for m in group if m is not None]


@dataclass
class Verdict:
    """What became of one candidate mutant: ``reason`` is ``"kept"`` (with its ``task``) or why it was dropped."""

    mutation: Mutation
    reason: str
    task: SWETask | None = None
    seconds: float = 0.0


def _instance_id(lib: Library, mutation: Mutation) -> str:
    key = f"{mutation.file}:{mutation.line}:{mutation.col}:{mutation.operator}:{mutation.replacement}"
    return f"{lib.name}-{lib.version}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def _function_ids(tests: Iterable[str]) -> list[str]:
    """Node ids without parameters: one argument selects every parametrisation (shorter, no escaping)."""
    return sorted({t.split("[")[0] for t in tests})


def _evaluate(
    lib: Library,
    scratch: Path,
    mutation: Mutation,
    baseline: Baseline,
    runner: Runner,
    timeout: float,
    cache_dir: Path | None,
) -> Verdict:
    start = time.monotonic()
    path = scratch / mutation.file
    original = path.read_bytes().decode("utf-8")
    try:
        mutant = apply_mutation(original, mutation)
    except MutationError:
        return Verdict(mutation, "does not parse")
    covering = baseline.tests_for(mutation)
    path.write_bytes(mutant.encode("utf-8"))
    try:
        outcomes, result = run_tests(scratch, lib.test_command, _function_ids(covering), runner, timeout)
    finally:
        path.write_bytes(original.encode("utf-8"))
    if result.timed_out:
        return Verdict(mutation, "timeout", seconds=time.monotonic() - start)
    if outcomes is None:
        return Verdict(mutation, "no report", seconds=time.monotonic() - start)
    if not covering <= outcomes.keys():
        return Verdict(mutation, "tests not reported", seconds=time.monotonic() - start)
    broken = sorted(t for t in covering if not outcomes[t].passed)
    if not broken:
        return Verdict(mutation, "survived", seconds=time.monotonic() - start)
    if len(broken) > MAX_FAIL_TO_PASS:
        return Verdict(mutation, "too many failing", seconds=time.monotonic() - start)
    pass_to_pass = _pass_to_pass(covering - set(broken), broken, baseline)
    bug_patch = unified_diff(mutation.file, original, mutant)
    patch = unified_diff(mutation.file, mutant, original)
    mutant_lines = mutant.split("\n")[mutation.line - 1 : mutation.line + mutation.replacement.count("\n")]
    original_lines = original.split("\n")[mutation.line - 1 : mutation.end_line]
    statement = problem_statement(lib, [(t, outcomes[t]) for t in broken], roots=[str(scratch), str(scratch.resolve())])
    if _leaks(statement, [*mutant_lines, *original_lines]):
        return Verdict(mutation, "issue text leaks the line", seconds=time.monotonic() - start)
    task = SWETask(
        instance_id=_instance_id(lib, mutation),
        repo=lib.name,
        version=lib.version,
        base_commit=lib.base_commit,
        problem_statement=statement,
        FAIL_TO_PASS=broken,
        PASS_TO_PASS=pass_to_pass,
        patch=patch,
        bug_patch=bug_patch,
        test_command=lib.test_command,
        test_paths=list(lib.test_paths),
        difficulty=difficulty_tier(patch, len(broken)),
        mutation={"operator": mutation.operator, "file": mutation.file, "line": mutation.line},
        created_by=CREATED_BY,
    )
    problem = validate_task(task, runner=runner, timeout=timeout, cache_dir=cache_dir)
    if problem:
        return Verdict(mutation, f"validation: {problem.split(':')[0]}", seconds=time.monotonic() - start)
    return Verdict(mutation, "kept", task, seconds=time.monotonic() - start)


def _pass_to_pass(still: set[str], broken: list[str], baseline: Baseline) -> list[str]:
    """The covering tests that still pass, then the other passing tests of the failing tests' files (a test that
    does not execute the mutated lines cannot change outcome; validation checks them all), capped."""
    failing_files = {t.split("::")[0] for t in broken}
    same_files = sorted(t for t in baseline.passing - still - set(broken) if t.split("::")[0] in failing_files)
    return sorted([*sorted(still), *same_files][:MAX_PASS_TO_PASS])


def _leaks(statement: str, lines: Iterable[str]) -> bool:
    for line in lines:
        text = line.strip()
        if len(text) >= 4 and text in statement:
            return True
    return False


def validate_task(
    task: SWETask,
    *,
    runner: Runner = local_runner,
    timeout: float = 120,
    cache_dir: str | os.PathLike | None = None,
) -> str | None:
    """Check a task from scratch as the env grades it; ``None`` if valid, else what is wrong.

    Pristine tree + ``bug_patch``: every FAIL_TO_PASS test fails and every PASS_TO_PASS test passes; then the
    gold ``patch`` applies and makes them all pass, and restores the pristine files exactly.
    """
    lib = library_for(task)
    pristine = fetch_source(lib, cache_dir)
    with tempfile.TemporaryDirectory(prefix="agentenv-swe-validate-") as folder:
        try:
            tree = prepare_task_tree(task, Path(folder) / "tree", cache_dir)
        except PatchError as e:
            return f"bug_patch: does not apply ({e})"
        outcomes, result = run_tests(tree, task.test_command, task.tests, runner, timeout)
        if result.timed_out or outcomes is None:
            return f"buggy tree: {'timeout' if result.timed_out else 'no test report'}"
        graded = grade(outcomes, task)
        if graded["FAIL_TO_PASS_passed"]:
            return f"buggy tree: FAIL_TO_PASS tests pass: {graded['FAIL_TO_PASS_passed'][:3]}"
        if graded["PASS_TO_PASS_failed"]:
            return f"buggy tree: PASS_TO_PASS tests fail: {graded['PASS_TO_PASS_failed'][:3]}"
        missing = [t for t in task.FAIL_TO_PASS if t not in outcomes]
        if missing:
            return f"buggy tree: FAIL_TO_PASS tests not reported (not selectable by node id?): {missing[:3]}"
        try:
            touched = apply_patch(tree, task.patch)
        except PatchError as e:
            return f"gold patch: does not apply ({e})"
        for rel in touched:
            if (tree / rel).read_bytes() != (pristine / rel).read_bytes():
                return f"gold patch: {rel} differs from the pristine file"
        outcomes, result = run_tests(tree, task.test_command, task.tests, runner, timeout)
        if result.timed_out or outcomes is None:
            return f"gold tree: {'timeout' if result.timed_out else 'no test report'}"
        graded = grade(outcomes, task)
        if graded["FAIL_TO_PASS_failed"] or graded["PASS_TO_PASS_failed"]:
            failing = graded["FAIL_TO_PASS_failed"] + graded["PASS_TO_PASS_failed"]
            return f"gold tree: listed tests fail: {failing[:3]}"
    return None


# ---- the issue text -------------------------------------------------------------------------------------------

_ADDRESS = re.compile(r"(?<![0-9A-Za-z])0?x[0-9a-fA-F]{6,}")  # also a repr cut to "....x7f3a..." by pytest
_PYTEST_TMP = re.compile(r"/[^\s'\"]*?/pytest-of-[^/\s'\"]+/pytest-\d+/")  # tmp_path: new each run
_WHERE = re.compile(r"^\s*\+\s+where (.+?) = (.+)$", re.M)
_ASSERT_EQ = re.compile(r"^(?:AssertionError: )?assert (.+) == (.+)$")
_MAX_LISTED = 8
_MAX_DETAILED = 3
_MAX_MESSAGE_LINES = 14
_MAX_MESSAGE_CHARS = 900


def _clean(message: str, roots: Sequence[str]) -> str:
    for root in sorted(roots, key=len, reverse=True):
        message = message.replace(root.rstrip("/") + "/", "").replace(root, ".")
    message = _ADDRESS.sub("0x…", message)
    message = _PYTEST_TMP.sub("<tmp>/", message)
    lines = [line.rstrip() for line in message.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.lstrip().startswith("Use -v to get")]
    text = "\n".join(lines[:_MAX_MESSAGE_LINES])
    if len(lines) > _MAX_MESSAGE_LINES:
        text += "\n…"
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "…"


def _subject(node_id: str) -> str:
    name = node_id.split("::")[-1].split("[")[0]
    return name[len("test_") :] if name.startswith("test_") and len(name) > 5 else name


def _symptom(message: str) -> tuple[str, str]:
    """What the failure looks like from outside, as (singular, plural) verb phrases."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    if "DID NOT RAISE" in first:
        raised = first.split("DID NOT RAISE", 1)[1].split(">")[0].replace("<class", "").strip(" '\"")
        return f"no longer raises {raised}", f"no longer raise {raised}"
    head = first.split(":")[0].strip()
    if head and head != "AssertionError" and re.fullmatch(r"[A-Za-z_][\w.]*(Error|Exception|Warning)", head):
        name = head.split(".")[-1]
        return f"raises {name}", f"raise {name}"
    return "gives wrong results", "give wrong results"


def _sentence(node_id: str, message: str) -> str | None:
    """'Calling X now returns A; expected B.' when pytest's assertion message says so unambiguously."""
    lines = message.strip().splitlines()
    match = _ASSERT_EQ.match(lines[0]) if lines else None
    if not match:
        return None
    actual, expected = match.group(1).strip(), match.group(2).strip()
    for where in _WHERE.finditer(message):
        value, call = where.group(1).strip(), where.group(2).strip()
        if value == actual and "<" not in call and len(call) <= 160:
            return f"Calling `{call}` now returns `{actual}`; expected `{expected}`."
    return None


_LOCATION = re.compile(r"^(\S+\.py):(\d+):(?: .*)?$")
_ARGUMENT = re.compile(r"^[A-Za-z_]\w* = .+")
_SEPARATOR = re.compile(r"^(_ )+_$")
_MAX_ARGUMENT_CHARS = 160


def _test_frames(traceback: str, test_paths: Sequence[str]) -> list[str]:
    """The traceback's frames in test code, each as ``file:line: statement`` and its arguments.

    Frames in library code are left out whole: their source lines would show the bug.
    """

    def in_tests(path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in test_paths)

    frames: list[str] = []
    entry: list[str] = []
    for line in traceback.splitlines():
        if _SEPARATOR.match(line.strip()):
            entry = []
            continue
        location = _LOCATION.match(line)
        if location is None:
            entry.append(line)
            continue
        if in_tests(location.group(1)):
            statement = next((e[1:].strip() for e in entry if e.startswith(">")), "")
            frames.append(f"{location.group(1)}:{location.group(2)}: {statement}".rstrip())
            arguments = [e for e in entry if _ARGUMENT.match(e) and not e.startswith(("self = ", "cls = "))]
            for argument in arguments[:3]:
                cut = argument if len(argument) <= _MAX_ARGUMENT_CHARS else argument[:_MAX_ARGUMENT_CHARS] + "…"
                frames.append(f"    {cut}")
        entry = []
    return frames


def problem_statement(lib: Library, failures: Sequence[tuple[str, TestOutcome]], roots: Sequence[str] = ()) -> str:
    """An issue written from the failing tests only: their names and (trimmed) error messages.

    It never quotes library source: pytest's crash messages carry the test's assertion and the exception, not
    the traceback's source lines. ``roots`` (the scratch tree paths) are cut from messages.
    """
    subjects = list(dict.fromkeys(_subject(t) for t, _ in failures))
    symptoms = Counter(_symptom(o.message) for _, o in failures)
    symptom = symptoms.most_common(1)[0][0]
    named = ", ".join(f"`{s}`" for s in subjects[:3]) + (" and more" if len(subjects) > 3 else "")
    lines = [f"{lib.name}: {named} {symptom[0] if len(subjects) == 1 else symptom[1]}", ""]
    count = len(failures)
    lines.append(
        f"With {lib.name} {lib.version} as it is in this repository, {count} test{'s' if count > 1 else ''} of its "
        f"own suite fail{'' if count > 1 else 's'}:"
    )
    lines.append("")
    for node_id, _ in failures[:_MAX_LISTED]:
        lines.append(f"- `{node_id}`")
    if count > _MAX_LISTED:
        lines.append(f"- … and {count - _MAX_LISTED} more")
    lines.append("")
    for node_id, outcome in failures[:_MAX_DETAILED]:
        message = _clean(outcome.message, roots)
        sentence = _sentence(node_id, message)
        frames = _test_frames(outcome.traceback, test_paths=lib.test_paths)
        name = node_id.split("::")[-1]
        if sentence:
            lines += [f"In `{name}`: {sentence}", ""]
        if frames or (message and not sentence):
            report = _clean("\n".join([*frames, message]), roots) if frames else message
            lines += [f"`{name}` fails{' at' if frames else ' with'}:", "", "```", report, "```", ""]
    lines.append(
        "These tests describe the intended behaviour and must not be changed. Expected: the library behaves as "
        "they specify, and the rest of the suite keeps working."
    )
    return "\n".join(lines).strip() + "\n"


# ---- the builder ------------------------------------------------------------------------------------------------


@dataclass
class LibraryReport:
    """One library's build: mutants tried, kept and dropped (by reason), tasks per tier, seconds."""

    library: str
    sites: int = 0
    tried: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    difficulty: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    skipped: str = ""  # why the whole library was skipped


def build_library(
    library: str | Library,
    per_library: int = 25,
    *,
    seed: int = 0,
    workers: int = 1,
    timeout: float | None = None,
    runner: Runner = local_runner,
    cache_dir: str | os.PathLike | None = None,
    on_result: Callable[[Verdict], None] | None = None,
) -> tuple[list[SWETask], LibraryReport]:
    """Up to ``per_library`` validated tasks from one library (see the module docstring for the steps).

    ``timeout`` is the per-mutant limit in seconds (default: 3x the baseline run, at least 10 s).
    """
    lib = library if isinstance(library, Library) else get_library(library)
    require_build_tools()
    start = time.monotonic()
    report = LibraryReport(lib.name)
    pristine = fetch_source(lib, cache_dir)
    kept: list[SWETask] = []
    with tempfile.TemporaryDirectory(prefix=f"agentenv-swe-build-{lib.name}-") as folder:
        scratches = []
        for i in range(max(1, workers)):
            scratch = Path(folder) / f"tree{i}"
            shutil.copytree(pristine, scratch, ignore=shutil.ignore_patterns(SOURCE_MARKER))
            scratches.append(scratch)
        check_shadowing(lib, scratches[0], runner)
        baseline = run_baseline(lib, scratches[0], runner)
        limit = timeout if timeout is not None else max(10.0, 3 * baseline.seconds)
        queue = candidates(lib, scratches[0], baseline, seed)
        report.sites = len(queue)
        per_function: Counter = Counter()
        seen: set[tuple] = set()
        budget = per_library * TRIES_PER_TASK
        position = 0
        with ThreadPoolExecutor(max_workers=len(scratches)) as pool:
            while len(kept) < per_library and position < len(queue) and report.tried < budget:
                batch: list[Mutation] = []
                while len(batch) < len(scratches) and position < len(queue):
                    mutation = queue[position]
                    position += 1
                    if per_function[(mutation.file, mutation.function)] >= MAX_PER_FUNCTION:
                        continue
                    batch.append(mutation)
                futures = [
                    pool.submit(_evaluate, lib, scratch, m, baseline, runner, limit, cache_dir)
                    for scratch, m in zip(scratches, batch, strict=False)
                ]
                for future in futures:
                    verdict = future.result()
                    if len(kept) >= per_library or report.tried >= budget:
                        break
                    m = verdict.mutation
                    if per_function[(m.file, m.function)] >= MAX_PER_FUNCTION:
                        continue  # as if skipped before running, as one worker would have: workers change nothing
                    report.tried += 1
                    reason = verdict.reason
                    if reason == "kept":
                        key = (m.file, m.line, tuple(verdict.task.FAIL_TO_PASS))
                        if key in seen:
                            reason = "duplicate"
                        seen.add(key)
                    if reason == "kept":
                        kept.append(verdict.task)
                        per_function[(m.file, m.function)] += 1
                        report.kept += 1
                        report.difficulty[verdict.task.difficulty] += 1
                    else:
                        report.dropped[reason] += 1
                    if on_result:
                        on_result(Verdict(m, reason, verdict.task if reason == "kept" else None, verdict.seconds))
    report.seconds = time.monotonic() - start
    return kept, report


def build_tasks(
    libraries: Sequence[str] | None = None,
    per_library: int = 25,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool = True,
    *,
    timeout: float | None = None,
    runner: Runner = local_runner,
    cache_dir: str | os.PathLike | None = None,
    reports: list[LibraryReport] | None = None,
) -> list[SWETask]:
    """Validated tasks from each library (default: all pinned ones), written to ``out`` as JSONL if given.

    A library whose baseline suite does not run here is skipped (its report says why); the others go on.
    With ``progress`` a progress bar runs while building and a summary table is printed at the end.
    """
    names = list(libraries) if libraries else list(LIBRARIES)
    for name in names:
        get_library(name)
    require_build_tools()
    check_range("per_library", per_library, 1, 10_000, integer=True)
    check_range("workers", workers, 1, 64, integer=True)
    if timeout is not None:
        check_range("timeout", timeout, 1, 3600)
    if reports is None:
        reports = []
    tasks: list[SWETask] = []
    bar = _Progress(progress)
    with bar:
        for name in names:
            bar.start(name, per_library)
            try:
                built, report = build_library(
                    name,
                    per_library,
                    seed=seed,
                    workers=workers,
                    timeout=timeout,
                    runner=runner,
                    cache_dir=cache_dir,
                    on_result=bar.update,
                )
            except BuildError as e:
                built, report = [], LibraryReport(name, skipped=str(e).splitlines()[0])
            tasks += built
            reports.append(report)
            bar.finish()
    if progress:
        print_summary(reports)
    if out is not None:
        from agentenv.envs.swe.tasks import save_tasks

        save_tasks(tasks, out)
    return tasks


class _Progress:
    """A rich progress bar over kept tasks (a no-op when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, name: str, total: int) -> None:
        self.name, self.tried = name, 0
        if self.bar is not None:
            self.task = self.bar.add_task(f"{name}: tried 0", total=total)

    def update(self, verdict: Verdict) -> None:
        self.tried += 1
        if self.bar is not None:
            advance = 1 if verdict.reason == "kept" else 0
            self.bar.update(self.task, advance=advance, description=f"{self.name}: tried {self.tried}")

    def finish(self) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, total=self.bar.tasks[self.task].completed)


def print_summary(reports: Sequence[LibraryReport]) -> None:
    """The per-library table: sites, tried, kept, dropped by reason, tasks per tier, time."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="SWE task build")
    for column in ("library", "covered sites", "tried", "kept", "dropped (by reason)", "easy/medium/hard", "time"):
        table.add_column(column, overflow="fold")
    for r in reports:
        if r.skipped:
            table.add_row(r.library, "-", "-", "0", f"skipped: {r.skipped}", "-", "-")
            continue
        dropped = ", ".join(f"{k} {v}" for k, v in r.dropped.most_common())
        tiers = "/".join(str(r.difficulty.get(t, 0)) for t in ("easy", "medium", "hard"))
        table.add_row(r.library, str(r.sites), str(r.tried), str(r.kept), dropped, tiers, f"{r.seconds:.0f} s")
    console = Console(stderr=True)
    if not console.is_terminal:  # a log file: do not squeeze the table into 80 columns
        console = Console(stderr=True, width=160)
    console.print(table)


def validate_tasks(
    tasks: Sequence[SWETask],
    *,
    runner: Runner = local_runner,
    timeout: float = 120,
    workers: int = 1,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, str | None]:
    """:func:`validate_task` on each task (in parallel threads): instance id → ``None`` or the problem."""
    check_range("workers", workers, 1, 64, integer=True)
    for task in tasks:
        if not task.test_command:
            raise ConfigError(f"task {task.instance_id}: field 'test_command' is empty; cannot validate it")
        library_for(task)

    def one(task: SWETask) -> str | None:
        return validate_task(task, runner=runner, timeout=timeout, cache_dir=cache_dir)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip([t.instance_id for t in tasks], pool.map(one, tasks), strict=True))
