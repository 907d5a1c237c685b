"""Multi-agent text games (agentenv.envs.games): PettingZoo's own API tests, bad turns, and the games' rules."""

import math

import numpy as np
import pytest

pytest.importorskip("pettingzoo")
from pettingzoo.test import api_test, parallel_api_test, seed_test

import agentenv
from agentenv import ConfigError, UnknownEnvError
from agentenv.envs.games import GAMES
from agentenv.envs.games.nim import nim_sum, optimal_move
from agentenv.envs.games.proposer_solver import evaluate_task

GAME_IDS = [f"AgentEnv/{name}" for name in GAMES]
PARALLEL_IDS = [i for i in GAME_IDS if agentenv.make_multi(i).metadata["is_parallelizable"]]
TURN_IDS = [i for i in GAME_IDS if i not in PARALLEL_IDS]

# PettingZoo's tests warn that text is not a NumPy array or Box/Discrete space: true, and intended here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Unreadable in any game: empty, too long, not UTF-8, control characters, not text at all.
UNREADABLE = [
    "",
    "   \n\t ",
    "x" * 1_000_000,
    "take 1 from heap 1" * 100_000,
    b"\xff\xfe\x00binary",
    "\ud800 lone surrogate",
    "take 1 from heap 1\x00",
    "\x1b[2J\x1b[H",
    None,
    12,
    {"name": "take", "arguments": {}},
    [["take 1 from heap 1"]],
]
# Readable text, but no move of a command game (chat games take it as a message).
BAD_TURNS = [*UNREADABLE, "拿走 1 个 🎲 ünïcödé", "take 99999999999999999999 from heap 1", "take 1 from heap 1\ntake 2"]


def wilson_lower(wins: int, n: int, z: float = 1.96) -> float:
    """Lower end of the Wilson score interval (95% by default) for a success rate."""
    p = wins / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def play(env, players, seed):
    """Play one game; ``players`` maps agent -> callable(env, agent) -> turn. Returns each agent's total reward."""
    return play_out(env, players, seed)[0]


def play_out(env, players, seed):
    """``play``, also returning each agent's last info (what it saw when the game ended for it)."""
    env.reset(seed=seed)
    totals = dict.fromkeys(env.possible_agents, 0.0)
    finals = {}
    for agent in env.agent_iter(10_000):
        _, reward, terminated, truncated, info = env.last()
        totals[agent] += reward
        finals[agent] = info
        env.step(None if terminated or truncated else players[agent](env, agent))
    return totals, finals


def random_player(seed):
    rng = np.random.default_rng(seed)

    def act(env, agent):
        moves = env.unwrapped.legal_actions(agent)
        return moves[int(rng.integers(len(moves)))]

    return act


def expert(env, agent):
    return env.unwrapped.expert_action(agent)


# ---- every game ----------------------------------------------------------------------------------------------
def test_every_game_is_listed_and_single_agent_make_is_unchanged():
    assert set(GAME_IDS) <= set(agentenv.list_multi())
    assert not set(agentenv.list_multi()) & set(agentenv.env_ids())
    agentenv.make("AgentEnv/KeyDoor-v0").reset(seed=0)


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_pettingzoo_api_test_passes(game_id):
    api_test(agentenv.make_multi(game_id), num_cycles=200)


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_pettingzoo_seed_test_passes(game_id):
    seed_test(lambda: agentenv.make_multi(game_id), num_cycles=100)


@pytest.mark.parametrize("game_id", PARALLEL_IDS)
def test_pettingzoo_parallel_api_test_passes(game_id):
    parallel_api_test(agentenv.make_multi(game_id, parallel=True), num_cycles=100)


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_same_seed_same_game_for_the_same_turns(game_id):
    def transcript(seed):
        env = agentenv.make_multi(game_id, render_mode="ansi")
        play_seed = np.random.default_rng(0)
        seen = []
        env.reset(seed=seed)
        for agent in env.agent_iter(400):
            observation, reward, terminated, truncated, _ = env.last()
            seen.append((agent, str(observation), reward))
            moves = env.unwrapped.legal_actions(agent) if not (terminated or truncated) else []
            env.step(moves[int(play_seed.integers(len(moves)))] if moves else None)
        return seen, env.render()

    assert transcript(5) == transcript(5)
    assert transcript(5) != transcript(6)


