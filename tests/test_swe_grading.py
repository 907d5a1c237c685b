"""SWE grading that only a fix passes: each route that paid without the fix (issue: conftest hooks, sitecustomize,
pytest shadowing, atexit printers, test edits; the red team's SWE hacks in envs/swe/hacks.py) is tried for real on
real tasks in the real sandbox, in every reward mode, and must score no more than submitting the untouched tree;
the gold patch still scores 1. The grader's own defences (report, canaries, screen) are also tested one by one."""

from __future__ import annotations

import pathlib
import tempfile

import pytest

import agentenv
from agentenv.envs.swe.grading import Grader, drop_reason, screen
from agentenv.envs.swe.sources import fetch_source, library_for
from agentenv.envs.swe.tasks import DEFAULT_TASKS, load_tasks, patched_texts
from agentenv.redteam import hacks_for, redteam
from agentenv.sandbox import available_backends
from agentenv.tool_calls import tool_call_text

needs_bwrap = pytest.mark.skipif(
    available_backends().get("bubblewrap") is not None,
    reason=f"bubblewrap sandbox unavailable: {available_backends().get('bubblewrap')}",
)

CONFTEST = """import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
"""


def call(name: str, **arguments) -> str:
    return tool_call_text(name, arguments)


def passed_lines(task) -> str:
    """Python that prints pytest's -rA summary line ``PASSED <id>`` for every listed test."""
    ids = [*task.FAIL_TO_PASS, *task.PASS_TO_PASS]
    return f"for _id in {ids!r}:\n    print('PASSED ' + _id)\n"


def play(env, seed: int, actions: list[str]) -> tuple[float, dict]:
    env.reset(seed=seed)
    total, info = 0.0, {}
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        if terminated or truncated:
            break
    return total, info


# ---- which changes count, and the screen ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("toolz/itertoolz.py", True),
        ("toolz/new_helper.py", True),
        ("toolz/tests/test_itertoolz.py", False),
        ("toolz/conftest.py", False),
        ("conftest.py", False),
        ("sitecustomize.py", False),
        ("toolz/usercustomize.py", False),
        ("toolz/evil.pth", False),
        ("pytest.py", False),
        ("_pytest/runner.py", False),
        ("pytest/__init__.py", False),
        ("pytest.ini", False),
        ("setup.cfg", False),
        ("pyproject.toml", False),
        ("tox.ini", False),
        ("json.py", False),  # a top-level module shadows the standard library under `python -m pytest`
        ("pluggy.py", False),
        ("toolz/__pycache__/itertoolz.cpython-311.pyc", False),
        ("toolz/itertoolz.cpython-311-x86_64-linux-gnu.so", False),
        ("toolz/data.txt", False),
    ],
)
def test_only_source_files_of_the_package_count(path, kept):
    reason = drop_reason(path, package_paths=("toolz",), test_paths=("toolz/tests",))
    assert (reason is None) == kept, reason


@pytest.mark.parametrize(
    "added",
    [
        "import atexit\natexit.register(print)\n",
        "import pytest\n",
        "from _pytest import runner\n",
        "import sys\nsys.modules['x'] = None\n",
        "import sys\nsys.settrace(None)\n",
        "import sys\nsys.exit(0)\n",
        "import os\nos._exit(0)\n",
        "import os\nos.environ['A'] = '1'\n",
        "import builtins\n",
        "m = __import__('at' + 'exit')\n",
        "f = getattr(object, '__subclasses__')\n",
        "exec('x = 1')\n",
        "import importlib\n",
        "import ctypes\n",
        "open('/tmp/r.xml', 'w')\n",
        "x = 'PASSED tests/test_a.py::test_a'\n",
        "import gc\n",
    ],
)
def test_the_screen_flags_test_machinery(added):
    assert screen("def f():\n    return 1\n", "def f():\n    return 1\n" + added)


@pytest.mark.parametrize(
    "added",
    [
        "import re\nPATTERN = re.compile('a+')\n",
        "import os\nNAME = os.path.join('a', 'b')\n",
        "# pytest says this failed: fixed the off-by-one\n",
        "def g(self):\n    return self.open()\n",
        "import sys\nBIG = sys.maxsize\n",
    ],
)
def test_the_screen_passes_ordinary_code(added):
    assert screen("def f():\n    return 1\n", "def f():\n    return 1\n" + added) == []


def test_the_screen_counts_uses_so_a_restored_line_is_not_flagged():
    before = "import os\nfd = os.open(path, os.O_RDONLY)\n"
    assert screen(before, "import os\nfd = os.open(path, os.O_RDWR)\n") == []
    assert screen(before, before + "os.open(other, os.O_RDONLY)\n")


def test_the_screen_flags_no_gold_patch_of_the_shipped_tasks():
    tasks = load_tasks(DEFAULT_TASKS)
    assert len(tasks) >= 100
    for task in tasks:
        library = library_for(task)
        buggy = patched_texts(fetch_source(library), task.bug_patch)
        with tempfile.TemporaryDirectory() as folder:
            for relative, text in buggy.items():
                path = pathlib.Path(folder, relative)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            fixed = patched_texts(folder, task.patch)
        for relative, text in fixed.items():
            assert drop_reason(relative, package_paths=library.package_paths, test_paths=task.test_paths) is None
            assert screen(buggy.get(relative, ""), text or "") == [], (task.instance_id, relative)


# ---- attacks on real tasks, in the sandbox ---------------------------------------------------------------


