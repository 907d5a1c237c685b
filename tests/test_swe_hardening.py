"""Hardening of the SWE env, its tool calls and its sandbox (issue 15), in the real bubblewrap sandbox on a real task:
bad arguments are invalid turns, long commands run, broken test trees grade, file tools read a bounded amount, and
what a killed process leaves behind is reclaimed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

import agentenv
from agentenv.core import InvalidAction
from agentenv.sandbox import Limits, SandboxError, available_backends, open_sandbox, reclaim_leftovers
from agentenv.spaces import ToolCall
from agentenv.tool_calls import MAX_ARGUMENT_CHARS, MAX_ARGUMENT_DEPTH, tool_call_text

pytestmark = pytest.mark.skipif(
    available_backends().get("bubblewrap") is not None,
    reason=f"bubblewrap sandbox unavailable: {available_backends().get('bubblewrap')}",
)
MB = 2**20
FAST = Limits(wall_seconds=20, memory_mb=1024, processes=64)


def call(name: str, **arguments) -> str:
    return tool_call_text(name, arguments)


@pytest.fixture(scope="module")
def swe():
    """One SWE episode shared by the tests that only read or make invalid turns (a long turn limit)."""
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", max_turns=1000, render_mode="ansi")
    env.reset(seed=0)
    yield env
    env.close()


def step(env, action):
    observation, reward, terminated, truncated, info = env.step(action)
    assert isinstance(observation, str) and not truncated
    return observation, reward, terminated, info


def still_works(env) -> None:
    observation, _, _, info = step(env, call("bash", command="echo alive"))
    assert not info["invalid_action"] and observation.endswith("alive\n"), observation


# ---- one decode-then-validate path for every tool call ---------------------------------------------------------


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800", "\\udfff", "\\u001b[31m", "\\u0085", "\\u007f"])
def test_a_control_character_or_surrogate_written_as_a_json_escape_is_an_invalid_turn(swe, escape):
    text = '<tool_call>{"name": "bash", "arguments": {"command": "echo ' + escape + '"}}</tool_call>'
    _, _, terminated, info = step(swe, text)
    assert info["invalid_action"] and not terminated
    assert "arguments.command" in info["invalid_reason"] and "tab, newline" in info["invalid_reason"]
    still_works(swe)


@pytest.mark.parametrize("bad", ["echo \x00", "echo \ud800", "echo \x1b[2J", "\x9b"])
def test_a_parsed_call_is_checked_the_same_way(swe, bad):
    _, _, _, info = step(swe, ToolCall("bash", {"command": bad}))
    assert info["invalid_action"] and "arguments.command" in info["invalid_reason"]
    _, _, _, info = step(swe, ToolCall("run_tests", {"tests": ["tests/test_parse.py", bad]}))
    assert info["invalid_action"] and "arguments.tests[1]" in info["invalid_reason"]
    still_works(swe)


def test_tab_newline_and_carriage_return_are_fine_in_arguments(swe):
    text = "a\tb\r\nc\n"
    _, _, _, info = step(swe, ToolCall("create", {"path": "notes/tabs.txt", "text": text}))
    assert not info["invalid_action"], info
    observation, _, _, _ = step(swe, ToolCall("bash", {"command": "od -c notes/tabs.txt | head -2"}))
    assert "\\t" in observation and "\\r" in observation


def test_deeply_nested_arguments_are_an_invalid_turn_not_a_recursion_error(swe):
    deep = "[" * 900 + "]" * 900  # decodes fine, deeper than any tool needs
    text = '<tool_call>{"name": "run_tests", "arguments": {"tests": ' + deep + "}}</tool_call>"
    _, _, _, info = step(swe, text)
    assert info["invalid_action"] and f"nested deeper than {MAX_ARGUMENT_DEPTH}" in info["invalid_reason"]
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    problem = swe.unwrapped.read_calls(ToolCall("run_tests", {"tests": nested}))  # what step does with a parsed call
    assert isinstance(problem, InvalidAction) and "nested deeper" in problem.reason
    still_works(swe)


@pytest.mark.parametrize(
    "arguments",
    [{"command": 1.5}, {"command": float("nan")}, {"command": b"echo"}, {1: "x"}, {"command": "x", "\x00": "y"}],
    ids=["number", "nan", "bytes", "int-key", "nul-key"],
)
def test_odd_argument_values_are_invalid_turns(swe, arguments):
    assert isinstance(swe.unwrapped.read_calls(ToolCall("bash", arguments)), InvalidAction)
    if not any(isinstance(v, bytes) for v in arguments.values()):  # core's step json.dumps the action to describe it
        _, _, _, info = step(swe, ToolCall("bash", arguments))
        assert info["invalid_action"]


def test_an_odd_tool_name_is_an_invalid_turn(swe):
    for name in (["bash"], None, "bash\x00"):
        _, _, _, info = step(swe, ToolCall(name, {"command": "true"}))
        assert info["invalid_action"]


def test_an_over_long_argument_is_an_invalid_turn_that_states_the_cap(swe):
    _, _, _, info = step(swe, ToolCall("bash", {"command": "#" * (MAX_ARGUMENT_CHARS + 1)}))
    assert info["invalid_action"] and f"{MAX_ARGUMENT_CHARS:,}" in info["invalid_reason"]


def test_a_huge_number_in_a_text_call_is_an_invalid_turn():
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", max_action_length=20_000)
    env.reset(seed=0)
    try:
        huge = "9" * 5000  # more digits than Python converts to an int by default
        text = '<tool_call>{"name": "view", "arguments": {"path": "x", "start": ' + huge + "}}</tool_call>"
        _, _, _, info = step(env, text)
        assert info["invalid_action"]
        as_string = json.dumps({"name": "view", "arguments": '{"path": "x", "start": ' + huge + "}"})
        _, _, _, info = step(env, f"<tool_call>{as_string}</tool_call>")
        assert info["invalid_action"]
    finally:
        env.close()


# ---- long commands never go through argv ----------------------------------------------------------------------


def test_a_200_kb_command_runs(swe):
    filler = "x" * 200_000
    observation, _, _, info = step(swe, ToolCall("bash", {"command": f"echo {filler} | wc -c"}))
    assert not info["invalid_action"] and observation == "exit code: 0\n200001\n", observation[:300]


def test_run_tests_with_20000_test_ids_runs(swe):
    task = swe.unwrapped.task
    ids = [task.PASS_TO_PASS[0]] + [f"tests/no_such_module_{i}.py::test_{i}" for i in range(20_000)]
    observation, _, _, info = step(swe, ToolCall("run_tests", {"tests": ids}))
    assert not info["invalid_action"] and "no_such_module" in observation, observation[:300]
    still_works(swe)


def test_the_sandbox_takes_commands_and_argvs_beyond_the_kernels_argument_limits(tmp_path):
    (tmp_path / "src").mkdir()
    with open_sandbox(tmp_path / "src", limits=FAST) as box:
        command = "echo " + "y" * (1 * MB) + " | wc -c"  # one argument may not exceed 128 KiB
        result = box.run(command)
        assert result.ok and result.stdout == f"{MB + 1}\n", result.output[:300]
        words = [f"w{i}" for i in range(100_000)]
        result = box.run(["python", "-c", "import sys; print(len(sys.argv), sys.argv[-1])", *words])
        assert result.ok and result.stdout == f"{len(words) + 1} w99999\n", result.output[:300]
        result = box.run(["sh", "-c", 'read line; echo "got $line"', "sh", *words], stdin="input\n")
        assert result.stdout == "got input\n", result.output[:300]
        # the command files are gone (a venv under the host's /tmp, as in a CI clone, is also bound in the sandbox's)
        assert ".agentenv-command-" not in box.run("ls -A /tmp").stdout
        beyond = [f"w{i}" for i in range(400_000)]  # beyond ARG_MAX inside too: the command fails, nothing raises
        result = box.run(["python", "-c", "pass", *beyond])
        assert result.exit_code == 126 and "Argument list too long" in result.stderr, result.output[:300]


# ---- a broken test tree grades, with a reason --------------------------------------------------------------


BREAKAGES = {
    "symlink": "ln -sf /etc/passwd {test}",
    "directory": "rm {test} && mkdir {test} && echo 'x = 1' > {test}/test_x.py",
    "fifo": "rm {test} && mkfifo {test}",
    "tests-is-a-file": "rm -rf {tests} && echo x > {tests}",
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_run_tests_and_submit_on_a_broken_test_tree_grade_the_restored_tests(breakage):
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", reward="dense")
    env.reset(seed=0)
    task = env.unwrapped.task
    test = task.FAIL_TO_PASS[0].split("::")[0]
    command = BREAKAGES[breakage].format(test=test, tests=task.test_paths[0])
    try:
        _, _, _, info = step(env, call("bash", command=command))
        assert not info["invalid_action"]
        _, reward, terminated, info = step(env, call("run_tests"))
        assert not info["invalid_action"] and not terminated and reward == 0.0
        observation, reward, terminated, info = step(env, call("submit"))
        assert terminated and not info["success"] and not info["invalid_action"]
        dropped = {d["path"]: d["reason"] for d in info["grading"]["dropped"]}
        broken = test if breakage != "tests-is-a-file" else task.test_paths[0]
        assert broken in dropped and "test" in dropped[broken], dropped
        assert info["tests_passed"] == len(task.PASS_TO_PASS)  # graded on the restored tests
        assert "Not graded" in observation
    finally:
        env.close()


def test_a_source_file_turned_into_a_folder_grades_without_error():
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", reward="binary")
    env.reset(seed=0)
    try:
        command = "rm parse/__init__.py && mkdir parse/__init__.py && echo 'x = 1' > parse/__init__.py/extra.py"
        step(env, call("bash", command=command))
        _, reward, terminated, info = step(env, call("submit"))
        assert terminated and reward == 0.0 and not info["invalid_action"]
        assert "parse/__init__.py/extra.py" in info["grading"]["applied"]
    finally:
        env.close()


def test_a_change_that_cannot_be_applied_grades_0_with_the_reason():
    env = agentenv.make("AgentEnv/SWE-Mutants-v0", reward="ratio")
    env.reset(seed=0)
    try:  # the .pyi stays a file in the graded tree (not a source change), so parse/__init__.pyi/x.py cannot be made
        step(
            env,
            call("bash", command="rm parse/__init__.pyi && mkdir parse/__init__.pyi && touch parse/__init__.pyi/x.py"),
        )
        _, reward, terminated, info = step(env, call("submit"))
        assert terminated and not info["invalid_action"]
        dropped = {d["path"]: d["reason"] for d in info["grading"]["dropped"]}
        assert "could not be applied" in dropped["parse/__init__.pyi/x.py"]
        assert reward == pytest.approx(info["tests_passed"] / info["tests_total"])
    finally:
        env.close()


def test_undecodable_file_names_do_not_reach_the_observation_as_surrogates():
    env = agentenv.make("AgentEnv/SWE-Mutants-v0")
    env.reset(seed=0)
    try:
        step(env, call("bash", command="touch $'tests/\\xfe.py' $'parse/\\xff.py'"))
        observation, _, terminated, info = step(env, call("submit"))
        assert terminated
        observation.encode("utf-8")
        json.dumps(info, ensure_ascii=False).encode("utf-8")
    finally:
        env.close()


# ---- bounded host work per file tool call ----------------------------------------------------------------------


def peak_python_memory(env, action) -> tuple[str, dict, int]:
    """What one step returns, and the peak of the Python heap it allocated (bytes)."""
    tracemalloc.start()
    try:
        observation, _, _, info = step(env, action)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return observation, info, peak


def test_viewing_or_editing_a_20_mb_file_of_newlines_costs_the_host_little(swe):
    step(swe, call("bash", command="head -c 20000000 /dev/zero | tr '\\0' '\\n' > big.txt"))
    for action in (
        call("view", path="big.txt"),
        call("view", path="big.txt", start=10_000_000, end=10_000_010),
        call("insert", path="big.txt", line=5, text="hello"),
        call("str_replace", path="big.txt", old="\n\n\n", new="x"),
    ):
        observation, info, peak = peak_python_memory(swe, action)
        assert not info["invalid_action"] and "bash" in observation and "MiB" in observation, observation[:300]
        assert peak < 100 * MB, (action, peak)
    step(swe, call("bash", command="rm big.txt"))


def test_file_tools_on_a_file_just_under_the_cap_stay_bounded(swe):
    from agentenv.envs.swe.env import MAX_FILE_BYTES

    step(swe, call("bash", command=f"head -c {MAX_FILE_BYTES - 1} /dev/zero | tr '\\0' '\\n' > under.txt"))
    observation, _, peak = peak_python_memory(swe, call("view", path="under.txt", start=3_000_000, end=3_000_002))
    assert observation.split("\n")[:3] == ["3000000\t", "3000001\t", "3000002\t"], observation[:200]
    assert peak < 100 * MB
    observation, _, peak = peak_python_memory(swe, call("view", path="under.txt"))
    assert "view with start=" in observation and peak < 100 * MB, observation[-300:]
    observation, _, peak = peak_python_memory(swe, call("insert", path="under.txt", line=2, text="x"))
    assert "Inserted 1 line(s) after line 2" in observation and peak < 100 * MB
    step(swe, call("bash", command="rm under.txt"))


def test_file_tools_refuse_binary_files_with_a_message(swe):
    step(swe, call("bash", command="printf 'a\\0b\\n' > nul.bin; printf '\\xff\\xfe\\n' > latin.bin"))
    for path in ("nul.bin", "latin.bin"):
        for action in (call("view", path=path), call("str_replace", path=path, old="a", new="b")):
            observation, _, _, info = step(swe, action)
            assert not info["invalid_action"] and "binary" in observation, observation
    step(swe, call("bash", command="rm nul.bin latin.bin"))


def test_file_tools_on_a_fifo_or_device_never_block_the_host(swe):
    step(swe, call("bash", command="mkfifo pipe"))
    for action in (call("view", path="pipe"), call("insert", path="pipe", line=0, text="x")):
        observation, *_ = step(swe, action)
        assert "not a regular file" in observation, observation
    step(swe, call("bash", command="rm pipe"))


def test_sandbox_read_file_reads_at_most_max_bytes(tmp_path):
    (tmp_path / "src").mkdir()
    with open_sandbox(tmp_path / "src", limits=FAST) as box:
        box.run("head -c 3000000 /dev/zero | tr '\\0' a > big.txt")
        with pytest.raises(SandboxError, match="max_bytes=1000"):
            box.read_file("big.txt", max_bytes=1000)
        assert len(box.read_file("big.txt", max_bytes=3_000_000)) == 3_000_000


# ---- observations keep raw bytes without crashing anything --------------------------------------------------


def test_nul_and_ansi_in_bash_output_reach_the_agent_and_crash_nothing(swe):
    observation, _, _, info = step(swe, call("bash", command="printf 'a\\0b\\033[31mred\\033[0m\\n'"))
    assert "a\x00b\x1b[31mred" in observation and not info["invalid_action"]
    assert swe.observation_space.contains(observation)
    json.dumps({"observation": observation, "info": info}, ensure_ascii=False, default=str).encode("utf-8")
    assert isinstance(swe.render(), str)


# ---- crash-safe sandbox folders ----------------------------------------------------------------------------


OWNER = textwrap.dedent(
    """
    import sys, time, warnings
    warnings.simplefilter("ignore")
    from agentenv.sandbox import open_sandbox
    box = open_sandbox(sys.argv[1], base_dir=sys.argv[2])
    box.run("head -c 3000000 /dev/zero > filler")
    print(box.workdir.parent, *box.cgroups, flush=True)
    time.sleep(600)
    """
)


def start_owner(source: Path, base: Path) -> tuple[subprocess.Popen, Path, list[str]]:
    process = subprocess.Popen([sys.executable, "-c", OWNER, str(source), str(base)], stdout=subprocess.PIPE, text=True)
    folder, *cgroups = process.stdout.readline().split()
    return process, Path(folder), cgroups


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def test_a_killed_owners_sandbox_is_reclaimed_by_the_next_sandbox_and_a_live_ones_is_not(tmp_path):
    source, base = tmp_path / "src", tmp_path / "base"
    source.mkdir()
    (source / "a.py").write_text("x = 1\n")
    killed, dead_folder, dead_cgroups = start_owner(source, base)
    alive, live_folder, _ = start_owner(source, base)
    try:
        assert dead_folder.parent == base and (dead_folder / "work" / "filler").exists()
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert dead_folder.exists()  # what SIGKILL leaves behind
        with open_sandbox(source, base_dir=base, limits=FAST) as box:
            assert box.run("cat a.py").stdout == "x = 1\n"
            assert not dead_folder.exists() and not mounted(dead_folder)
            assert not any(Path(c).exists() for c in dead_cgroups)
            assert (live_folder / "work" / "filler").exists()
            assert sorted(base.iterdir()) == sorted([live_folder, box.workdir.parent])
    finally:
        for process in (killed, alive):
            process.kill()
            process.wait()
            process.stdout.close()
        reclaim_leftovers(base)  # the live owner's, killed in turn


def test_agentenv_clean_lists_then_removes_what_a_killed_env_left(tmp_path):
    base = tmp_path / "tmp"
    base.mkdir()
    script = textwrap.dedent(
        """
        import time, warnings
        warnings.simplefilter("ignore")
        import agentenv
        env = agentenv.make("AgentEnv/SWE-Mutants-v0")
        env.reset(seed=0)
        print(env.unwrapped.box.workdir.parent, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "TMPDIR": str(base)})  # fmt: skip
    try:
        folder = Path(owner.stdout.readline().strip())
        assert folder.parent == base and (folder / "work").is_dir()
        listed = reclaim_leftovers(base, dry_run=True)
        assert folder not in [item.path for item in listed]  # a live owner's folder is never touched
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        cli = [sys.executable, "-m", "agentenv.cli", "clean", "--base-dir", str(base)]
        dry = subprocess.run([*cli, "--dry-run"], capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0 and str(folder) in dry.stdout and "would remove" in dry.stdout, dry
        assert folder.exists()
        done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and str(folder) in done.stdout, done
        assert not folder.exists() and not mounted(folder)
        again = subprocess.run(cli, capture_output=True, text=True, timeout=60)
        assert "nothing to clean" in again.stdout
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
        reclaim_leftovers(base)


def test_a_reused_pid_does_not_keep_a_dead_owners_folder(tmp_path):
    """The owner mark holds the process's start time: a new process with the same pid is not its owner."""
    from agentenv.sandbox import _owner_mark

    mark = _owner_mark()
    boot, ns, pid, start = mark.split(".")
    stale = tmp_path / f"agentenv-sandbox-{boot}.{ns}.{pid}.{int(start) - 1}-abcdefgh"
    (stale / "work").mkdir(parents=True)
    live = tmp_path / f"agentenv-sandbox-{mark}-abcdefgh"
    live.mkdir()
    foreign = tmp_path / f"agentenv-sandbox-{boot}.1.{pid}.{start}-abcdefgh"  # another PID namespace: unknown
    foreign.mkdir()
    removed = reclaim_leftovers(tmp_path)
    assert [item.path for item in removed] == [stale]
    assert not stale.exists() and live.exists() and foreign.exists()


def test_the_janitor_runs_at_most_once_a_minute_per_folder(tmp_path):
    from agentenv.sandbox import _owner_mark

    boot, ns, pid, start = _owner_mark().split(".")
    (tmp_path / "src").mkdir()
    with open_sandbox(tmp_path / "src", base_dir=tmp_path / "base", limits=FAST):
        pass
    stale = tmp_path / "base" / f"agentenv-sandbox-{boot}.{ns}.{pid}.{int(start) - 1}-abcdefgh"
    stale.mkdir()
    with open_sandbox(tmp_path / "src", base_dir=tmp_path / "base", limits=FAST):
        assert stale.exists()  # the janitor ran less than a minute ago for this folder
    assert reclaim_leftovers(tmp_path / "base") and not stale.exists()