@pytest.mark.parametrize("game_id", TURN_IDS)
@pytest.mark.parametrize("bad", BAD_TURNS, ids=range(len(BAD_TURNS)))
def test_any_bad_turn_is_an_invalid_turn_for_that_agent(game_id, bad):
    env = agentenv.make_multi(game_id, invalid_action_penalty=0.25)
    env.reset(seed=1)
    agent = env.agent_selection
    env.step(bad)
    assert env.infos[agent]["invalid_action"] is True
    assert env.infos[agent]["invalid_reason"]
    assert env._cumulative_rewards[agent] == pytest.approx(-0.25)
    assert not any(env.terminations.values())
    assert "Invalid turn" in env.observe(agent)


@pytest.mark.parametrize("game_id", PARALLEL_IDS)
@pytest.mark.parametrize("bad", UNREADABLE, ids=range(len(UNREADABLE)))
def test_any_bad_turn_is_silence_for_that_agent_in_simultaneous_games(game_id, bad):
    env = agentenv.make_multi(game_id, parallel=True, invalid_action_penalty=0.25, reward="dense")
    env.reset(seed=1)
    _, rewards, terminated, _, infos = env.step({"player_0": bad, "player_1": "Hello, who is on your list?"})
    assert infos["player_0"]["invalid_action"] is True and infos["player_0"]["invalid_reason"]
    assert infos["player_1"]["invalid_action"] is False
    assert rewards == {"player_0": -0.25, "player_1": 0.0}
    assert not any(terminated.values()) and env.agents == ["player_0", "player_1"]


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_invalid_turns_only_ever_end_the_game_by_its_rules(game_id):
    env = agentenv.make_multi(game_id)
    env.reset(seed=2)
    for n, _ in enumerate(env.agent_iter(1_000)):
        _, _, terminated, truncated, _ = env.last()
        env.step(None if terminated or truncated else BAD_TURNS[n % len(BAD_TURNS)])
    assert not env.agents, "the game must end (forfeit or its turn limit), never hang or crash"


@pytest.mark.parametrize("field, value", [("reward", "ratio"), ("invalid_action_penalty", -1), ("max_invalid", 0)])
@pytest.mark.parametrize("game_id", GAME_IDS)
def test_common_knobs_are_validated_with_their_names(game_id, field, value):
    with pytest.raises(ConfigError, match=field):
        agentenv.make_multi(game_id, **{field: value})


def test_unknown_games_and_knobs_are_named():
    with pytest.raises(UnknownEnvError, match="AgentEnv/Nim-v0"):
        agentenv.make_multi("AgentEnv/Nmi-v0")
    with pytest.raises(UnknownEnvError, match=r"use agentenv\.make"):
        agentenv.make_multi("AgentEnv/KeyDoor-v0")
    with pytest.raises(ConfigError, match="Did you mean 'heaps'"):
        agentenv.make_multi("AgentEnv/Nim-v0", heap=3)
    with pytest.raises(ConfigError, match="seed"):
        agentenv.make_multi("AgentEnv/Nim-v0").reset(seed=-1)


# ---- Nim -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("heaps", 1), ("heaps", 9), ("max_heap", 0), ("max_heap", 2.5)])
def test_nim_knobs_are_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        agentenv.make_multi("AgentEnv/Nim-v0", **{field: value})


