"""Self-play on a game (tiny model): the opponent pool samples by recency and stays frozen, only the learner's seat is
trained, and a self-play recipe runs end to end."""

import json
import random

import pytest
import torch

pytest.importorskip("pettingzoo")

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.errors import ConfigError
from agentenv.models import tiny_model
from agentenv.policies.rl import RLConfig
from agentenv.policies.selfplay import OpponentPool, SelfPlayTrainer, expert_demonstrations
from agentenv.policies.selfplay_config import SelfPlayConfig
from agentenv.recipes.config import load_recipe
from agentenv.recipes.report import read_metrics

NIM = "AgentEnv/Nim-h2m3-v0"


def make_trainer(selfplay=None, **rl):
    model, tokenizer = tiny_model(seed=0)
    config = RLConfig(**{"algorithm": "grpo", "iterations": 2, "episodes": 8, "group_size": 2, "train_tasks": 50,
                         "max_new_tokens": 4, "num_envs": 4, "lr": 1e-3, **rl})  # fmt: skip
    games = [agentenv.make_multi(NIM) for _ in range(config.num_envs)]
    selfplay = selfplay or SelfPlayConfig(pool_size=2, pool_every=1, random_share=0.5)
    return SelfPlayTrainer(config, selfplay, model, tokenizer, games, ChatFormat(tokenizer), seed=0, env_id=NIM)


def test_pool_draws_snapshots_in_proportion_to_recency_and_keeps_the_newest():
    model, _ = tiny_model(seed=0)
    pool = OpponentPool(3, "linear")
    for iteration in (0, 2, 4, 6):
        pool.add(iteration, model)
    assert [it for it, _ in pool.snapshots] == [2, 4, 6]  # the oldest left when the fourth came
    rng = random.Random(0)
    counts = [0, 0, 0]
    for _ in range(6000):
        counts[pool.draw(rng)] += 1
    assert [c / 6000 for c in counts] == pytest.approx([1 / 6, 2 / 6, 3 / 6], abs=0.02)
    latest = OpponentPool(3, "latest")
    latest.snapshots = pool.snapshots
    assert {latest.draw(rng) for _ in range(100)} == {2}


def test_snapshots_are_frozen_while_the_learner_trains():
    trainer = make_trainer(algorithm="ppo")  # the tiny model only forfeits: PPO's per-turn advantages still train it
    trainer.iteration()  # snapshot of iteration 0 taken, then an update
    ((taken, weights),) = trainer.pool.snapshots
    before = {k: v.clone() for k, v in weights.items()}
    learner_before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    opponent_before = {k: v.detach().clone() for k, v in trainer.opponent_model.state_dict().items()}
    trainer.iteration()
    assert taken == 0 and trainer.pool.names() == ["iteration 0", "iteration 1"]
    assert all(torch.equal(before[k], v) for k, v in trainer.pool.snapshots[0][1].items())
    assert not all(torch.equal(learner_before[k], v) for k, v in trainer.model.state_dict().items())  # it trained
    assert not any(p.requires_grad for p in trainer.opponent_model.parameters())
    loaded = trainer.loaded
    if loaded is not None:  # the opponent model holds a snapshot's weights, never the learner's updates
        snapshot = dict(trainer.pool.snapshots)[loaded]
        for k, v in trainer.opponent_model.state_dict().items():
            assert torch.equal(v, snapshot[k].to(v.dtype))
    else:
        assert all(torch.equal(opponent_before[k], v) for k, v in trainer.opponent_model.state_dict().items())


def test_training_ends_on_the_weights_that_won_most_selection_games():
    """Candidates: the start, every pool_every iterations, the last. The start is played by the expert (the policy
    swapped for it while the start is judged), the trained tiny model only forfeits: the start's weights are kept."""
    from agentenv.multi_rollout import ScriptedSeat

    trainer = make_trainer(
        SelfPlayConfig(pool_size=2, pool_every=2, random_share=0.5, select_games=8), iterations=3, algorithm="ppo"
    )  # the tiny model only forfeits: PPO still trains it
    start = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    learner, trainer.policy = trainer.policy, ScriptedSeat("expert", seed=0)
    expert_rate = trainer.consider()
    trainer.policy = learner
    for _ in range(3):
        metrics = trainer.iteration()
    assert [c["iteration"] for c in trainer.selection] == [0, 2, 3]  # the start, the snapshot due, the last
    assert metrics["select_win_rate"] == trainer.selection[-1]["win_rate"] < expert_rate
    trained = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    assert not all(torch.equal(start[k], v) for k, v in trained.items())
    kept = trainer.keep_best()
    assert kept["kept"] == 0 and kept["win_rate"] == expert_rate and kept["games"] == 8
    assert all(torch.equal(start[k], v) for k, v in trainer.model.state_dict().items())


