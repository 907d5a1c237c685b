"""SWE tasks: mutation operators, the task format, pinned sources, the builder end to end, the shipped set.

Fetching sources runs ``pip download`` against PyPI (once per test session: the cache is per session).
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from agentenv.envs.swe import sources
from agentenv.envs.swe.build import (
    Baseline,
    build_tasks,
    candidates,
    grade,
    local_runner,
    parse_junit,
    problem_statement,
    run_tests,
)
from agentenv.envs.swe.mutate import OPERATORS, MutationError, apply_mutation, mutation_sites
from agentenv.envs.swe.sources import LIBRARIES, SourceError, fetch_source, get_library, prepare_task_tree
from agentenv.envs.swe.tasks import (
    DEFAULT_TASKS,
    PatchError,
    SWETask,
    TaskFormatError,
    apply_patch,
    difficulty_tier,
    load_tasks,
    patch_stats,
    save_tasks,
    unified_diff,
)
from agentenv.errors import ConfigError

# ---- mutation operators on real code ------------------------------------------------------------------------

# toolz 1.2.0, itertoolz.py (abridged), with its formatting and comments.
TOOLZ = textwrap.dedent(
    '''\
    import itertools
    import logging

    log = logging.getLogger(__name__)


    def remove(predicate, seq):
        """ Return those items of sequence for which predicate(item) is False """
        return itertools.filterfalse(predicate, seq)


    def unique(seq, key=None):
        seen = set()
        seen_add = seen.add
        if key is None:
            for item in seq:
                if item not in seen:
                    seen_add(item)
                    yield item


    def isiterable(x):
        try:
            iter(x)
            return True
        except TypeError:
            return False


    def last(seq):
        return tail(1, seq)[0]


    def partition_all(n, seq):
        args = [iter(seq)] * n
        it = itertools.zip_longest(*args, fillvalue=no_pad)
        prev = next(it)
        for item in it:
            yield prev
            prev = item
        if prev[-1] is no_pad:
            lo, hi = 0, n  # binary search for the end of the last partition
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if prev[mid] is no_pad:
                    hi = mid
                else:
                    lo = mid
            yield prev[:lo + 1]
        else:
            yield prev


    def count(seq):
        log.debug("counting %s", seq)
        return sum(1 for i in seq)


    class Pair:
        def __repr__(self) -> str:
            return "Pair(%r, %r)" % (self.a, self.b)

        def total(self, scale: int = 1) -> int:
            total = self.a
            total += self.b
            return total * scale


    if __name__ == "__main__":
        print(count([1, 2]) < 3)
    '''
)


def sites(operator, source=TOOLZ):
    return {(m.original, m.replacement): m for m in mutation_sites(source, "toolz/itertoolz.py", [operator])}


def changed_lines(before, after):
    diff = unified_diff("x.py", before, after)
    return [line[0] + line[1:].strip() for line in diff.splitlines()[2:] if line[:1] in "+-"]


@pytest.mark.parametrize(
    "operator, old_line, new_line",
    [
        ("compare_flip", "if item not in seen:", "if item in seen:"),
        ("compare_flip", "if key is None:", "if key is not None:"),
        ("compare_flip", "while hi - lo > 1:", "while hi - lo >= 1:"),
        ("off_by_one", "return tail(1, seq)[0]", "return tail(2, seq)[0]"),
        ("off_by_one", "return tail(1, seq)[0]", "return tail(1, seq)[-1]"),
        ("off_by_one", "yield prev[:lo + 1]", "yield prev[:(lo + 1) + 1]"),
        ("off_by_one", "mid = (lo + hi) // 2", "mid = (lo + hi) // 1"),
        ("drop_statement", "seen_add(item)", "pass"),
        ("drop_statement", "prev = item", "pass"),
        ("wrong_return", "return True", "return False"),
        ("wrong_return", "return itertools.filterfalse(predicate, seq)", "return None"),
        ("swap_args", "return itertools.filterfalse(predicate, seq)", "return itertools.filterfalse(seq, predicate)"),
        ("negate_condition", "if prev[-1] is no_pad:", "if not (prev[-1] is no_pad):"),
        ("negate_condition", "while hi - lo > 1:", "while not (hi - lo > 1):"),
        ("arith_swap", "yield prev[:lo + 1]", "yield prev[:lo - 1]"),
        ("arith_swap", "total += self.b", "total -= self.b"),
        ("arith_swap", "mid = (lo + hi) // 2", "mid = (lo + hi) / 2"),
    ],
)
def test_operator_gives_the_minimal_edit(operator, old_line, new_line):
    mutants = {apply_mutation(TOOLZ, m) for m in mutation_sites(TOOLZ, "toolz/itertoolz.py", [operator])}
    # one line out, one in: the rest of the file keeps its formatting and comments
    assert [f"-{old_line}", f"+{new_line}"] in [changed_lines(TOOLZ, mutant) for mutant in mutants]


def test_bool_op_swap_and_negation_of_not():
    source = "def f(a, b):\n    if not a and b:  # both\n        return 1\n    return 0\n"
    swapped = apply_mutation(source, sites("bool_op_swap", source)["and", "or"])
    assert swapped == source.replace("not a and b", "not a or b")
    negated = apply_mutation(source, sites("negate_condition", source)["not a and b", "not (not a and b)"])
    assert "if not (not a and b):  # both" in negated
    bare = "def g(a):\n    while not a:\n        a = step(a)\n"
    assert apply_mutation(bare, sites("negate_condition", bare)["not a", "a"]) == bare.replace("not a:", "a:")


def test_skipped_code_has_no_sites():
    everything = mutation_sites(TOOLZ, "toolz/itertoolz.py")
    lines = TOOLZ.splitlines()
    mutated = {lines[m.line - 1].strip() for m in everything}
    assert 'return "Pair(%r, %r)" % (self.a, self.b)' not in mutated  # __repr__
    assert 'log.debug("counting %s", seq)' not in mutated  # logging
    assert "print(count([1, 2]) < 3)" not in mutated  # if __name__ == "__main__"
    assert '""" Return those items of sequence for which predicate(item) is False """' not in mutated
    annotated = "def f(n: Annotated[int, 3] = 1) -> Literal[0]:\n    return n\n"
    assert {(m.original, m.replacement) for m in mutation_sites(annotated, "m.py", ["off_by_one"])} == {
        ("1", "2"),
        ("1", "0"),
    }
    # the first binding of a name is never dropped (that only makes a NameError)
    assert ("seen = set()", "pass") not in sites("drop_statement")
    assert ("total = self.a", "pass") not in sites("drop_statement")


def test_sites_are_deterministic_and_cover_every_operator():
    first = mutation_sites(TOOLZ, "toolz/itertoolz.py")
    assert first == mutation_sites(TOOLZ, "toolz/itertoolz.py")
    assert first == sorted(first, key=lambda m: (m.line, m.col, m.end_line, m.end_col, m.operator, m.replacement))
    assert {m.operator for m in first} == set(OPERATORS) - {"bool_op_swap"}


def test_columns_are_characters_after_non_ascii_text():
    source = 'def f(name, n):\n    if name == "café" and n < 3:\n        return n - 1\n'
    flip = sites("compare_flip", source)["<", "<="]
    mutant = apply_mutation(source, flip)
    assert 'if name == "café" and n <= 3:' in mutant


def test_string_concatenation_is_not_swapped_and_bad_fits_raise():
    source = "def f(s, n):\n    return 'a' + s, n + 1\n"
    assert list(sites("arith_swap", source)) == [("+", "-")]
    site = sites("arith_swap", source)["+", "-"]
    with pytest.raises(MutationError, match="reads"):
        apply_mutation(source.replace("n + 1", "n * 1"), site)


# ---- diffs ------------------------------------------------------------------------------------------------------


def test_unified_diff_round_trips_without_final_newline_and_with_crlf(tmp_path):
    before = "a = 1\r\nb = 2\r\nc = 3"
    after = "a = 1\r\nb = 3\r\nc = 3"
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_bytes(before.encode())
    diff = unified_diff("pkg/m.py", before, after)
    assert diff.startswith("--- a/pkg/m.py\n+++ b/pkg/m.py\n")
    assert patch_stats(diff) == (2, 1)
    assert apply_patch(tmp_path, diff) == ["pkg/m.py"]
    assert (tmp_path / "pkg" / "m.py").read_bytes() == after.encode()
    last_line = unified_diff("pkg/m.py", after, after[:-1] + "4")
    assert "\\ No newline at end of file" in last_line
    apply_patch(tmp_path, last_line)
    assert (tmp_path / "pkg" / "m.py").read_bytes() == b"a = 1\r\nb = 3\r\nc = 4"


def test_a_patch_that_does_not_fit_changes_nothing(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\ny = 2\n")
    (tmp_path / "n.py").write_text("z = 1\n")
    good = unified_diff("n.py", "z = 1\n", "z = 2\n")
    bad = unified_diff("m.py", "x = 1\ny = 5\n", "x = 1\ny = 6\n")
    with pytest.raises(PatchError, match=r"m\.py"):
        apply_patch(tmp_path, good + bad)
    assert (tmp_path / "n.py").read_text() == "z = 1\n"
    with pytest.raises(PatchError, match="inside"):
        apply_patch(tmp_path, unified_diff("../escape.py", "a\n", "b\n"))


# ---- the task format ----------------------------------------------------------------------------------------

SWE_BENCH_RECORD = {
    "repo": "astropy/astropy",
    "instance_id": "astropy__astropy-12907",
    "base_commit": "d16bfe05a744909de4b27f5875fe0d4ed41ce607",
    "patch": "diff --git a/astropy/modeling/separable.py b/astropy/modeling/separable.py\n--- a/astropy/modeling/"
    "separable.py\n+++ b/astropy/modeling/separable.py\n@@ -242,7 +242,7 @@ def _cstack(left, right):\n"
    "         cright = _coord_matrix(right, 'right', noutp)\n     else:\n         cright = np.zeros((noutp, "
    "right.shape[1]))\n-        cright[-right.shape[0]:, -right.shape[1]:] = 1\n+        cright[-right.shape[0]:,"
    " -right.shape[1]:] = right\n \n     return np.hstack([cleft, cright])\n \n",
    "test_patch": "diff --git a/astropy/modeling/tests/test_separable.py b/astropy/modeling/tests/test_separable.py\n",
    "problem_statement": "Modeling's `separability_matrix` does not compute separability correctly for nested "
    "CompoundModels\n",
    "hints_text": "",
    "created_at": "2022-03-03T15:14:54Z",
    "version": "4.3",
    "FAIL_TO_PASS": '["astropy/modeling/tests/test_separable.py::test_separable[compound_model6-result6]", '
    '"astropy/modeling/tests/test_separable.py::test_separable[compound_model9-result9]"]',
    "PASS_TO_PASS": '["astropy/modeling/tests/test_separable.py::test_coord_matrix"]',
    "environment_setup_commit": "298ccb478e6bf092953bca67a3d29dc6c35f6752",
    "difficulty": "15 min - 1 hour",
}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def our_task(**changes):
    task = SWETask(
        instance_id="toolz-1.2.0-00000000",
        repo="toolz",
        version="1.2.0",
        base_commit=LIBRARIES["toolz"].base_commit,
        problem_statement="toolz: `last` gives wrong results\n",
        FAIL_TO_PASS=["toolz/tests/test_itertoolz.py::test_last"],
        PASS_TO_PASS=["toolz/tests/test_itertoolz.py::test_first"],
        patch=unified_diff("toolz/itertoolz.py", "x\n", "y\n"),
        bug_patch=unified_diff("toolz/itertoolz.py", "y\n", "x\n"),
        test_command=LIBRARIES["toolz"].test_command,
        test_paths=list(LIBRARIES["toolz"].test_paths),
        difficulty="hard",
        mutation={"operator": "off_by_one", "file": "toolz/itertoolz.py", "line": 1},
        created_by="test",
    )
    return dataclasses.replace(task, **changes)


def test_load_reads_swe_bench_records_and_ours(tmp_path):
    path = write_jsonl(tmp_path / "tasks.jsonl", [SWE_BENCH_RECORD, our_task().to_record()])
    swe, ours = load_tasks(path)
    assert swe.FAIL_TO_PASS[1] == "astropy/modeling/tests/test_separable.py::test_separable[compound_model9-result9]"
    assert swe.PASS_TO_PASS == ["astropy/modeling/tests/test_separable.py::test_coord_matrix"]
    assert swe.version == "4.3" and swe.difficulty == "medium" and swe.bug_patch == ""
    assert swe.extra == {
        "hints_text": "",
        "created_at": "2022-03-03T15:14:54Z",
        "environment_setup_commit": "298ccb478e6bf092953bca67a3d29dc6c35f6752",
    }
    assert ours == our_task()
    save_tasks([swe, ours], tmp_path / "again.jsonl")
    assert load_tasks(tmp_path / "again.jsonl") == [swe, ours]
    assert json.loads((tmp_path / "again.jsonl").read_text().splitlines()[0])["hints_text"] == ""


@pytest.mark.parametrize(
    "change, field",
    [
        ({"FAIL_TO_PASS": 5}, "FAIL_TO_PASS"),
        ({"FAIL_TO_PASS": "[not json"}, "FAIL_TO_PASS"),
        ({"FAIL_TO_PASS": []}, "FAIL_TO_PASS"),
        ({"PASS_TO_PASS": [1, 2]}, "PASS_TO_PASS"),
        ({"patch": None}, "patch"),
        ({"difficulty": "trivial"}, "difficulty"),
        ({"mutation": [1]}, "mutation"),
        ({"version": ["1"]}, "version"),
        ({"instance_id": " "}, "instance_id"),
    ],
)
def test_bad_records_name_the_line_and_field(tmp_path, change, field):
    record = {**our_task().to_record(), **change}
    path = write_jsonl(tmp_path / "tasks.jsonl", [SWE_BENCH_RECORD, record])
    with pytest.raises(TaskFormatError, match=rf"tasks\.jsonl:2: .*'{field}'"):
        load_tasks(path)


def test_missing_fields_duplicates_and_broken_json_are_named(tmp_path):
    record = our_task().to_record()
    del record["problem_statement"]
    with pytest.raises(TaskFormatError, match=r":1: missing required field\(s\) \['problem_statement'\]"):
        load_tasks(write_jsonl(tmp_path / "a.jsonl", [record]))
    with pytest.raises(TaskFormatError, match=r":3: field 'instance_id'='toolz-1.2.0-00000000' repeats line 1"):
        load_tasks(
            write_jsonl(tmp_path / "b.jsonl", [our_task().to_record(), SWE_BENCH_RECORD, our_task().to_record()])
        )
    (tmp_path / "c.jsonl").write_text('{"instance_id": \n')
    with pytest.raises(TaskFormatError, match=r"c\.jsonl:1: not valid JSON"):
        load_tasks(tmp_path / "c.jsonl")


def test_difficulty_tiers_follow_patch_size_and_failing_tests():
    one_line = unified_diff("m.py", "a\nb\nc\n", "a\nB\nc\n")
    three_lines = unified_diff("m.py", "a\nb\nc\nd\n", "a\nB\nC\nD\n")
    assert difficulty_tier(one_line, 5) == "easy"
    assert difficulty_tier(one_line, 4) == difficulty_tier(one_line, 2) == "medium"
    assert difficulty_tier(one_line, 1) == "hard"
    assert difficulty_tier(three_lines, 5) == "hard"
    assert difficulty_tier(one_line + unified_diff("n.py", "a\n", "b\n"), 5) == "hard"


def test_task_command_appends_quoted_node_ids():
    task = our_task()
    command = task.command(["toolz/tests/test_itertoolz.py::test_x[a b]"], junitxml="r.xml")
    assert command.startswith("PYTHONPATH=. PYTEST_DISABLE_PLUGIN_AUTOLOAD=1")
    assert command.endswith("--junitxml=r.xml 'toolz/tests/test_itertoolz.py::test_x[a b]'")
    assert task.command().endswith("toolz/tests toolz/sandbox/tests")


# ---- running tests ------------------------------------------------------------------------------------------


def test_junit_outcomes_have_pytest_node_ids(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_demo.py").write_text(
        textwrap.dedent(
            """\
            import pytest

            @pytest.fixture
            def broken():
                raise RuntimeError("fixture down")

            @pytest.mark.parametrize("n", [1, 2])
            def test_param(n):
                assert n == 1

            class TestGroup:
                def test_method(self):
                    assert {"a": 1} == {"a": 2}

                def test_error(self, broken):
                    pass

            def test_skip():
                pytest.skip("later")
            """
        )
    )
    command = f"{sys.executable} -m pytest -p no:cacheprovider"
    outcomes, result = run_tests(tmp_path, command, ["tests"], local_runner, 60)
    assert result.returncode == 1
    assert {k: v.status for k, v in outcomes.items()} == {
        "tests/test_demo.py::test_param[1]": "passed",
        "tests/test_demo.py::test_param[2]": "failed",
        "tests/test_demo.py::TestGroup::test_method": "failed",
        "tests/test_demo.py::TestGroup::test_error": "error",
        "tests/test_demo.py::test_skip": "skipped",
    }
    assert "assert 2 == 1" in outcomes["tests/test_demo.py::test_param[2]"].message
    assert not (tmp_path / ".agentenv-junit.xml").exists()
    selected, _ = run_tests(tmp_path, command, ["tests/test_demo.py::test_param[2]"], local_runner, 60)
    assert list(selected) == ["tests/test_demo.py::test_param[2]"]
    assert parse_junit("<testsuites><testsuite/></testsuites>") == {}


def test_env_invocation_reports_every_status_on_stdout(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_r.py").write_text(
        textwrap.dedent(
            """\
            import pytest

            @pytest.mark.parametrize("s", ["x", "a - b", "y"], ids=["x", "a - b", "[1]-y"])
            def test_a(s):
                assert s == "x"

            @pytest.mark.xfail
            def test_xf():
                assert 0

            @pytest.fixture
            def bad():
                raise RuntimeError("down")

            def test_err(bad):
                pass

            class TestK:
                def test_m(self):
                    pass
            """
        )
    )
    test_command = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -p no:cacheprovider"
    task = our_task(test_command=test_command, test_paths=["tests"])
    result = local_runner(tmp_path, sources.test_invocation(task), 60)
    assert sources.parse_test_report(result.output) == {
        "tests/test_r.py::test_a[x]": "passed",
        "tests/test_r.py::test_a[a - b]": "failed",
        "tests/test_r.py::test_a[[1]-y]": "failed",
        "tests/test_r.py::test_xf": "xfail",
        "tests/test_r.py::test_err": "error",
        "tests/test_r.py::TestK::test_m": "passed",
    }
    selected = local_runner(tmp_path, sources.test_invocation(task, ["tests/test_r.py::test_a[a - b]"]), 60)
    assert sources.parse_test_report(selected.output) == {"tests/test_r.py::test_a[a - b]": "failed"}


def test_runner_kills_the_whole_process_group_on_timeout(tmp_path):
    start = time.monotonic()
    result = local_runner(tmp_path, "sleep 60 & echo $! > child.pid; wait", 1.0)
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - start < 15
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{child}/stat").exists():
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":  # killed, not yet reaped by init
            break
        time.sleep(0.1)
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"


LAST_TRACEBACK = """tmp_path = PosixPath('/tmp/pytest-of-root/pytest-7/test_last0')

    def test_last(tmp_path):
