"""The SWE env: fix an injected bug in a real Python library, with sandboxed tools; rewards from its tests.

Each task (:class:`~agentenv.envs.swe.tasks.SWETask`) is a library's pristine source plus a bug patch. At reset the
env takes a fresh sandbox holding a copy of the pristine tree (bubblewrap by default: no network, read-only system,
resource limits, wall timeouts), opened ahead of time by a :class:`~agentenv.envs.swe.pool.TreePool` (``ready_trees``
per library) and used by no other episode, and writes the bug's files into it. The agent reads the problem
statement and works with ``bash``, ``view``, ``create``, ``str_replace``, ``insert``, ``run_tests`` and ``submit``.
At submit the test files are never graded in place: :class:`~agentenv.envs.swe.grading.Grader` runs the task's
``FAIL_TO_PASS`` + ``PASS_TO_PASS`` tests in a fresh sandbox holding the pristine tree, the bug and the agent's
changes to the library's source files only (tests, conftest, sitecustomize, pytest shadowing and configuration are
dropped and listed in ``info["grading"]``), reads a JUnit report (never stdout), adds canary tests and screens the
change for test-machinery tampering (``info["tampering"]``, score 0). :class:`agentenv.rewards.TestPassRatio`
scores the result.

Rewards: ``ratio`` (default; fraction of the listed tests passing at submit — SWE-Gym found it trains better than
binary; note that submitting the untouched tree already scores ``len(PASS_TO_PASS) / len(tests)``),
``binary``/``sparse`` (1 only if all pass: SWE-bench's "resolved"), ``f2p`` (the fraction of ``FAIL_TO_PASS`` fixed,
0 if any ``PASS_TO_PASS`` test breaks: no credit for the untouched tree), ``dense`` (each ``run_tests`` also grades
the listed tests with the grader and pays the change in pass ratio; submit pays the rest, so an episode's return
equals its final ratio — potential-based shaping).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shlex
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentenv.core import SPLIT_BASE, SPLITS, hash_split, split_of
from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.rewards import TestPassRatio
from agentenv.rewards.base import Sample
from agentenv.tool_calls import tool_call_text
from agentenv.tool_env import ToolEnv, ToolError, ToolResult, clip_output, function_tool

DIFFICULTIES = ("easy", "medium", "hard")
#: The file tools (view, str_replace, insert) read UTF-8 text files of at most this many bytes and refuse bigger or
#: binary ones with a message (bash's head, sed -n, grep -n read parts of them): the host's work per call is bounded.
MAX_FILE_BYTES = 4 * 2**20
SETUP_SECONDS = 120.0  # wall-clock limit of the env's own set-up commands in the sandbox (applying the bug)

INSTRUCTIONS = (
    "You are a software engineer fixing a bug in a Python repository. The repository is your working directory. "
    "Read the problem statement, find the cause in the source (not in the tests), fix it with the file tools or "
    "bash, check your fix with run_tests, then call submit. Do not edit the tests: they are restored before "
    "grading."
)

TOOLS = (
    function_tool(
        "bash",
        "Run a shell command in the repository (no network). Returns the exit code and output.",
        {"command": {"type": "string"}},
        ("command",),
    ),
    function_tool(
        "view",
        "Show a file with line numbers (optionally lines start..end), or list a directory.",
        {"path": {"type": "string"}, "start": {"type": "integer"}, "end": {"type": "integer"}},
        ("path",),
    ),
    function_tool(
        "create",
        "Create a new file with the given text.",
        {"path": {"type": "string"}, "text": {"type": "string"}},
        ("path", "text"),
    ),
    function_tool(
        "str_replace",
        "Replace the one occurrence of old in a file by new.",
        {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}},
        ("path", "old", "new"),
    ),
    function_tool(
        "insert",
        "Insert text after line `line` of a file (0 inserts at the top).",
        {"path": {"type": "string"}, "line": {"type": "integer"}, "text": {"type": "string"}},
        ("path", "line", "text"),
    ),
    function_tool(
        "run_tests",
        "Run tests (pytest node ids or files; default: the whole test suite) and summarise the results.",
        {"tests": {"type": "array", "items": {"type": "string"}}},
    ),
    function_tool("submit", "Submit your fix for grading. Ends the episode.", {}),
)


@functools.lru_cache(maxsize=4)
def _task_set(path: str) -> tuple[Any, ...]:
    from agentenv.envs.swe.tasks import load_tasks

    return tuple(load_tasks(path))


def default_tasks_path() -> Path:
    return Path(__file__).with_name("data") / "tasks.jsonl"


class SWEEnv(ToolEnv):
    """Repository bug fixing in a sandbox (see the module docstring)."""

    family = "swe"
    reward_modes = ("ratio", "binary", "sparse", "dense", "f2p")
    hack_module = "agentenv.envs.swe.hacks"
    tools = TOOLS
    instructions = INSTRUCTIONS

    def __init__(
        self,
        *,
        tasks: str = "default",
        libraries: Sequence[str] | None = None,
        difficulty: str | None = None,
        sandbox: str = "bubblewrap",
        command_timeout: float = 30.0,
        test_timeout: float = 120.0,
        memory_mb: int = 4096,
        reward: str = "ratio",
        max_turns: int = 30,
        max_tool_output: int = 6000,
        ready_trees: int = 2,
        **kwargs: Any,
    ):
        super().__init__(reward=reward, max_turns=max_turns, max_tool_output=max_tool_output, **kwargs)
        if difficulty is not None:
            check_choice("difficulty", difficulty, DIFFICULTIES)
        check_choice("sandbox", sandbox, ("bubblewrap", "docker", "local"))
        check_range("command_timeout", command_timeout, 1.0, 3600.0)
        check_range("test_timeout", test_timeout, 1.0, 3600.0)
        check_range("memory_mb", memory_mb, 64, integer=True)
        check_range("ready_trees", ready_trees, 0, 16, integer=True)
        path = default_tasks_path() if tasks == "default" else Path(tasks)
        if not path.is_file():
            raise ConfigError(f"tasks={tasks!r}: no task file at {path}")
        all_tasks = _task_set(str(path))
        wanted = set(libraries) if libraries is not None else None
        if wanted is not None:
            known = sorted({t.repo for t in all_tasks})
            for name in wanted:
                check_choice("libraries", name, known)
        self.by_split: dict[str, list[Any]] = {s: [] for s in SPLITS}
        for task in all_tasks:
            if (wanted is None or task.repo in wanted) and (difficulty is None or task.difficulty == difficulty):
                self.by_split[hash_split(task.instance_id)].append(task)
        for pool in self.by_split.values():  # a fixed shuffle, so consecutive seeds mix libraries
            pool.sort(key=lambda t: hashlib.sha256(t.instance_id.encode()).hexdigest())
        if not any(self.by_split.values()):
            raise ConfigError(f"no task in {path} has libraries={libraries!r} and difficulty={difficulty!r}")
        self.tasks_name = "default" if tasks == "default" else path.stem
        self.libraries, self.difficulty, self.sandbox_backend = wanted, difficulty, sandbox
        self.command_timeout, self.test_timeout, self.memory_mb = float(command_timeout), float(test_timeout), memory_mb
        self.ready_trees = ready_trees
        self.task: Any = None
        self.box: Any = None
        self._pool: Any = None  # a TreePool of sandboxes opened ahead, per library (made at the first reset)
        self._calls: list[Any] = []  # the tool calls run on the agent's sandbox this episode, for unpickling
        self._grader = TestPassRatio("binary" if reward in ("binary", "sparse") else "ratio")
        self._ratio = TestPassRatio("ratio")

    @property
    def task_tag(self) -> str:
        parts = ["swe", self.tasks_name]
        if self.libraries:
            parts.append("+".join(sorted(self.libraries)))
        if self.difficulty:
            parts.append(self.difficulty)
        return "-".join(parts)

    def task_for(self, task_seed: int) -> Any:
        split = split_of(task_seed)
        pool = self.by_split[split] or [t for tasks in self.by_split.values() for t in tasks]
        return pool[(task_seed - SPLIT_BASE[split]) % len(pool)]

    # ---- the episode -------------------------------------------------------------------------------------
    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from agentenv.envs.swe.grading import Grader
        from agentenv.envs.swe.sources import fetch_source, library_for

        self._retire_box()
        self.task = self.task_for(task_seed)
        self.pristine = fetch_source(self.task.repo)
        package_paths = library_for(self.task).package_paths
        self.grader = Grader(self.task, self.pristine, package_paths=package_paths, open_box=self._open_box,
                             timeout=self.test_timeout)  # fmt: skip
        self.box = self._take_box()
        self._apply_bug()
        self._calls = []
        self.listed = [*self.task.FAIL_TO_PASS, *self.task.PASS_TO_PASS]
        self.ratio = self._initial_ratio()
        observation = (
            f"Repository: {self.task.repo} {self.task.version}\n\nProblem statement:\n{self.task.problem_statement}"
        )
        info = {"instance_id": self.task.instance_id, "difficulty": self.task.difficulty, "repo": self.task.repo}
        return observation, info

    def _open_box(self) -> Any:
        """A fresh sandbox holding the pristine tree (the agent's, and each grading run's)."""
        return _open_tree_box(self.sandbox_backend, self.command_timeout, self.memory_mb, self.pristine)

    def _take_box(self) -> Any:
        """The agent's sandbox for this episode: one the pool opened ahead on the library's pristine tree (used by
        no episode before, never by another after), or a fresh one (``ready_trees=0``, docker)."""
        if self.ready_trees == 0 or self.sandbox_backend == "docker":
            return self._open_box()
        if self._pool is None or self._pool.closed:
            from agentenv.envs.swe.pool import TreePool
            from agentenv.envs.swe.sources import LIBRARIES, source_ready

            # the libraries whose trees are at hand now (no download in the background); the others join the pool
            # at their first reset, which fetches them
            repos = {t.repo for tasks in self.by_split.values() for t in tasks} & set(LIBRARIES)
            libraries = sorted(name for name in repos if source_ready(name))
            # this episode's sandbox first, on this thread: the sandbox module's one-time set-up (cgroup parents,
            # probes) is not made for threads, so the pool's thread starts once it is done
            box = self._open_box()
            opener = functools.partial(_open_library_box, self.sandbox_backend, self.command_timeout, self.memory_mb)
            self._pool = TreePool(opener, libraries, per_library=self.ready_trees)
            return box
        return self._pool.take(self.task.repo)

    def _apply_bug(self) -> None:
        """Write the task's buggy files into the fresh tree from the host (the texts the grader compares with); a
        sandbox without a host workdir (docker), or a bug that deletes a file, gets it through ``patch`` inside."""
        texts = self.grader.buggy
        if getattr(self.box, "workdir", None) is None or any(text is None for text in texts.values()):
            self._apply(self.task.bug_patch)
            return
        for relative, text in texts.items():
            self.box.write_file(relative, text)
        _hide_the_writes(Path(self.box.workdir), self.pristine, texts)

    def _apply(self, patch: str) -> None:
        name = ".agentenv.patch"
        self.box.write_file(name, patch)
        # the env's own set-up, not an agent command: a short command_timeout must not fail it on a loaded machine
        # (5 s was measured too short for `patch` with the load average at 5 on 2 cores)
        command = f"patch -p1 -s --no-backup-if-mismatch -i {name}; s=$?; rm -f {name}; exit $s"
        result = self.box.run(command, timeout=max(self.command_timeout, SETUP_SECONDS))
        if result.exit_code != 0:
            raise RuntimeError(f"{self.task.instance_id}: the patch does not apply: {result.output[-500:]}")

    # ---- tools ------------------------------------------------------------------------------------------
    def tool_bash(self, command: str) -> str:
        result = self.box.run(command, timeout=self.command_timeout)
        return f"exit code: {result.exit_code}\n{result.output}"

    def tool_view(self, path: str, start: int = 0, end: int = 0) -> str:
        target = self._path(path)
        if not self._exists(target):
            raise ToolError(f"{path}: no such file or directory")
        listing = self.box.run(f"test -d {shlex.quote(target)}")
        if listing.exit_code == 0:
            hidden = "-not -path '*/.*' -not -path '*__pycache__*'"
            found = self.box.run(f"find {shlex.quote(target)} -maxdepth 2 {hidden} | sort | head -400")
            return found.output
        text = self._read(target)
        total = _line_count(text)
        first = max(1, int(start) or 1)
        last = min(total, int(end) or total)
        if first > max(1, total):
            raise ToolError(f"{path} has {total} lines")
        shown, following = _numbered(text, first, last, self.max_tool_output)
        if following <= last:
            shown += (f"\n[... lines {following}-{last} not shown (at most {self.max_tool_output} characters per "
                      f"output); view with start={following} to see them]")  # fmt: skip
        return shown or "(empty file)"

    def tool_create(self, path: str, text: str) -> str:
        target = self._path(path)
        if self._exists(target):
            raise ToolError(f"{path} already exists; use str_replace or insert to change it")
        self._write(target, text)
        return f"Created {path} ({_line_count(text)} lines)."

    def tool_str_replace(self, path: str, old: str, new: str) -> str:
        target = self._path(path)
        text = self._read(target)
        count = text.count(old) if old else 0
        if count != 1:
            where = "does not occur" if not count else f"occurs {count} times; include more context to make it unique"
            raise ToolError(f"old text {where} in {path}")
        at = text.index(old)
        updated = text[:at] + new + text[at + len(old) :]
        self._write(target, updated)
        first = text.count("\n", 0, at) + 1
        snippet, _ = _numbered(updated, max(1, first - 2), first + new.count("\n") + 2, self.max_tool_output)
        return f"Edited {path}. Lines around the change:\n{snippet}"

    def tool_insert(self, path: str, line: int, text: str) -> str:
        target = self._path(path)
        content = self._read(target)
        total, line = _line_count(content), int(line)
        if not 0 <= line <= total:
            raise ToolError(f"line must be in 0..{total} for {path}")
        at = _line_start(content, line + 1)
        before = content[:at] + ("\n" if at and content[at - 1] != "\n" else "")
        self._write(target, before + (text if text.endswith("\n") else text + "\n") + content[at:])
        return f"Inserted {_line_count(text)} line(s) after line {line} of {path}."

    def tool_run_tests(self, tests: list[str] | None = None) -> ToolResult:
        selected = [str(t) for t in tests or []]
        outcome = self._pytest(selected, summary=True)
        if self.reward_mode != "dense":
            return ToolResult(outcome["summary"])
        graded = self._graded_ratio(self.grader.grade(self.box, self.listed))
        progress, self.ratio = graded - self.ratio, graded
        shown = outcome["summary"] if not selected else self._summary_of(outcome, selected)
        return ToolResult(shown, reward_parts={"progress": progress})

    def tool_submit(self) -> ToolResult:
        grade = self.grader.grade(self.box, self.listed)
        score = self._grader(Sample(response="", metadata=self._metadata(grade.statuses)))
        ratio = 0.0 if grade.tampering else score.parts.get("ratio", 0.0)
        passed = score.details.get("passed", 0) if not grade.tampering else 0
        total = score.details.get("total", len(self.listed))
        if grade.tampering:
            parts = {"tests": 0.0 - (self.ratio - self._initial_ratio() if self.reward_mode == "dense" else 0.0)}
        elif self.reward_mode == "dense":
            parts = {"tests": ratio - self.ratio + self._initial_ratio()}
        elif self.reward_mode == "f2p":  # FAIL_TO_PASS fixed, and nothing that passed broken
            unbroken = score.parts.get("pass_to_pass", 1.0) == 1.0
            parts = {"tests": score.parts.get("fail_to_pass", 0.0) if unbroken else 0.0}
        else:
            parts = {"tests": score.value}
        info = {"tests_passed": passed, "tests_total": total, "test_ratio": ratio, "resolved": passed == total,
                "grading": grade.info(), "tampering": grade.tampering}  # fmt: skip
        text = f"Submitted. {passed}/{total} of the task's tests pass."
        if grade.tampering:
            text = f"Submitted. Scored 0: {grade.tampering}."
        elif grade.dropped:
            paths = ", ".join(d["path"] for d in info["grading"]["dropped"][:10])
            text += f" Not graded (only source changes count): {paths}."
        return ToolResult(text, reward_parts=parts, terminated=True, success=passed == total and not grade.tampering,
                          info=info)  # fmt: skip

    # ---- helpers ----------------------------------------------------------------------------------------
    def _initial_ratio(self) -> float:
        """The pass ratio of the buggy tree: validated tasks fail every FAIL_TO_PASS and pass every PASS_TO_PASS."""
        return len(self.task.PASS_TO_PASS) / max(1, len(self.listed))

    def _metadata(self, statuses: dict[str, str]) -> dict[str, Any]:
        return {"tests": statuses, "FAIL_TO_PASS": self.task.FAIL_TO_PASS, "PASS_TO_PASS": self.task.PASS_TO_PASS}

    def _graded_ratio(self, grade: Any) -> float:
        if grade.tampering:
            return 0.0
        return self._ratio(Sample(response="", metadata=self._metadata(grade.statuses))).value

    def _pytest(self, tests: Sequence[str], *, summary: bool) -> dict[str, Any]:
        from agentenv.envs.swe.sources import parse_test_report, test_invocation

        command = test_invocation(self.task, tests)
        result = self.box.run(command, timeout=self.test_timeout)
        statuses = parse_test_report(result.stdout)
        if result.timed_out:
            text = f"The test run was stopped at the {self.test_timeout:g} s limit.\n{result.output}"
        else:
            text = result.output
        return {"statuses": statuses, "summary": clip_output(text, self.max_tool_output), "result": result}

    def _summary_of(self, outcome: dict[str, Any], selected: list[str]) -> str:
        shown = {t: s for t, s in outcome["statuses"].items() if any(t == x or t.startswith(x) for x in selected)}
        counts: dict[str, int] = {}
        for status in shown.values():
            counts[status] = counts.get(status, 0) + 1
        line = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tests ran"
        failing = [t for t, s in shown.items() if s not in ("passed", "xfail", "skipped")]
        return line + ("\nFailing:\n" + "\n".join(failing[:50]) if failing else "")

    def _path(self, path: str) -> str:
        path = path.strip()
        root = getattr(self.box, "root", "/workspace")
        if path.startswith(root + "/") or path == root:
            path = path[len(root) :].lstrip("/") or "."
        return path or "."

    def _exists(self, path: str) -> bool:
        try:
            return self.box.exists(path)
        except ValueError as e:  # SandboxError: a path that leaves the repository
            raise ToolError(str(e)) from None

    def _read(self, path: str) -> str:
        """The text of a file for the file tools: at most :data:`MAX_FILE_BYTES` read, binary files refused."""
        from agentenv.sandbox import FileTooLargeError

        try:
            data = self.box.read_bytes(path, max_bytes=MAX_FILE_BYTES)
        except FileTooLargeError:
            raise ToolError(
                f"{path} is larger than {MAX_FILE_BYTES // 2**20} MiB, more than the file tools read; use bash "
                "(head, sed -n 'A,Bp', grep -n) to work on parts of it"
            ) from None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise ToolError(f"{path}: {type(e).__name__}: {e.strerror or e}") from None
        except ValueError as e:  # SandboxError: paths that leave the repository, not a regular file
            raise ToolError(str(e)) from None
        except OSError as e:
            raise ToolError(f"{path}: {e.strerror or e}") from None
        try:
            if b"\0" not in data:
                return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        raise ToolError(f"{path} is a binary file (NUL bytes or not UTF-8); the file tools edit text: use bash")

    def _write(self, path: str, text: str) -> None:
        try:
            self.box.write_file(path, text)
        except ValueError as e:  # SandboxError
            raise ToolError(f"{path}: {e}") from None
        except OSError as e:  # a folder in the way, the sandbox's disk full...
            raise ToolError(f"{path}: {e.strerror or e}") from None

    def _close_box(self) -> None:
        if self.box is not None:
            self.box.close()
            self.box = None

    def _retire_box(self) -> None:
        """Done with the agent's sandbox: closed on the pool's thread (off the reset's path), or here."""
        box, self.box = self.box, None
        if box is not None and self._pool is not None and not self._pool.closed:
            self._pool.retire(box)
        elif box is not None:
            box.close()

    def close(self) -> None:
        self._close_box()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        super().close()

    # ---- pickling ---------------------------------------------------------------------------------------
    def _run_tool(self, call: Any) -> ToolResult:
        self._calls.append(call)
        return super()._run_tool(call)

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the sandbox (processes, a uid socket) and the pool of ready ones (a thread): the task, the
        tool calls so far, the counters. The copy makes its own pool at its next reset."""
        return {**self.__dict__, "box": None, "_pool": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Open a fresh sandbox on the same task (pristine tree plus the bug) and replay this episode's tool calls
        on it, so the copy's tree holds the same edits as the original's when it was pickled. Tests are rerun
        for what they leave in the tree but not graded again (the pass ratio so far is restored as it was); a
        ``bash`` command whose effect depends on time or chance may leave a different tree."""
        self.__dict__.update(state)
        if self.task is None or not self._started:
            return
        self.box = self._open_box()
        self._apply_bug()
        for call in self._calls:
            if call.name == "run_tests":
                self._pytest([str(t) for t in call.arguments.get("tests") or []], summary=False)
            elif call.name != "submit":
                with contextlib.suppress(ToolError):  # it failed the same way the first time
                    getattr(self, f"tool_{call.name}")(**call.arguments)

    def walkthrough(self) -> list[str] | None:
        """The gold fix: apply the task's gold patch with bash, then submit."""
        if self.task is None:
            return None
        command = "patch -p1 -s <<'AGENTENV_EOF'\n" + self.task.patch.rstrip("\n") + "\nAGENTENV_EOF"
        return [tool_call_text("bash", {"command": command}), tool_call_text("submit")]


def _open_tree_box(backend: str, command_timeout: float, memory_mb: int, pristine: Path) -> Any:
    """A fresh sandbox holding a copy of ``pristine`` (a function of its own: the pool's thread must not hold the
    env)."""
    from agentenv.sandbox import Limits, open_sandbox

    limits = Limits(wall_seconds=command_timeout, memory_mb=memory_mb)
    return open_sandbox(pristine, backend=backend, limits=limits)


def _open_library_box(backend: str, command_timeout: float, memory_mb: int, library: str) -> Any:
    """A fresh sandbox holding a copy of ``library``'s pristine tree (fetched when it is not in the cache)."""
    from agentenv.envs.swe.sources import fetch_source

    return _open_tree_box(backend, command_timeout, memory_mb, fetch_source(library))


def _hide_the_writes(workdir: Path, pristine: Path, written: Any) -> None:
    """The written files get their pristine times back, and every entry of the tree a fresh ctime after them: neither
    ``ls -lt``, ``find -newer`` nor ``find -cnewer`` points at the files the bug changed (``patch`` in the sandbox
    left them the newest)."""
    for relative in written:
        if (pristine / relative).is_file():  # not a file the bug adds
            status = (pristine / relative).stat()
            os.utime(workdir / relative, ns=(status.st_atime_ns, status.st_mtime_ns), follow_symlinks=False)
    for folder, dirs, files in os.walk(workdir):
        for name in dirs + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(path, stat.S_IMODE(mode))  # the same mode: only the ctime changes


def _line_count(text: str) -> int:
    """Lines as ``wc -l`` and ``grep -n`` count them (a last line without a newline counts too)."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def _line_start(text: str, line: int) -> int:
    """Where 1-based line ``line`` of ``text`` starts (``len(text)`` past the end), newlines counted chunk by chunk:
    no list of lines is ever made."""
    need, at, chunk = line - 1, 0, 1 << 16
    while need > 0 and at < len(text):
        stop = min(len(text), at + chunk)
        count = text.count("\n", at, stop)
        if count < need:
            need, at = need - count, stop
            continue
        for _ in range(need):
            at = text.index("\n", at, stop) + 1
        need = 0
    return at if need == 0 else len(text)


def _numbered(text: str, first: int, last: int, budget: int) -> tuple[str, int]:
    """Lines ``first..last`` of ``text`` numbered like ``cat -n``, as many as fit in ``budget`` characters (a line
    longer than that is cut), and the number of the first line not shown."""
    shown: list[str] = []
    at, n = _line_start(text, first), first
    while n <= last and at < len(text) and budget > 0:
        stop = text.find("\n", at)
        stop = len(text) if stop < 0 else stop
        line = text[at : min(stop, at + budget)] + (" [... line cut]" if stop - at > budget else "")
        shown.append(f"{n:6d}\t{line}")
        budget -= len(shown[-1]) + 1
        at, n = stop + 1, n + 1
    return "\n".join(shown), n