def test_optimal_move_leaves_nim_sum_zero_from_every_winning_position():
    for heaps in np.ndindex(6, 6, 6):
        if nim_sum(heaps) == 0:
            continue
        heap, count = optimal_move(heaps)
        after = list(heaps)
        after[heap] -= count
        assert count >= 1 and after[heap] >= 0 and nim_sum(after) == 0


def test_nim_rule_breaking_moves_are_replayed_and_forfeit_after_max_invalid():
    env = agentenv.make_multi("AgentEnv/Nim-v0", max_invalid=2)
    env.reset(seed=0)
    env.step("take 1 from heap 9")
    assert env.agent_selection == "player_0" and "there is no heap 9" in env.observe("player_0")
    env.step(f"take {env.heaps[0] + 1} from heap 1")
    assert all(env.terminations.values())
    assert env.infos["player_1"]["winner"] == "player_1" and env.infos["player_0"]["forfeit"] == "player_0"
    assert env._cumulative_rewards["player_1"] == 1.0


def test_nim_expert_wins_every_game_that_starts_in_its_favour():
    env = agentenv.make_multi("AgentEnv/Nim-h5m15-v0")
    for seed in range(100):
        env.reset(seed=seed)
        expert_first = nim_sum(env.heaps) != 0
        players = {"player_0": expert, "player_1": random_player(seed)}
        if not expert_first:
            players = {"player_0": random_player(seed), "player_1": expert}
        totals = play(env, players, seed)
        winner = "player_0" if expert_first else "player_1"
        assert totals[winner] == 1.0, f"seed {seed}"


@pytest.mark.parametrize("game_id", ["AgentEnv/Nim-v0", "AgentEnv/Nim-h5m15-v0"])
def test_nim_expert_beats_random_in_either_seat(game_id):
    # From a random start, the expert loses only if the start is lost for it AND the random player then plays
    # perfectly to the end: rare (measured: 996/1000 and 1000/1000 games). Loose bound, but a player that is not
    # perfect fails it (a random one wins about half): the 95% Wilson lower bound of the win rate is above 0.95.
    env = agentenv.make_multi(game_id)
    wins, n = 0, 300
    for seed in range(n):
        seat = seed % 2
        players = {f"player_{seat}": expert, f"player_{1 - seat}": random_player(seed)}
        wins += play(env, players, seed)[f"player_{seat}"] == 1.0
    assert wilson_lower(wins, n) > 0.95, f"{wins}/{n}"


def test_nim_dense_rewards_are_zero_sum_and_sum_to_the_outcome_minus_the_start_potential():
    env = agentenv.make_multi("AgentEnv/Nim-v0", reward="dense", invalid_action_penalty=0.0)
    for seed in range(30):
        env.reset(seed=seed)
        start = 0.5 if nim_sum(env.heaps) else -0.5  # Φ of player_0, who moves first
        totals = play(env, {"player_0": random_player(seed), "player_1": random_player(seed + 1)}, seed)
        assert totals["player_0"] == pytest.approx(-totals["player_1"])
        outcome = 1.0 if totals["player_0"] > 0 else -1.0
        assert totals["player_0"] == pytest.approx(outcome - start)


def test_nim_dense_shaping_charges_a_blunder_at_once():
    env = agentenv.make_multi("AgentEnv/Nim-v0", reward="dense")
    env.reset(seed=0)
    env.heaps[:] = [1, 2, 0]  # player_0 to move from a won position; the win is "take 1 from heap 2"
    env._potential = env._potentials()
    env.step("take 2 from heap 2")  # leaves [1, 0, 0]: the opponent takes the last object
    assert env.rewards == {"player_0": -1.0, "player_1": 1.0}


# ---- Mutual Friends -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("hand_size", 1), ("hand_size", 21), ("max_rounds", 1), ("max_rounds", "6")])
def test_mutual_friends_knobs_are_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        agentenv.make_multi("AgentEnv/MutualFriends-v0", **{field: value})