>       assert last([1, 2, 3]) == 4

toolz/tests/test_x.py:12:
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _

seq = [1, 2, 3]

    def last(seq):
>       return tail(2, seq)[0]
E       assert 3 == 4

toolz/itertoolz.py:40: AssertionError"""


def test_problem_statement_quotes_tests_not_code():
    from agentenv.envs.swe.build import TestOutcome

    failures = [
        (
            "toolz/tests/test_x.py::test_last",
            TestOutcome("failed", "assert 3 == 4\n +  where 3 = last([1, 2, 3])", LAST_TRACEBACK),
        ),
        ("toolz/tests/test_x.py::test_first", TestOutcome("failed", "TypeError: 'NoneType' object at 0x7f3a2b1c")),
    ]
    text = problem_statement(get_library("toolz"), failures, roots=["/tmp/scratch"])
    assert text.splitlines()[0] == "toolz: `last`, `first` give wrong results"
    assert "Calling `last([1, 2, 3])` now returns `3`; expected `4`." in text
    assert "toolz/tests/test_x.py:12: assert last([1, 2, 3]) == 4" in text  # the test's own line
    assert "tmp_path = PosixPath('<tmp>/test_last0')" in text  # with its arguments, run-specific paths cut
    assert "tail(2, seq)" not in text and "itertoolz.py" not in text  # never a library frame
    assert "0x…" in text and "0x7f3a2b1c" not in text
    assert "- `toolz/tests/test_x.py::test_first`" in text


# ---- pinned sources -----------------------------------------------------------------------------------------


def test_fetch_source_refuses_a_wrong_hash(tmp_path):
    wrong = dataclasses.replace(LIBRARIES["parse"], sha256="0" * 64)
    with pytest.raises(SourceError, match=r"sha256 mismatch for parse-1\.22\.4\.tar\.gz.*expected 0{64}"):
        fetch_source(wrong, tmp_path)
    assert not (tmp_path / "swe" / "sdists" / "parse-1.22.4.tar.gz").exists()
    assert not (tmp_path / "swe" / "src" / "parse-1.22.4").exists()


def test_fetch_source_extracts_once_and_unknown_libraries_are_named():
    tree = fetch_source("parse")
    assert (tree / "parse" / "__init__.py").is_file() and (tree / "tests").is_dir()
    mtime = tree.stat().st_mtime_ns
    assert fetch_source("parse") == tree and tree.stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match=r"library='pares'.*Did you mean 'parse'"):
        fetch_source("pares")


def test_every_pinned_library_names_existing_paths():
    for lib in LIBRARIES.values():
        assert re.fullmatch(r"[0-9a-f]{64}", lib.sha256)
        assert lib.sdist == f"{lib.name}-{lib.version}.tar.gz"
        assert "python -m pytest" in lib.test_command
        assert not any(os.path.isabs(p) or ".." in p for p in (lib.pythonpath, *lib.test_paths, *lib.package_paths))


# ---- the builder, end to end --------------------------------------------------------------------------------


def test_build_on_parse_gives_validated_tasks(tmp_path):
    out = tmp_path / "tasks.jsonl"
    tasks = build_tasks(["parse"], per_library=3, seed=1, out=out, workers=2, progress=False)
    assert len(tasks) == 3 and load_tasks(out) == tasks
    assert len({t.instance_id for t in tasks}) == 3
    task = tasks[0]
    assert 1 <= len(task.FAIL_TO_PASS) <= 20 and set(task.FAIL_TO_PASS).isdisjoint(task.PASS_TO_PASS)
    assert patch_stats(task.patch)[1] == 1 and task.difficulty in ("easy", "medium", "hard")
    # independently of the builder's own validation: the buggy tree fails every FAIL_TO_PASS test
    tree = prepare_task_tree(task, tmp_path / "tree")
    outcomes, _ = run_tests(tree, task.test_command, task.tests, local_runner, 120)
    graded = grade(outcomes, task)
    assert graded["FAIL_TO_PASS_failed"] == task.FAIL_TO_PASS and graded["PASS_TO_PASS_failed"] == []
    for t in tasks:
        added = [line[1:].strip() for line in t.bug_patch.splitlines() if line.startswith("+") and line[1:].strip()]
        removed = [line[1:].strip() for line in t.patch.splitlines() if line.startswith("+") and line[1:].strip()]
        assert all(line not in t.problem_statement for line in added[1:] + removed[1:])  # [0] is the +++ header


def test_candidates_are_seeded_and_interleave_operators():
    tree = fetch_source("parse")
    everything = {"parse/__init__.py": dict.fromkeys(range(1, 2000), frozenset({"tests/test_parse.py::test_x"}))}
    baseline = Baseline({"tests/test_parse.py::test_x": None}, everything, 1.0)
    lib = get_library("parse")
    first, again, other = (candidates(lib, tree, baseline, seed) for seed in (0, 0, 1))
    assert first == again and first != other
    assert [m.operator for m in first[: len(OPERATORS)]] == list(OPERATORS)


# ---- the shipped task set -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load_tasks(DEFAULT_TASKS)


def test_shipped_set_is_large_varied_and_does_not_leak(shipped):
    libraries = Counter(t.repo for t in shipped)
    assert len(shipped) >= 100 and len(libraries) >= 4, libraries
    assert {t.difficulty for t in shipped} == {"easy", "medium", "hard"}
    assert len({t.instance_id for t in shipped}) == len(shipped)
    for task in shipped:
        assert task.repo in LIBRARIES and task.base_commit == LIBRARIES[task.repo].base_commit
        assert 1 <= len(task.FAIL_TO_PASS) <= 20 and len(task.PASS_TO_PASS) <= 50
        mutated = [line[1:] for line in task.bug_patch.splitlines()[2:] if line.startswith("+")]
        original = [line[1:] for line in task.patch.splitlines()[2:] if line.startswith("+")]
        for line in mutated + original:  # lines of 4+ characters: a lone ")" is no leak
            assert len(line.strip()) < 4 or line.strip() not in task.problem_statement, (task.instance_id, line)
        assert task.mutation["operator"] not in task.problem_statement
        assert difficulty_tier(task.patch, len(task.FAIL_TO_PASS)) == task.difficulty


@pytest.mark.slow  # one pip download and three test runs per library: ~15 s
def test_shipped_tasks_sample_breaks_and_gold_fixes(shipped, tmp_path):
    first = {}
    for task in shipped:
        first.setdefault(task.repo, task)
    for repo, task in first.items():
        tree = prepare_task_tree(task, tmp_path / repo)
        outcomes, _ = run_tests(tree, task.test_command, task.tests, local_runner, 120)
        graded = grade(outcomes, task)
        assert graded["FAIL_TO_PASS_failed"] == task.FAIL_TO_PASS, task.instance_id
        assert graded["PASS_TO_PASS_failed"] == [], task.instance_id
        apply_patch(tree, task.patch)
        outcomes, _ = run_tests(tree, task.test_command, task.tests, local_runner, 120)
        graded = grade(outcomes, task)
        assert graded["FAIL_TO_PASS_failed"] == graded["PASS_TO_PASS_failed"] == [], task.instance_id
        # the env's way (stdout summary, no report file) agrees
        statuses = sources.parse_test_report(local_runner(tree, sources.test_invocation(task, task.tests), 120).output)
        assert statuses == dict.fromkeys(task.tests, "passed"), task.instance_id


def test_cli_validates_a_task_file(tmp_path):
    bad = our_task(instance_id="parse-bad", repo="parse", version="1.22.4", base_commit="")
    write_jsonl(tmp_path / "bad.jsonl", [bad.to_record()])
    done = subprocess.run(
        [sys.executable, "-c", "from agentenv.envs.swe.cli import app; app()", "validate-tasks", "bad.jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "parse-bad" in done.stdout + done.stderr
