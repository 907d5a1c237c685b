"""The SWE env end to end, in the real bubblewrap sandbox on real library tasks: tools, grading, rewards, safety."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import agentenv
from agentenv.errors import ConfigError
from agentenv.sandbox import available_backends
from agentenv.spaces import ToolCall
from agentenv.testing import check_env
from agentenv.tool_calls import tool_call_text

pytestmark = pytest.mark.skipif(
    available_backends().get("bubblewrap") is not None,
    reason=f"bubblewrap sandbox unavailable: {available_backends().get('bubblewrap')}",
)


def call(name: str, **arguments) -> str:
    return tool_call_text(name, arguments)


def make(**kwargs):
    return agentenv.make("AgentEnv/SWE-Mutants-v0", **kwargs)


def one_task_per_library(env) -> list[int]:
    """Train-split task seeds: the first task of each library."""
    seeds, seen = [], set()
    for i, task in enumerate(env.unwrapped.by_split["train"]):
        if task.repo not in seen:
            seen.add(task.repo)
            seeds.append(i)
    return seeds


def test_the_gold_patch_solves_a_task_of_every_library():
    env = make()
    seeds = one_task_per_library(env)
    assert len(seeds) >= 4
    for seed in seeds:
        env.reset(seed=seed)
        for action in env.unwrapped.walkthrough():
            _, reward, terminated, _, info = env.step(action)
        assert terminated and info["success"] and reward == 1.0, env.unwrapped.task.instance_id
    env.close()


def test_submitting_the_untouched_tree_scores_by_mode():
    for mode, expected in (("ratio", None), ("binary", 0.0), ("f2p", 0.0)):
        env = make(reward=mode)
        env.reset(seed=0)
        task = env.unwrapped.task
        _, reward, terminated, _, info = env.step(call("submit"))
        assert terminated and not info["success"]
        if expected is None:
            expected = len(task.PASS_TO_PASS) / (len(task.PASS_TO_PASS) + len(task.FAIL_TO_PASS))
        assert reward == pytest.approx(expected), mode
        env.close()


def test_editing_the_tests_does_not_pass_them():
    env = make(reward="binary")
    env.reset(seed=0)
    task = env.unwrapped.task
    files = {t.split("::")[0] for t in task.FAIL_TO_PASS}
    for path in files:  # replace each failing test module by one whose tests all pass trivially
        names = [t.split("::")[-1].split("[")[0] for t in task.FAIL_TO_PASS if t.startswith(path)]
        body = "".join(f"def {n}(*a, **k):\n    pass\n\n" for n in names)
        env.step(call("bash", command=f"cat > {path} <<'EOF'\n{body}EOF"))
    _, reward, _, _, info = env.step(call("submit"))
    assert reward == 0.0 and not info["success"]
    env.close()


def test_file_tools():
    env = make()
    env.reset(seed=0)
    listing, *_ = env.step(call("view", path="."))
    assert "./" in listing and "PKG-INFO" in listing
    created, _, _, _, info = env.step(call("create", path="notes/todo.txt", text="one\ntwo\nthree\n"))
    assert created.startswith("Created") and not info["invalid_action"]
    again, *_ = env.step(call("create", path="notes/todo.txt", text="x"))
    assert again.startswith("Error:") and "already exists" in again
    shown, *_ = env.step(call("view", path="notes/todo.txt", start=2, end=3))
    assert shown == "     2\ttwo\n     3\tthree"
    edited, *_ = env.step(call("str_replace", path="notes/todo.txt", old="two", new="TWO"))
    assert "TWO" in edited
    missing, *_ = env.step(call("str_replace", path="notes/todo.txt", old="four", new="4"))
    assert "does not occur" in missing
    env.step(call("insert", path="notes/todo.txt", line=0, text="zero"))
    assert env.unwrapped.box.read_file("notes/todo.txt") == "zero\none\nTWO\nthree\n"
    for path in ("../../etc/passwd", "/etc/passwd"):
        escaped, _, _, _, info = env.step(call("view", path=path))
        assert escaped.startswith("Error:") and not info["invalid_action"], path
    env.close()


def test_commands_are_sandboxed_and_timed_out_and_the_episode_goes_on():
    env = make(command_timeout=2.0)
    env.reset(seed=0)
    slow, _, terminated, _, info = env.step(call("bash", command="sleep 100"))
    assert "timed out" in slow and not terminated and not info["invalid_action"]
    net, *_ = env.step(
        call("bash", command="python -c \"import socket; socket.create_connection(('1.1.1.1', 53), 1)\"")
    )
    assert "exit code: 1" in net and ("unreachable" in net or "Errno" in net)
    outside, *_ = env.step(call("bash", command="touch /etc/agentenv-swe-probe; echo done"))
    assert not Path("/etc/agentenv-swe-probe").exists() and "Read-only" in outside
    terminated = env.step(call("submit"))[2]
    assert terminated
    env.close()


def test_dense_rewards_sum_to_the_final_ratio():
    env = make(reward="dense")
    env.reset(seed=0)
    task = env.unwrapped.task
    total = 0.0
    _, reward, *_ = env.step(call("run_tests"))  # nothing fixed yet: no progress
    assert reward == pytest.approx(0.0)
    total += reward
    patch = task.patch.rstrip("\n")
    _, reward, *_ = env.step(call("bash", command=f"patch -p1 -s <<'EOF'\n{patch}\nEOF"))
    total += reward
    _, reward, _, _, info = env.step(call("run_tests"))
    assert reward == pytest.approx(len(task.FAIL_TO_PASS) / len(task.tests))  # the fix, paid when tests show it
    total += reward
    _, reward, terminated, _, info = env.step(call("submit"))
    total += reward
    assert terminated and info["success"] and total == pytest.approx(1.0)
    env.close()


def test_close_removes_the_workdir_and_leaves_no_process():
    env = make()
    env.reset(seed=0)
    workdir = env.unwrapped.box.workdir
    env.step(call("bash", command="(sleep 300 &) ; echo started"))
    assert workdir.exists()
    env.close()
    env.close()
    assert not workdir.exists()
    stray = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"sleep 300" in cmdline:
                stray.append(pid)
    assert not stray


def test_registered_id_passes_the_suite_checker():
    report = check_env("AgentEnv/SWE-Mutants-v0", seeds=(0,))
    assert report.ok, report


def test_filters_and_bad_configuration():
    easy = make(difficulty="easy")
    assert all(t.difficulty == "easy" for pool in easy.unwrapped.by_split.values() for t in pool)
    with pytest.raises(ConfigError, match="difficulty"):
        make(difficulty="trivial")
    with pytest.raises(ConfigError, match="libraries"):
        make(libraries=["numpy"])
    with pytest.raises(ConfigError, match="tasks"):
        make(tasks="/no/such/tasks.jsonl")


def test_tool_call_objects_work_like_text_calls():
    env = make()
    env.reset(seed=0)
    a = env.step(ToolCall("bash", {"command": "echo hi"}))[0]
    b = env.step(call("bash", command="echo hi"))[0]
    assert a == b == "exit code: 0\nhi\n"
    env.close()