def test_each_friend_list_is_private_and_exactly_one_name_is_shared():
    env = agentenv.make_multi("AgentEnv/MutualFriends-n12-v0", parallel=True)
    for seed in range(20):
        observations, _ = env.reset(seed=seed)
        mine, theirs = env.lists["player_0"], env.lists["player_1"]
        assert len(mine) == len(theirs) == 12 and set(mine) & set(theirs) == {env.shared}
        assert all(name in observations["player_0"] for name in mine)
        assert not any(name in observations["player_0"] for name in set(theirs) - {env.shared})


@pytest.mark.parametrize("game_id", ["AgentEnv/MutualFriends-v0", "AgentEnv/MutualFriends-n12-v0"])
def test_mutual_friends_experts_always_win_in_two_rounds_and_dense_rewards_sum_to_one(game_id):
    env = agentenv.make_multi(game_id, reward="dense")
    for seed in range(50):
        totals = play(env, {"player_0": expert, "player_1": expert}, seed)
        assert totals == {"player_0": 1.0, "player_1": 1.0}
        assert env.unwrapped.turn == 2


def test_mutual_friends_random_players_rarely_win_without_talking():
    # Random turns: each picks a select among 5 names or a message; both must pick the shared name.
    env = agentenv.make_multi("AgentEnv/MutualFriends-v0")
    n = 300
    wins = sum(play(env, {"player_0": random_player(s), "player_1": random_player(s + n)}, s)["player_0"] == 1.0
               for s in range(n))  # fmt: skip
    assert wilson_lower(n - wins, n) > 0.8, f"{wins}/{n}"


def test_mutual_friends_selections_are_checked_and_a_wrong_one_loses():
    env = agentenv.make_multi("AgentEnv/MutualFriends-v0", parallel=True)
    env.reset(seed=3)
    wrong = next(n for n in env.lists["player_1"] if n != env.shared)
    _, _, _, _, infos = env.step({"player_0": "select Nobody", "player_1": f"select {wrong}"})
    assert "not on your list" in infos["player_0"]["invalid_reason"]
    _, _, _, _, infos = env.step({"player_0": "hi", "player_1": f"select {env.shared}"})
    assert infos["player_1"]["invalid_reason"] == f"you already selected {wrong}"
    _, rewards, terminated, _, infos = env.step({"player_0": f"select {env.shared}", "player_1": "done"})
    assert all(terminated.values()) and rewards == {"player_0": 0.0, "player_1": 0.0}
    assert infos["player_0"]["success"] is False and infos["player_0"]["selected"]["player_1"] == wrong
    assert env.agents == []


def test_mutual_friends_ends_when_the_rounds_run_out():
    env = agentenv.make_multi("AgentEnv/MutualFriends-v0", parallel=True, max_rounds=2)
    env.reset(seed=0)
    env.step({"player_0": "hi", "player_1": "hi"})
    _, _, terminated, _, infos = env.step({"player_0": "hi", "player_1": "hi"})
    assert all(terminated.values()) and infos["player_0"]["reason"] == "out of rounds"


# ---- Negotiation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("items", 1), ("items", 6), ("max_count", 0), ("max_rounds", 31)])
def test_negotiation_knobs_are_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        agentenv.make_multi("AgentEnv/Negotiation-v0", **{field: value})


def test_negotiation_values_are_private_and_make_the_pool_worth_ten_to_each():
    env = agentenv.make_multi("AgentEnv/Negotiation-i5c5-v0")
    for seed in range(20):
        env.reset(seed=seed)
        assert env.values["player_0"] != env.values["player_1"]
        for agent in env.possible_agents:
            assert env.worth(agent, env.counts) == 1.0
        other = ", ".join(f"{i}={v}" for i, v in zip(env.items, env.values["player_1"], strict=True))
        assert other not in env.observe("player_0")


