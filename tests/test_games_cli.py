"""`agentenv list / info / check / play` on multi-agent games (agentenv.make_multi)."""

import json

import pytest

pytest.importorskip("pettingzoo")

import agentenv
from agentenv.envs.games import GAMES
from agentenv.envs.games.nim import NimGame
from agentenv.testing import check_game
from tests.test_cli import agentenv_cli, invoke

GAME_IDS = [f"AgentEnv/{name}" for name in GAMES]


class NimThatCrashesOnBytes(NimGame):
    """Breaks the game contract: a turn of bytes raises instead of being an invalid turn."""

    def step(self, action):
        if isinstance(action, bytes):
            raise ValueError("cannot read bytes")
        super().step(action)


def expert_moves(game_id, seed, seat):
    """The turns an expert in ``seat`` takes against an expert, as a person would type them."""
    env = agentenv.make_multi(game_id)
    env.reset(seed=seed)
    moves = []
    for agent in env.agent_iter():
        _, _, terminated, truncated, _ = env.last()
        move = None if terminated or truncated else env.unwrapped.expert_action(agent)
        if agent == seat and move is not None:
            moves.append(move)
        env.step(move)
    return moves


def test_list_shows_every_game_with_its_api_and_agents():
    result = invoke("list")
    assert result.exit_code == 0, result.output
    assert "multi-agent games" in result.output
    for game_id in GAME_IDS:
        assert game_id in result.output
    nim_row = next(line for line in result.output.splitlines() if "AgentEnv/Nim-h2m3-v0" in line)
    assert "AEC" in nim_row and "player_0, player_1" in nim_row and "heaps=2" in nim_row
    friends_row = next(line for line in result.output.splitlines() if "AgentEnv/MutualFriends-v0" in line)
    assert "parallel" in friends_row


def test_list_family_games_shows_only_games():
    result = invoke("list", "--family", "games")
    assert result.exit_code == 0, result.output
    assert "AgentEnv/Nim-v0" in result.output and "KeyDoor" not in result.output


def test_info_shows_the_spec_knobs_agents_and_each_agents_first_observation():
    result = invoke("info", "AgentEnv/Nim-h5m15-v0", "--seed", "2", "-k", "reward=dense")
    assert result.exit_code == 0, result.output
    assert "games" in result.output and "Nim, 5 heaps of 1-15" in result.output and "API: AEC" in result.output
    assert "heaps=5" in result.output and "max_heap=15" in result.output and "reward='dense'" in result.output
    assert "max_invalid=3" in result.output  # a default from the constructor
    for agent in ("player_0", "player_1"):
        assert f"first observation of {agent}" in result.output
    assert "Your move." in result.output and "Waiting for player_0." in result.output


def test_info_of_a_simultaneous_game_shows_each_private_list():
    result = invoke("info", "MutualFriends-v0")
    assert result.exit_code == 0, result.output
    env = agentenv.make_multi("AgentEnv/MutualFriends-v0", parallel=True)
    env.reset(seed=0)
    assert "API: parallel" in result.output
    for agent in env.possible_agents:
        assert f"Your friends: {', '.join(env.lists[agent])}." in result.output


def test_check_passes_for_every_game():
    result = invoke("check", *GAME_IDS)
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output and result.output.count("PASS") == len(GAME_IDS)


def test_check_game_runs_pettingzoos_tests_and_the_parallel_ones_for_simultaneous_games():
    turn_based = check_game("AgentEnv/Nim-v0")
    simultaneous = check_game("AgentEnv/MutualFriends-v0")
    for name in ("pettingzoo api_test", "pettingzoo seed_test", "bad turns are invalid turns"):
        assert name in turn_based.passed and name in simultaneous.passed
    assert "pettingzoo parallel_api_test" in simultaneous.passed
    assert "pettingzoo parallel_api_test" not in turn_based.passed
    assert not any("NumPy" in note for note in turn_based.notes + simultaneous.notes)


def test_check_exits_1_for_a_game_that_crashes_on_a_bad_turn():
    agentenv.register_multi("CheckTestNimCrashesOnBytes-v0", NimThatCrashesOnBytes, family="test")
    result = invoke("check", "AgentEnv/CheckTestNimCrashesOnBytes-v0")
    assert result.exit_code == 1, result.output
    assert "FAIL AgentEnv/CheckTestNimCrashesOnBytes-v0" in result.output
    assert "bad turns are invalid turns" in result.output and "cannot read bytes" in result.output


@pytest.mark.parametrize(
    "game_id, seed, seat",
    [
        ("AgentEnv/Nim-v0", 0, "player_0"),
        ("MutualFriends-v0", 3, "player_1"),
        ("AgentEnv/ProposerSolver-v0", 2, "solver_0"),
        ("AgentEnv/Debate-v0", 0, "debater_1"),  # the seat that defends the correct answer on seed 0
    ],
)
def test_play_a_seat_against_the_expert_to_the_end(game_id, seed, seat):
    moves = expert_moves(game_id, seed, seat)
    script = "\n".join([":help", ":hint", *moves]) + "\n"
    result = invoke("play", game_id, "--seed", str(seed), "--seat", seat, "--opponent", "expert", input=script)
    assert result.exit_code == 0, result.output
    assert f"You are {seat}" in result.output and "game over: success" in result.output
    assert ":expert (the expert's move)" in result.output


def test_play_against_a_random_opponent_reports_invalid_turns_and_quits():
    result = invoke("play", "AgentEnv/Nim-v0", "--seed", "1", "--opponent", "random", input="fly away\n:quit\n")
    assert result.exit_code == 0, result.output
    assert "Invalid turn" in result.output and "game abandoned" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["play", "AgentEnv/Nim-v0", "--seat", "player_9"], "seat='player_9' is not allowed"),
        (["play", "AgentEnv/Nim-v0", "--opponent", "smart"], "opponent='smart' cannot play a game"),
        (["play", "AgentEnv/KeyDoor-v0", "--seat", "player_0"], "--seat and --opponent are for multi-agent games"),
    ],
)
def test_bad_play_options_exit_2_with_a_clear_message(args, message):
    result = agentenv_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())


def test_eval_on_a_game_prints_win_draw_loss_rates_with_95_cis(tmp_path):
    out = tmp_path / "eval.json"
    result = invoke("eval", "AgentEnv/Nim-v0", "--policy", "optimal", "--opponent", "random", "--episodes", "40",
                    "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "optimal against random on AgentEnv/Nim-v0" in result.output and "95% CI" in result.output
    for row in ("win rate", "draw rate", "loss rate", "invalid rate"):
        assert row in result.output
    summary = json.loads(out.read_text())
    assert summary["games"] == 40 and summary["wins"] >= 36 and summary["win_ci_low"] < summary["win_rate"]


def test_eval_seats_a_model_at_a_game():
    result = invoke("eval", "AgentEnv/Nim-h2m3-v0", "--policy", "model:tiny", "--opponent", "expert",
                    "--episodes", "2", "--batch-size", "2", "--max-new-tokens", "4")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "model:tiny against expert" in result.output and "2 games" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "AgentEnv/Nim-v0", "--policy", "random", "--opponent", "smart"], "opponent='smart' cannot play"),
        (["eval", "AgentEnv/Nim-v0", "--policy", "walkthrough"], "policy='walkthrough' cannot play"),
        (["eval", "AgentEnv/KeyDoor-v0", "--opponent", "random"], "--opponent is for multi-agent games"),
    ],
)
def test_bad_eval_options_on_games_exit_2_with_a_clear_message(args, message):
    result = agentenv_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())
