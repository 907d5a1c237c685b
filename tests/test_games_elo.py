"""`agentenv play` against a model opponent and `agentenv elo` (a round robin of game players rated on the Elo scale),
with the random `tiny` model and the scripted players on AgentEnv/Nim-h2m3-v0."""

import json

import pytest

pytest.importorskip("pettingzoo")
pytest.importorskip("torch")

import agentenv
from agentenv.models import load_model
from agentenv.policies.checkpoint import atomic_folder
from agentenv.policies.local import TransformersPolicy
from agentenv.policies.rl import write_model
from tests.test_cli import agentenv_cli, invoke

NIM = "AgentEnv/Nim-h2m3-v0"
FAST = ["--max-new-tokens", "8", "--threads", "1"]


@pytest.fixture
def generate_calls(monkeypatch):
    """The prompts (token ids) every TransformersPolicy.generate call got, in order; generation itself is real."""
    calls = []
    original = TransformersPolicy.generate

    def recording(self, prompts, *args, **kwargs):
        calls.append([list(prompt) for prompt in prompts])
        return original(self, prompts, *args, **kwargs)

    monkeypatch.setattr(TransformersPolicy, "generate", recording)
    return calls


@pytest.fixture
def model_loads(monkeypatch):
    """The names TransformersPolicy.from_pretrained loaded, in order (each load is real)."""
    names = []
    original = TransformersPolicy.from_pretrained

    def recording(name="default", *args, **kwargs):
        names.append(name)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(TransformersPolicy, "from_pretrained", recording)
    return names


def expert_first_move(seed):
    env = agentenv.make_multi(NIM)
    env.reset(seed=seed)
    return env.unwrapped.expert_action("player_0")


def test_play_against_a_model_shows_its_turns_and_its_illegal_moves_as_invalid(generate_calls):
    move = expert_first_move(0)
    result = invoke("play", NIM, "--seed", "0", "--opponent", "model:tiny", *FAST, input=move + "\n")
    assert result.exit_code == 0, result.output
    assert "You are player_0" in result.output and "the other seats play model:tiny" in result.output
    # the random model writes no legal move: three invalid turns in a row, each shown, then it forfeits
    assert result.output.count("player_1 (model:tiny):") == 3 == len(generate_calls)
    assert result.output.count("(invalid turn:") == 3
    assert "player_1 forfeits after 3 invalid turns" in result.output and "game over: success" in result.output
    assert "player_1 -1.300" in result.output  # the forfeit and three invalid-turn penalties of 0.1


def test_a_model_opponent_sees_the_conversation_agentenv_eval_gives_it(generate_calls):
    """`eval` game 1 seats the model at player_1 on seed 0 against the expert; `play` with a person typing the
    expert's move at player_0 on seed 0 must prompt the model with the same tokens."""
    result = invoke("eval", NIM, "--policy", "model:tiny", "--opponent", "expert", "--episodes", "2",
                    "--batch-size", "1", *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    in_eval = [prompt for call in generate_calls for prompt in call]
    generate_calls.clear()
    result = invoke("play", NIM, "--seed", "0", "--opponent", "model:tiny", *FAST, input=expert_first_move(0) + "\n")
    assert result.exit_code == 0, result.output
    in_play = [prompt for call in generate_calls for prompt in call]
    assert len(in_play) == 3 and in_eval[-3:] == in_play  # eval's game 0 comes first, with the model at player_0


def test_play_the_second_seat_against_a_model_that_forfeits_before_the_persons_first_turn():
    result = invoke("play", NIM, "--seed", "2", "--seat", "player_1", "--opponent", "model:tiny", *FAST, input="")
    assert result.exit_code == 0, result.output
    assert result.output.count("player_0 (model:tiny):") == 3 and "player_0 forfeits" in result.output
    assert "game over: success, outcome 1, your return 1.000" in result.output


def test_elo_rates_a_round_robin_of_scripted_players_and_a_model(tmp_path):
    out = tmp_path / "elo.json"
    result = invoke("elo", NIM, "expert", "random", "tiny=model:tiny", "--games", "8", "--batch-size", "4",
                    *FAST, "--json", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Elo on {NIM}: 3 players, 8 games a pair" in result.output
    report = json.loads(out.read_text())
    players = {row["player"]: row for row in report["players"]}
    assert [row["player"] for row in report["players"]] == ["expert", "random", "tiny"]  # best rated first
    assert players["expert"]["rating"] > players["random"]["rating"] > players["tiny"]["rating"]
    assert players["tiny"]["spec"] == "model:tiny" and players["tiny"]["invalid_rate"] == 1.0
    assert players["tiny"]["wins"] == 0  # its every turn is illegal: it forfeits every game
    assert {(p["policy"], p["opponent"]) for p in report["pairs"]} == {
        ("expert", "random"), ("expert", "tiny"), ("random", "tiny")
    }  # fmt: skip
    for pair in report["pairs"]:
        assert pair["games"] + pair["errors"] == 8 and pair["wins"] + pair["draws"] + pair["losses"] == pair["games"]
    for row in report["players"]:
        assert row["games"] == 16 and row["wins"] + row["draws"] + row["losses"] == 16
    assert sum(row["wins"] for row in report["players"]) == sum(row["losses"] for row in report["players"])
    for row in report["players"]:
        assert row["player"] in result.output and f"{row['rating']:.0f}" in result.output


def test_elo_plays_a_recipe_runs_folders_and_loads_each_model_once(tmp_path, model_loads):
    """A run folder plays its final/ model; checkpoints/<stage> folders (written as a recipe run writes them) play
    too; two players naming one model share one load."""
    run = tmp_path / "run"
    model, tokenizer = load_model("tiny")
    for folder in (run / "final", run / "checkpoints" / "rl"):
        with atomic_folder(folder) as tmp:
            write_model(model, tokenizer, tmp)
            (tmp / "trainer.json").write_text('{"stage": "final"}')
    result = invoke("elo", NIM, f"run={run}", f"final=model:{run}/final", f"rl={run}/checkpoints/rl", "random",
                    "--games", "2", *FAST, "--json", str(tmp_path / "elo.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(model_loads) == sorted([str((run / "final").resolve()), str((run / "checkpoints" / "rl").resolve())])
    players = {row["player"]: row for row in json.loads((tmp_path / "elo.json").read_text())["players"]}
    assert players["run"]["spec"] == players["final"]["spec"] == f"model:{(run / 'final').resolve()}"
    assert all(row["games"] == 6 for row in players.values())  # 3 opponents, 2 games each


@pytest.mark.parametrize(
    "args, message",
    [
        (["elo", NIM, "expert", "smart"], "PLAYER='smart' cannot play a game; choose one of expert"),
        (["elo", NIM, "expert"], "PLAYER: give at least two players"),
        (["elo", NIM, "a=expert", "a=random"], "PLAYER 'a' is given twice"),
        (["elo", NIM, "expert", "x=model:/no/such/model"], "PLAYER x='model:/no/such/model': no model folder"),
        (["elo", NIM, "expert", "{tmp}"], "holds no model (config.json) and no final/ model of a recipe run"),
        (["elo", "AgentEnv/KeyDoor-v0", "expert", "random"], "No multi-agent game registered as"),
        (["play", NIM, "--opponent", "model:/no/such/model"], "opponent='model:/no/such/model': no model folder"),
    ],
)
def test_bad_players_exit_2_naming_the_argument(args, message, tmp_path):
    result = agentenv_cli(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())