def test_an_accepted_proposal_pays_each_agent_the_exact_value_of_its_share():
    env = agentenv.make_multi("AgentEnv/Negotiation-v0", reward="dense")
    env.reset(seed=4)
    kept = tuple(c // 2 for c in env.counts)
    proposal = " ".join(f"{item}={k}" for item, k in zip(env.items, kept, strict=True))
    env.step(f"propose {proposal}\nA fair half?")
    totals = dict(env.rewards)
    assert "player_0 says: A fair half?" in env.observe("player_1")
    env.step("accept")
    totals = {a: totals[a] + env.rewards[a] for a in totals}
    given = tuple(c - k for c, k in zip(env.counts, kept, strict=True))
    v0, v1 = env.values["player_0"], env.values["player_1"]
    expected = {
        "player_0": sum(v * k for v, k in zip(v0, kept, strict=True)) / 10,
        "player_1": sum(v * g for v, g in zip(v1, given, strict=True)) / 10,
    }
    assert totals == pytest.approx(expected)  # dense: Φ(start) = 0, so the rewards sum to the payoff
    assert env.infos["player_0"]["deal"] == {"player_0": kept, "player_1": given}
    assert env.infos["player_0"]["max_joint_payoff"] >= sum(expected.values())


def test_negotiation_ends_without_a_deal_when_the_turns_run_out():
    env = agentenv.make_multi("AgentEnv/Negotiation-v0", max_rounds=3)
    env.reset(seed=0)
    everything = " ".join(f"{item}={c}" for item, c in zip(env.items, env.counts, strict=True))
    env.step(f"propose {everything}")
    env.step("accept please")  # invalid: the move passes and the turn counts
    assert env.infos["player_1"]["invalid_action"] and env.agent_selection == "player_0"
    env.step(f"propose {everything}")
    assert all(env.terminations.values()) and env.infos["player_0"]["deal"] is None
    assert env.rewards == {"player_0": 0.0, "player_1": 0.0}


@pytest.mark.parametrize(
    "turn, reason",
    [
        ("accept", "no proposal"),
        ("propose book=1", "also hat, ball"),
        ("propose book=1 hat=0 ball=0 sword=1", "no swords"),
        ("propose book=99 hat=0 ball=0", "only"),
        ("propose book=1 book=1 hat=0 ball=0", "named twice"),
        ("I think we should split evenly", "propose ... or accept"),
    ],
)
def test_negotiation_moves_are_checked(turn, reason):
    env = agentenv.make_multi("AgentEnv/Negotiation-v0")
    env.reset(seed=0)
    env.step(turn)
    assert reason in env.infos["player_0"]["invalid_reason"]
    assert env.agent_selection == "player_1"


def test_reference_negotiators_usually_agree():
    env = agentenv.make_multi("AgentEnv/Negotiation-v0")
    n = 200
    deals = sum(play_out(env, {"player_0": expert, "player_1": expert}, s)[1]["player_0"]["deal"] is not None
                for s in range(n))  # fmt: skip
    assert wilson_lower(deals, n) > 0.75, f"{deals}/{n}"


def test_a_cooperative_game_reports_its_outcome_like_the_others():
    from agentenv.multi_rollout import ScriptedSeat, play_game

    env = agentenv.make_multi("AgentEnv/MutualFriends-v0")
    won = play_game(env, {a: ScriptedSeat("expert") for a in env.possible_agents}, seed=0)
    assert won.outcomes and set(won.outcomes.values()) == {1.0}  # experts find the shared friend
    lost = play_game(env, {a: ScriptedSeat("random", seed=1) for a in env.possible_agents}, seed=0)
    assert set(lost.outcomes) == set(env.possible_agents) and set(lost.outcomes.values()) <= {0.0, 1.0}


# ---- Proposer–solver ------------------------------------------------------------------------------------------
PROPOSER_SOLVER = "AgentEnv/ProposerSolver-v0"


@pytest.mark.parametrize(
    "field, value", [("rounds", 1), ("max_operators", 11), ("max_operand", 5), ("target", 0.95), ("target", "half")]
)
def test_proposer_solver_knobs_are_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        agentenv.make_multi(PROPOSER_SOLVER, **{field: value})


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("(12 + 30) * 2 - 7", 77),
        ("-5 * (3 - 10)", 35),
        ("100 * 100 * 100 * 100", 100_000_000),
        ("2 ** 10", "only whole numbers"),
        ("7 / 2", "only whole numbers"),
        ("101 + 1", "numbers go up to 100"),
        ("1 + 1 + 1 + 1 + 1 + 1", "1 to 4 operators"),
        ("42", "1 to 4 operators"),
        ("(1 + 2", "does not parse"),
        ("007 + 1", "does not parse"),
        ("__import__('os')", "only whole numbers"),
        ("1 + " + "(" * 150 + "1" + ")" * 150, "at most 300 characters"),
        ("-" * 120 + "1 + 1", 2),
    ],
)
def test_tasks_are_evaluated_exactly_or_refused_with_a_reason(expression, expected):
    value = evaluate_task(expression, max_operators=4, max_operand=100)
    assert value == expected if isinstance(expected, int) else expected in value


