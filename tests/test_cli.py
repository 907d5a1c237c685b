import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from agentenv.cli import app
from agentenv.rollout import read_jsonl
from tests.conftest import pydocs_missing

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def invoke(*args, input=None):
    return runner.invoke(app, list(args), input=input, env=WIDE)


def agentenv_cli(*args):
    """The installed console script path, through main(), as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "agentenv.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **WIDE},
        timeout=900,
    )


def test_list_shows_every_keydoor_preset_with_reward_modes():
    result = invoke("list")
    assert result.exit_code == 0
    for env_id in ("AgentEnv/KeyDoor-s2k0d1-v0", "AgentEnv/KeyDoor-s8k4d8-v0"):
        assert env_id in result.output
    assert "sparse, dense, ratio" in result.output


def test_info_shows_knobs_instructions_and_a_first_observation():
    result = invoke("info", "AgentEnv/KeyDoor-s5k2d4-v0", "--seed", "3")
    assert result.exit_code == 0
    assert "size=5" in result.output and "nb_keys=2" in result.output and "max_turns=80" in result.output
    assert "golden coin" in result.output and "Goal:" in result.output and "optimal_steps" in result.output


def test_check_passes_for_every_registered_env():
    """Fresh processes check the envs a user has (not this suite's broken test envs): two at once, each every
    other id, so both of CI's cores work. TextWorld presets build their games first (minutes from an empty cache):
    tests/test_textworld.py checks every one of them, so here the smallest stands for the family."""
    import gymnasium

    import agentenv

    users = [i for i in agentenv.env_ids() if not str(gymnasium.registry[i].entry_point).startswith("tests.")]
    ids = [i for i in users if "/TextWorld-" not in i] + ["AgentEnv/TextWorld-w1o1q1-v0"]
    if pydocs_missing():  # its corpus is a system package; conftest skips its own tests naming it
        ids = [i for i in ids if "PyDocs" not in i]
    halves = [ids[0::2], ids[1::2]]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda half: agentenv_cli("check", *half), halves))
    for half, result in zip(halves, results, strict=True):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "FAIL" not in result.stdout and result.stdout.count("PASS") == len(half)


def test_check_exits_1_on_a_contract_breach():
    import tests.test_testing  # noqa: F401  (registers the broken CheckTest envs)

    result = invoke("check", "AgentEnv/CheckTestCrashesOnBadInput-v0")
    assert result.exit_code == 1 and "FAIL" in result.output and "bad actions are invalid turns" in result.output


def test_rollout_writes_episodes_and_prints_metrics(tmp_path):
    out = tmp_path / "walk.jsonl"
    result = invoke(
        "rollout", "AgentEnv/KeyDoor-s3k1d2-v0", "--policy", "walkthrough", "--episodes", "4", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    assert "wrote 4 episodes" in result.output and "walkthrough" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4 and all(r["success"] for r in records)
    assert [r["seed"] for r in records] == [0, 1, 2, 3]
    messages = records[0]["messages"]
    assert messages[0]["role"] == "system" and messages[1]["content"].startswith("Goal:")
    assert [m["role"] for m in messages[2:]] == ["assistant", "user"] * (len(records[0]["turns"]) - 1) + ["assistant"]
    episodes = list(read_jsonl(out))
    assert episodes[0].turns[0].action == records[0]["turns"][0]["action"]
    assert episodes[0].episode_return == 1.0


def test_rollout_plays_a_model_backend(tmp_path):
    out = tmp_path / "model.jsonl"
    result = invoke("rollout", "AgentEnv/KeyDoor-s2k0d1-v0", "--policy", "model:tiny", "--episodes", "2",
                    "-k", "max_turns=2", "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["policy"] for r in records] == ["model:tiny"] * 2 and all(len(r["turns"]) == 2 for r in records)
    assert records[0]["messages"][2]["role"] == "assistant"  # the model's turns, as a chat


def test_rollout_passes_env_kwargs(tmp_path):
    out = tmp_path / "dense.jsonl"
    result = invoke("rollout", "AgentEnv/KeyDoor-v0", "--policy", "walkthrough", "--episodes", "2",
                    "-k", "size=4", "-k", "nb_keys=2", "-k", "reward=dense", "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text().splitlines()[0])
    assert record["task_id"].startswith("keydoor-s4k2") and sum(t["reward"] > 0 for t in record["turns"]) == 5


def test_play_lets_a_person_solve_the_task():
    from agentenv import make

    env = make("AgentEnv/KeyDoor-s3k1d2-v0")
    env.reset(seed=4)
    moves = env.unwrapped.walkthrough()
    result = invoke("play", "AgentEnv/KeyDoor-s3k1d2-v0", "--seed", "4", input="\n".join([":hint", *moves]) + "\n")
    assert result.exit_code == 0, result.output
    assert "You win!" in result.output and "episode over: solved" in result.output


def test_play_reports_invalid_turns_and_quits():
    result = invoke("play", "AgentEnv/KeyDoor-s3k1d2-v0", "--seed", "0", input="fly away\n:quit\n")
    assert result.exit_code == 0
    assert "(invalid)" in result.output and "not solved" in result.output


def test_new_scaffolds_a_plugin_and_never_overwrites(tmp_path):
    result = invoke("new", "demo-env", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    root = tmp_path / "demo-env"
    assert (root / "demo_env" / "env.py").exists() and (root / "tests" / "test_demo_env.py").exists()
    assert '[project.entry-points."agentenv.envs"]' in (root / "pyproject.toml").read_text()
    result = invoke("new", "demo-env", "--dir", str(tmp_path))
    assert result.exit_code != 0 and "already exists" in str(result.exception)


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "AgentEnv/KeyDor-v0"], "Closest registered ids: AgentEnv/KeyDoor-v0"),
        (["info", "AgentEnv/KeyDoor-v0", "-k", "sise=3"], "unknown keyword argument 'sise'"),
        (["rollout", "AgentEnv/KeyDoor-v0", "--policy", "smart"], "policy='smart' is not allowed"),
        (["eval", "AgentEnv/KeyDoor-v0", "--policy", "openai:localhost:8000"], "expected openai:http(s)://HOST"),
        (["rollout", "AgentEnv/KeyDoor-v0", "-k", "size"], "must look like key=value"),
        (["new", "Bad Name"], "plugin name 'Bad Name'"),
    ],
)
def test_user_errors_exit_2_with_a_clear_message(args, message):
    result = agentenv_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())


HELLO_PLUGIN = '''
from typing import Annotated

import typer

from agentenv.terminal import console


def register(app: typer.Typer) -> None:
    @app.command()
    def hello(name: Annotated[str, typer.Option(help="Who to greet")] = "world") -> None:
        """Greet someone (a command from a plugin)."""
        console.print(f"hello {name}")
'''


def command_plugin(tmp_path, entry_points: str):
    """A throwaway distribution on PYTHONPATH: the module hello_plugin and entry points in group agentenv.cli."""
    (tmp_path / "hello_plugin.py").write_text(HELLO_PLUGIN)
    dist = tmp_path / "helloplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: helloplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[agentenv.cli]\n" + entry_points)
    return {**os.environ, **WIDE, "PYTHONPATH": str(tmp_path)}


def test_a_plugin_adds_a_command_through_the_agentenv_cli_entry_point(tmp_path):
    env = command_plugin(tmp_path, "hello = hello_plugin:register\n")
    run = [sys.executable, "-m", "agentenv.cli"]
    result = subprocess.run([*run, "hello", "--name", "plugin"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello plugin"
    listing = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "Greet someone (a command from a plugin)." in listing and "judge-audit" in listing


def test_a_broken_command_plugin_warns_and_the_other_commands_work(tmp_path):
    env = command_plugin(tmp_path, "broken = no_such_module_here:register\nhello = hello_plugin:register\n")
    result = subprocess.run([sys.executable, "-W", "always", "-m", "agentenv.cli", "hello"],
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello world"
    assert "command plugin 'broken'" in result.stderr and "failed to load" in result.stderr


def test_every_layer_contributes_its_commands():
    from agentenv.cli import command_errors

    names = {c.name or c.callback.__name__ for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert not command_errors
    assert {"rollout", "sft-data", "eval", "train", "grid", "demo", "judge-audit", "search", "swe"} <= names


def test_main_makes_openmp_threads_wait_passively_unless_told_otherwise(monkeypatch):
    from agentenv.cli import main

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # restored after the test, whatever main sets
    monkeypatch.setattr(sys, "argv", ["agentenv", "list", "--family", "keydoor"])
    with pytest.raises(SystemExit):
        main()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    with pytest.raises(SystemExit):
        main()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_eval_of_a_model_says_how_many_torch_threads_it_runs():
    result = invoke("eval", "AgentEnv/KeyDoor-s2k0d1-v0", "--policy", "model:tiny", "--episodes", "2",
                    "--max-new-tokens", "4", "--threads", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "torch threads: 1 (as asked)" in result.output