def test_without_selection_games_training_ends_on_the_last_weights():
    trainer = make_trainer(iterations=1, algorithm="ppo")
    trainer.iteration()
    trained = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.keep_best() is None and trainer.selection == []
    assert all(torch.equal(trained[k], v) for k, v in trainer.model.state_dict().items())


def test_only_the_learners_seat_is_returned_for_training():
    trainer = make_trainer(episodes=8, group_size=2)
    trajectories = trainer.collect(0)
    plan = trainer.plan(0)
    assert len(trajectories) == len(plan) == len(trainer.last_games) == 8
    games = trainer.last_games
    for trajectory, (seed, seat, _), (record, played_seat, opponent) in zip(trajectories, plan, games, strict=True):
        assert trajectory.seed == seed and trajectory.task_id == seat == played_seat
        assert trajectory is record.trajectories[seat]
        other = next(a for a in record.trajectories if a != seat)
        assert record.seats[seat] == trainer.policy.name and record.seats[other] != trainer.policy.name
        assert record.seats[other] == ("scripted:random" if opponent == "random" else opponent)
    groups = [plan[i : i + 2] for i in range(0, 8, 2)]
    assert all(len({(seed, seat, opp) for seed, seat, opp in g}) == 1 for g in groups)  # one seed, seat, opponent
    assert {g[0][1] for g in groups} == {"player_0", "player_1"}  # seats alternate between groups


def test_illegal_moves_are_the_learners_invalid_turns_with_the_penalty():
    trainer = make_trainer(SelfPlayConfig(random_share=1.0))  # the random player never ends a game before its turn
    trajectories = trainer.collect(0)  # the tiny model's random weights write no legal move
    turns = [t for trajectory in trajectories for t in trajectory.turns]
    assert turns and all(t.invalid_action for t in turns)
    for trajectory in trajectories:  # three invalid turns in a row forfeit: -0.1 each, and the loss
        assert trajectory.episode_return == pytest.approx(-0.1 * len(trajectory.turns) - 1.0)
        assert not trajectory.success


def test_expert_demonstrations_are_the_experts_legal_moves():
    games = [agentenv.make_multi(NIM)]
    chats = expert_demonstrations(games, 4, seed=0)
    assert len(chats) == 4
    for chat in chats:
        assert chat[0]["role"] == "system" and chat[1]["role"] == "user"
        moves = [m["content"] for m in chat if m["role"] == "assistant"]
        assert moves and all(m.startswith("take ") for m in moves)
        assert not any("Invalid turn" in m["content"] for m in chat if m["role"] == "user")


RECIPE = {
    "name": "selfplay-tiny",
    "env": {"id": NIM},
    "model": {"name": "tiny", "num_threads": 1},
    "sft": {"episodes": 4, "epochs": 1, "batch_size": 4},
    "rl": {
        "algorithm": "grpo",
        "iterations": 2,
        "episodes": 4,
        "group_size": 2,
        "train_tasks": 20,
        "max_new_tokens": 4,
        "num_envs": 4,
    },
    "selfplay": {"pool_size": 2, "pool_every": 1, "elo_games": 2},
    "eval": {"episodes": 4, "max_new_tokens": 4, "num_envs": 4},
}