@pytest.mark.parametrize("turn", ["task: 2 ** 10", "task: 1000 + 1", "task: 5", "2 + 2", "task: 1 + 1\ntask: 2 + 2"])
def test_a_malformed_task_is_an_invalid_turn_for_the_proposer_and_is_replayed(turn):
    env = agentenv.make_multi(PROPOSER_SOLVER, invalid_action_penalty=0.3)
    env.reset(seed=0)
    env.step(turn)
    assert env.infos["proposer_0"]["invalid_action"] and env._cumulative_rewards["proposer_0"] == -0.3
    assert env.agent_selection == "proposer_0" and "Invalid turn" in env.observe("proposer_0")


@pytest.mark.parametrize("bad", [*BAD_TURNS, "answer: 1.5", "answer: twelve", "answer: " + "9" * 40, "task: 1 + 1"])
def test_any_bad_answer_is_an_invalid_turn_for_the_solver(bad):
    env = agentenv.make_multi(PROPOSER_SOLVER, invalid_action_penalty=0.25)
    env.reset(seed=0)
    env.step("task: 6 * 7")
    env.step(bad)
    assert env.infos["solver_0"]["invalid_action"] and env._cumulative_rewards["solver_0"] == pytest.approx(-0.25)
    assert env.agent_selection == "solver_0" and env.solved == []


def test_the_solver_is_checked_by_the_numeric_verifier_and_the_proposer_paid_for_half():
    env = agentenv.make_multi(PROPOSER_SOLVER, rounds=4)
    env.reset(seed=0)
    for answer in ["answer: 42", "answer: 41", "answer: 42", "answer: -1"]:
        env.step("task: 6 * 7")
        env.step(answer)
    assert env.solved == [True, False, True, False]
    assert env.infos["proposer_0"]["outcome"] == 1.0 and env.infos["solver_0"]["outcome"] == 0.5


@pytest.mark.parametrize("target, rate, score", [(0.5, 1.0, 0.0), (0.5, 0.0, 0.0), (0.5, 0.25, 0.5), (0.8, 0.8, 1.0)])
def test_the_proposer_scores_by_the_distance_of_the_solve_rate_from_its_target(target, rate, score):
    env = agentenv.make_multi(PROPOSER_SOLVER, target=target)
    assert env.unwrapped.proposer_score(rate) == pytest.approx(score)


def test_an_exact_solver_solves_every_task_so_no_proposer_scores_against_it():
    env = agentenv.make_multi("AgentEnv/ProposerSolver-o8n1000-v0")
    for seed in range(20):
        proposer = expert if seed % 2 else random_player(seed)
        totals, finals = play_out(env, {"proposer_0": proposer, "solver_0": expert}, seed)
        assert finals["solver_0"]["solve_rate"] == 1.0 and totals == {"proposer_0": 0.0, "solver_0": 1.0}