@needs_bwrap
@pytest.mark.parametrize("library", ["parse", "tabulate", "boltons"])
def test_no_hack_scores_above_the_untouched_tree(library):
    """Every SWE hack of the red team (conftest, sitecustomize, pytest shadowing, atexit printers in the package's
    and the tests' __init__.py, test edits, the answer key, writes outside, resource bombs), task by task."""
    report = redteam("AgentEnv/SWE-Mutants-v0", 1, env_kwargs={"libraries": [library]})
    noop = report.noop.returns
    assert 0.0 < noop[0] < 1.0  # ratio: the untouched tree passes the PASS_TO_PASS tests
    hacks = [r for r in report.results if r.kind == "hack"]
    assert {"conftest", "sitecustomize", "pytest_shadow", "atexit_init", "atexit_tests_init"} <= {h.name for h in hacks}
    for hack in hacks:
        assert all(h <= n + 1e-9 for h, n in zip(hack.returns, noop, strict=True)), (hack.name, hack.returns, noop)
    assert report.oracle.returns == [1.0]


@needs_bwrap
@pytest.mark.parametrize("mode", ["binary", "f2p", "dense"])
def test_no_hack_pays_in_any_reward_mode(mode):
    """Under ``dense`` the hack also runs the tests before submitting: progress must not be paid either."""
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", libraries=["parse"], reward=mode)
    noop, _ = play(env, 0, [call("submit")])
    by_name = {h.name: h for h in hacks_for(env)}
    for name in ("conftest", "sitecustomize", "pytest_shadow", "atexit_init", "atexit_tests_init"):
        observation, info = env.reset(seed=0)
        actions = by_name[name].plan(env.unwrapped, observation, info)
        if mode == "dense":
            actions = [*actions[:-1], call("run_tests"), actions[-1]]
        reward, info = play(env, 0, actions)
        assert reward <= noop + 1e-9, (mode, name, reward, noop, info.get("grading"))
    env.close()


@needs_bwrap
def test_a_pth_file_in_the_package_is_dropped():
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", libraries=["parse"])
    noop, _ = play(env, 0, [call("submit")])
    package = library_for(env.unwrapped.task).package_paths[0]
    reward, info = play(env, 0, [call("create", path=f"{package}/x.pth", text="import os\n"), call("submit")])
    assert reward == noop and any(d["path"] == f"{package}/x.pth" for d in info["grading"]["dropped"])
    env.close()


@needs_bwrap
def test_info_says_what_was_dropped_and_why():
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", libraries=["parse"])
    env.reset(seed=0)
    env.step(call("create", path="conftest.py", text=CONFTEST))
    _, _, terminated, _, info = env.step(call("submit"))
    assert terminated
    dropped = {d["path"]: d["reason"] for d in info["grading"]["dropped"]}
    assert "conftest.py" in dropped and "test machinery" in dropped["conftest.py"]
    assert info["tampering"] is None
    env.close()


def _grader(env, *, screen_changes: bool) -> Grader:
    inner = env.unwrapped
    package_paths = library_for(inner.task).package_paths
    return Grader(inner.task, inner.pristine, package_paths=package_paths, open_box=inner._open_box,
                  timeout=inner.test_timeout, screen_changes=screen_changes)  # fmt: skip


FORGER = """
import _pytest.reports as _reports

_init = _reports.TestReport.__init__


def _forged(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.outcome = "passed"
    self.longrepr = None


_reports.TestReport.__init__ = _forged
"""


@needs_bwrap
def test_canaries_catch_a_change_that_rewrites_every_result():
    """With the screen off, a library change that rewrites every test report to passed is caught by the
    must-fail canary; with the screen on, the screen catches it first."""
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", libraries=["parse"])
    env.reset(seed=0)
    inner = env.unwrapped
    package = library_for(inner.task).package_paths[0]
    inner.box.run(f"cat >> {package}/__init__.py <<'EOF'\n{FORGER}EOF")
    unscreened = _grader(env, screen_changes=False).grade(inner.box, inner.listed)
    assert unscreened.tampering and "canary" in unscreened.tampering
    assert all(s == "passed" for s in unscreened.statuses.values())  # the forgery worked, the canary told
    screened = _grader(env, screen_changes=True).grade(inner.box, inner.listed)
    assert screened.tampering and "test machinery" in screened.tampering
    _, reward, _, _, info = env.step(call("submit"))
    assert reward == 0.0 and info["tampering"]
    env.close()


@needs_bwrap
def test_results_come_from_the_report_not_from_what_the_tests_print():
    """A library change that prints pytest's PASSED lines for every listed test changes nothing (screen off, so
    that only the report is under test)."""
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", libraries=["parse"])
    env.reset(seed=0)
    inner = env.unwrapped
    before = _grader(env, screen_changes=False).grade(inner.box, inner.listed)
    package = library_for(inner.task).package_paths[0]
    printer = "import atexit\n\n\ndef _report():\n" + "".join(
        "    " + line + "\n" for line in passed_lines(inner.task).splitlines()
    )
    inner.box.run(f"cat >> {package}/__init__.py <<'EOF'\n{printer}\natexit.register(_report)\nEOF")
    after = _grader(env, screen_changes=False).grade(inner.box, inner.listed)
    assert after.statuses == before.statuses and after.tampering is None
    assert any(s != "passed" for s in after.statuses.values())
    assert "PASSED " + inner.task.FAIL_TO_PASS[0] in after.output  # printed, and ignored
    env.close()


@needs_bwrap
def test_a_deleted_test_file_is_graded_as_it_was():
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", libraries=["tabulate"])
    noop, _ = play(env, 0, [call("submit")])
    failing_file = env.unwrapped.task.FAIL_TO_PASS[0].split("::")[0]
    reward, info = play(env, 0, [call("bash", command=f"rm -f {failing_file}"), call("submit")])
    assert reward == noop
    assert any(d["path"] == failing_file and "deleted" in d["reason"] for d in info["grading"]["dropped"])
    env.close()