def test_a_selfplay_recipe_runs_two_iterations_end_to_end(tmp_path):
    from agentenv.recipes.run import run_recipe

    recipe = load_recipe({**RECIPE, "output": {"dir": str(tmp_path / "run"), "tensorboard": False}})
    results = run_recipe(recipe)
    labels = {f"{stage} vs {o}" for stage in ("before", "after SFT", "after") for o in ("random", "expert")}
    assert labels <= set(results["evaluations"])
    for label in labels:
        summary = results["evaluations"][label]
        assert summary["games"] + summary["errors"] == 4
        assert summary["win_ci_low"] <= summary["win_rate"] <= summary["win_ci_high"]
        assert sum(summary["outcomes"].values()) == summary["wins"] and len(summary["outcomes"]) == summary["games"]
    # the same game seeds and seats in every evaluation: RL's rise over SFT is paired game by game
    assert set(results["evaluations"]["after vs random"]["outcomes"]) == {
        "1000000/player_0",
        "1000000/player_1",
        "1000001/player_0",
        "1000001/player_1",
    }
    for opponent in ("random", "expert"):
        after, before = (results["evaluations"][f"{s} vs {opponent}"] for s in ("after", "after SFT"))
        rise = results["rises"][opponent]
        assert rise["n"] == 4 and rise["low"] <= rise["difference"] <= rise["high"]
        assert rise["difference"] == pytest.approx((after["wins"] - before["wins"]) / 4)
    assert {"after", "iteration 0", "iteration 1", "random", "expert"} <= set(results["elo"])
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["elo"] == pytest.approx(results["elo"])
    rl = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rl = [row for row in rl if row.get("stage") == "rl"]
    assert len(rl) == 2 and all("win_rate_all" in row for row in rl)
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_a_resumed_selfplay_run_plays_the_same_pool_and_ends_with_the_same_weights(tmp_path):
    """Two iterations, then --resume to four, against four uninterrupted: the checkpoint holds the opponent pool,
    so iterations 3-4 draw the same snapshots (every group plays the pool: random_share 0) and train alike."""
    from safetensors.torch import load_file

    from agentenv.recipes.run import run_recipe

    selfplay = {
        **RECIPE["selfplay"],
        "random_share": 0.0,
        "elo_games": 0,
        "eval_opponents": ["random"],
        "select_games": 2,
    }  # the selection so far is in the checkpoint too
    base = {**RECIPE, "eval": {**RECIPE["eval"], "before": False, "after_sft": False}, "selfplay": selfplay}

    def run(folder: str, iterations: int, resume: bool = False) -> dict:
        data = {**base, "rl": {**base["rl"], "iterations": iterations},
                "output": {"dir": str(tmp_path / folder), "tensorboard": False}}  # fmt: skip
        return run_recipe(load_recipe(data), resume=resume)

    whole = run("whole", 4)
    run("resumed", 2)
    pool = json.loads((tmp_path / "resumed" / "checkpoints" / "rl" / "pool" / "pool.json").read_text())
    assert pool == {"iterations": [0, 1]}  # pool_size 2, a snapshot every iteration
    resumed = run("resumed", 4, resume=True)
    assert [c["iteration"] for c in resumed["selection"]["candidates"]] == [0, 1, 2, 3, 4]
    assert resumed["selection"] == whole["selection"]
    rows = {
        name: [m for m in read_metrics(tmp_path / name / "metrics.jsonl") if m["stage"] == "rl"]
        for name in ("whole", "resumed")
    }
    assert [m["step"] for m in rows["resumed"]] == [1, 2, 3, 4]
    for a, b in zip(rows["whole"], rows["resumed"], strict=True):
        assert a["pool"] == b["pool"] and a["mean_return"] == pytest.approx(b["mean_return"])
    whole = load_file(str(next((tmp_path / "whole" / "final").glob("*.safetensors"))))
    resumed = load_file(str(next((tmp_path / "resumed" / "final").glob("*.safetensors"))))
    assert all(torch.allclose(whole[k], resumed[k], atol=1e-6) for k in whole)  # the kept weights, alike


def test_selfplay_recipes_name_what_is_wrong():
    with pytest.raises(ConfigError, match=r"env.id"):
        load_recipe({**RECIPE, "env": {"id": "AgentEnv/KeyDoor-s2k0d1-v0"}})
    with pytest.raises(ConfigError, match=r"env.id"):  # a game in a single-agent recipe
        load_recipe({k: v for k, v in RECIPE.items() if k != "selfplay"})
    with pytest.raises(ConfigError, match="'rl' section"):
        load_recipe({k: v for k, v in RECIPE.items() if k != "rl"})
    with pytest.raises(ConfigError, match=r"selfplay.recency"):
        load_recipe({**RECIPE, "selfplay": {"recency": "newest"}})
    with pytest.raises(ConfigError, match=r"selfplay.random_share"):
        load_recipe({**RECIPE, "selfplay": {"random_share": 1.5}})
    with pytest.raises(ConfigError, match=r"env.kwargs.heap"):
        load_recipe({**RECIPE, "env": {"id": NIM, "kwargs": {"heap": 2}}})