def test_the_expert_proposer_walks_a_staircase_on_the_operator_count():
    env = agentenv.make_multi(PROPOSER_SOLVER, rounds=8)
    env.reset(seed=0)
    assert env.level() == 2
    env.solved = [True, True, False]
    assert env.level() == 3  # 2 -> 3 -> 4 -> 3
    env.solved = [True] * 8
    assert env.level() == env.max_operators


def test_the_staircase_proposer_outscores_a_random_one_against_a_guessing_solver():
    # The random solver solves a task of n operators with probability 1 / (2n + 1): 1/3 at best, so the proposer's
    # best is the easiest tasks. Measured, 400 games each: the expert proposer scores 0.544 (solve rate 0.28), the
    # random one 0.398 (0.21). Here: the difference's 95% interval (normal approximation) is above 0.
    from agentenv.multi_rollout import ScriptedSeat, play_games

    env = agentenv.make_multi(PROPOSER_SOLVER)
    scores = {}
    for kind in ("expert", "random"):
        seating = {"proposer_0": ScriptedSeat(kind), "solver_0": ScriptedSeat("random", seed=3)}
        scores[kind] = np.array([r.outcomes["proposer_0"] for r in play_games([env], seating, seeds=range(200))])
    difference = scores["expert"].mean() - scores["random"].mean()
    spread = 1.96 * math.sqrt(sum(x.var(ddof=1) / len(x) for x in scores.values()))
    assert difference - spread > 0, (difference, spread)


def test_proposer_solver_dense_rewards_sum_to_the_outcome():
    env = agentenv.make_multi(PROPOSER_SOLVER, reward="dense", invalid_action_penalty=0.0)
    for seed in range(20):
        totals, finals = play_out(env, {"proposer_0": expert, "solver_0": random_player(seed)}, seed)
        for agent in env.possible_agents:
            assert totals[agent] == pytest.approx(finals[agent]["outcome"])


def test_a_forfeiting_proposer_scores_zero_and_its_unposed_tasks_count_as_solved():
    env = agentenv.make_multi(PROPOSER_SOLVER, rounds=4, max_invalid=2)
    env.reset(seed=0)
    env.step("task: 6 * 7")
    env.step("answer: 0")
    env.step("no task")
    env.step("no task")
    assert all(env.terminations.values()) and env.infos["proposer_0"]["forfeit"] == "proposer_0"
    assert env.solved == [False, True, True, True] and env.infos["proposer_0"]["outcome"] == 0.0


# ---- Debate ---------------------------------------------------------------------------------------------------
DEBATE = "AgentEnv/Debate-v0"


class PrefersFirst:
    """A judge object that is no PairwiseJudge: anything with ``compare(a, b)`` may judge a debate."""

    def __init__(self):
        self.seen = []

    def compare(self, a, b):
        self.seen.append((a, b))
        return 0.9


@pytest.mark.parametrize(
    "field, value", [("rounds", 0), ("rounds", 6), ("hops", 5), ("context_chars", 50), ("judge", "gpt")]
)
def test_debate_knobs_are_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        agentenv.make_multi(DEBATE, **{field: value})


def test_one_debater_defends_the_correct_answer_the_other_a_value_the_documents_state():
    env = agentenv.make_multi("AgentEnv/Debate-h2r3-v0")
    honest_seats = set()
    for seed in range(20):
        env.reset(seed=seed)
        correct = [a for a, answer in env.answers.items() if answer == env.reference]
        assert len(correct) == 1 and len(set(env.answers.values())) == 2
        honest_seats.add(correct[0])
        wrong = next(answer for answer in env.answers.values() if answer != env.reference)
        assert wrong in env.documents
        for agent in env.possible_agents:  # each sees both answers, not which one is correct
            assert env.answers[agent] in env.observe(agent) and "correct:" not in env.observe(agent)
    assert honest_seats == {"debater_0", "debater_1"}


def test_an_argument_that_does_not_name_the_debaters_answer_is_an_invalid_turn_and_passes():
    env = agentenv.make_multi(DEBATE, invalid_action_penalty=0.2)
    env.reset(seed=0)
    other = env.answers["debater_1"]
    env.step(f"The answer is surely {other}.")
    assert "must name your answer" in env.infos["debater_0"]["invalid_reason"]
    assert env.agent_selection == "debater_1" and env._cumulative_rewards["debater_0"] == -0.2


def test_expert_debaters_quote_the_documents_and_the_correct_side_wins():
    env = agentenv.make_multi("AgentEnv/Debate-h2r3-v0")
    for seed in range(40):
        totals, finals = play_out(env, {"debater_0": expert, "debater_1": expert}, seed)
        honest = next(a for a, answer in env.answers.items() if answer == env.reference)
        assert totals[honest] == 1.0 and finals[honest]["winner"] == honest, f"seed {seed}"


@pytest.mark.parametrize("game_id", [DEBATE, "AgentEnv/Debate-h2r3-v0"])
def test_the_expert_debater_beats_a_random_one(game_id):
    # The expert always wins the correct side (its quote is verified, the random side's at best supports a wrong
    # answer) and wins the wrong side unless the random debater quotes the sentence that states the correct answer.
    # Measured, 400 games: Debate-v0 341 wins, 5 draws (95% CI of the win rate 0.81-0.88), Debate-h2r3-v0 354 wins
    # (0.85-0.91); a random debater against a random one wins 134 of 400 on both. Here the CI's low end clears 0.7.
    from agentenv.multi_rollout import ScriptedSeat, evaluate_games

    evaluation = evaluate_games(agentenv.make_multi(game_id), ScriptedSeat("expert"), ScriptedSeat("random"), games=400)
    summary = evaluation.summary()
    assert summary["win_ci_low"] > 0.7 and summary["loss_ci_high"] < 0.3, summary


def test_any_object_with_compare_judges_and_sees_both_sides_with_documents_and_reference():
    judge = PrefersFirst()
    env = agentenv.make_multi(DEBATE, judge=judge, rounds=1)
    totals = play(env, {"debater_0": expert, "debater_1": expert}, 3)
    assert totals == {"debater_0": 1.0, "debater_1": -1.0}
    a, b = judge.seen[-1]
    assert a.response.startswith(f"Answer: {env.answers['debater_0']}") and a.reference == env.reference
    assert env.documents in a.prompt and a.metadata["answer"] == env.answers["debater_0"]
    assert b.metadata["answer"] == env.answers["debater_1"]


def test_a_pairwise_judge_with_a_model_plugs_in():
    from agentenv.models import tiny_model
    from agentenv.rewards.judges import LocalLM, PairwiseJudge

    env = agentenv.make_multi(DEBATE, judge=PairwiseJudge(LocalLM(tiny_model(), batch_size=2)), rounds=1)
    totals, finals = play_out(env, {"debater_0": expert, "debater_1": expert}, 0)
    preference = finals["debater_0"]["judge_preference"]
    assert 0.0 <= preference <= 1.0 and totals["debater_0"] == -totals["debater_1"]
    assert totals["debater_0"] == (1.0 if preference > 0.5 else -1.0 if preference < 0.5 else 0.0)


def test_debate_dense_rewards_are_zero_sum_and_sum_to_the_outcome():
    env = agentenv.make_multi(DEBATE, reward="dense", invalid_action_penalty=0.0, rounds=3)
    for seed in range(20):
        totals, finals = play_out(env, {"debater_0": expert, "debater_1": random_player(seed)}, seed)
        assert totals["debater_0"] == pytest.approx(-totals["debater_1"])
        assert totals["debater_0"] == pytest.approx(finals["debater_0"]["outcome"])  # Φ(start) = 0 for this judge
