"""Multi-agent games played by policies: one token-exact trajectory per agent, per-agent rewards, invalid turns,
seatings (self-play, frozen snapshot, scripted), and evaluation (win / draw / loss with CIs, Elo-scale ratings)."""

import copy
import json
import math

import pytest

pytest.importorskip("pettingzoo")

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.errors import ConfigError
from agentenv.models import tiny_model
from agentenv.multi_rollout import ScriptedSeat, elo_ratings, evaluate_games, expected_score, play_game, play_games
from agentenv.policies import Generation, Sampling, TransformersPolicy

NIM = "AgentEnv/Nim-v0"
NEGOTIATION = "AgentEnv/Negotiation-v0"


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


class CannedTokens:
    """A token-level runner that always says ``text``, as the canonical ids of the real tokenizer + end of turn: the
    turns are then known in advance, so a game's rewards and conversations can be pinned exactly."""

    def __init__(self, tokenizer, text, name="canned"):
        self.tokenizer, self.text, self.name = tokenizer, text, name
        self.sampling = Sampling(max_new_tokens=16)

    def generate(self, prompts, sampling=None):
        ids = [*self.tokenizer(self.text, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
        return [Generation(list(ids), [-0.25] * len(ids), "stop", self.text) for _ in prompts]


class Recorded:
    """A runner passed through unchanged, keeping every ``generate`` call: its prompts and their generations."""

    def __init__(self, policy, name):
        self.policy, self.name, self.calls = policy, name, []
        self.tokenizer, self.sampling = policy.tokenizer, policy.sampling

    def generate(self, prompts, sampling=None):
        generations = self.policy.generate(prompts, sampling)
        self.calls.append(([list(p) for p in prompts], generations))
        return generations

    def generated(self):
        """prompt -> the generations returned for it."""
        out = {}
        for prompts, generations in self.calls:
            for prompt, generation in zip(prompts, generations, strict=True):
                out.setdefault(tuple(prompt), []).append(generation.token_ids)
        return out


def model_policy(model, tokenizer, name, temperature=1.0):
    return Recorded(
        TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=8, temperature=temperature, seed=1)), name
    )


def games(game, n, **knobs):
    return [agentenv.make_multi(game, **knobs) for _ in range(n)]


def seats(policy, game=NIM):
    return {agent: policy for agent in agentenv.make_multi(game).possible_agents}


def independent_returns(game_id, seed, text, **knobs):
    """Each agent's total reward when every agent says ``text``, read straight from the env."""
    env = agentenv.make_multi(game_id, **knobs)
    env.reset(seed=seed)
    totals = dict.fromkeys(env.possible_agents, 0.0)
    for agent in env.agent_iter():
        _, reward, terminated, truncated, _ = env.last()
        totals[agent] += reward
        env.step(None if terminated or truncated else text)
    return totals


def assert_token_exact(trajectory, chat_format, generated):
    """The ids are the opening prompt, then each turn's generated ids exactly as generated for the ids before it,
    then the game's answer as a chat-template delta; the last answer (after the game ended) is not appended."""
    ids, spans = trajectory.token_ids, trajectory.turn_spans
    opening = chat_format.start(
        [
            {"role": "system", "content": trajectory.instructions},
            {"role": "user", "content": trajectory.first_observation},
        ]
    )
    assert ids[: len(opening)] == opening and trajectory.prompt_length == len(opening)
    assert len(spans) == len(trajectory.turns)
    position = len(opening)
    for k, (turn, (start, end)) in enumerate(zip(trajectory.turns, spans, strict=True)):
        assert start == position
        assert ids[start:end] in generated[tuple(ids[:start])], f"turn {k} is not what the model generated"
        position = end
        if k + 1 < len(spans):
            delta = chat_format.delta(
                {"role": "user", "content": turn.observation}, ended=chat_format.ended(ids[start:end])
            )
            assert ids[end : end + len(delta)] == delta
            position += len(delta)
    assert position == len(ids)


# ---- conversations and tokens ---------------------------------------------------------------------------------------
def test_each_agent_trajectory_is_the_chat_format_encoding_of_its_own_conversation(tiny):
    _, tokenizer = tiny
    chat_format = ChatFormat(tokenizer)
    record = play_game(agentenv.make_multi(NIM), seats(CannedTokens(tokenizer, "take 1 from heap 1")), seed=3)
    assert set(record.trajectories) == {"player_0", "player_1"}
    for agent, trajectory in record.trajectories.items():
        ids, mask, spans = chat_format.encode_chat(trajectory.messages())
        assert (trajectory.token_ids, trajectory.loss_mask, trajectory.turn_spans) == (ids, mask, spans), agent
        assert f"You are {agent}" in trajectory.first_observation  # its own rules, its own view
    opponent_moves = record.trajectories["player_1"].first_observation
    assert "player_0 took 1 from heap 1." in opponent_moves  # player_1 hears what happened before its first turn
    assert "player_1 took 1 from heap 1." in record.trajectories["player_0"].turns[0].observation
    json.dumps(record.to_json())


def test_model_turns_are_the_generated_ids_and_game_messages_are_chat_deltas(tiny):
    model, tokenizer = tiny
    policy = model_policy(model, tokenizer, "tiny")
    records = play_games(games(NEGOTIATION, 2), seats(policy, NEGOTIATION), [0, 1, 2])
    generated = policy.generated()
    for record in records:
        assert not record.error and record.terminated
        for trajectory in record.trajectories.values():
            assert trajectory.turns, "invalid turns pass the move in Negotiation: both agents play"
            assert_token_exact(trajectory, ChatFormat(tokenizer), generated)


def test_loss_mask_and_logprobs_cover_exactly_the_generated_tokens(tiny):
    model, tokenizer = tiny
    [record] = play_games(games(NEGOTIATION, 1), seats(model_policy(model, tokenizer, "tiny"), NEGOTIATION), [5])
    for trajectory in record.trajectories.values():
        agent = {i for start, end in trajectory.turn_spans for i in range(start, end)}
        assert {i for i, m in enumerate(trajectory.loss_mask) if m} == agent
        assert len(trajectory.token_ids) == len(trajectory.loss_mask) == len(trajectory.logprobs)
        assert all(math.isfinite(trajectory.logprobs[i]) and trajectory.logprobs[i] < 0 for i in agent)
        assert all(trajectory.logprobs[i] == 0.0 for i in range(len(trajectory.token_ids)) if i not in agent)
        assert trajectory.reward_positions == [end - 1 for _, end in trajectory.turn_spans]


# ---- rewards and invalid turns --------------------------------------------------------------------------------------
@pytest.mark.parametrize("reward", ["sparse", "dense"])
def test_turn_rewards_sum_to_what_the_game_paid_each_agent(tiny, reward):
    _, tokenizer = tiny
    text = "take 1 from heap 1"
    for seed in range(4):
        record = play_game(agentenv.make_multi(NIM, reward=reward), seats(CannedTokens(tokenizer, text)), seed)
        paid = independent_returns(NIM, seed, text, reward=reward)
        for agent, trajectory in record.trajectories.items():
            assert sum(trajectory.turn_rewards) == pytest.approx(paid[agent]) == pytest.approx(record.returns[agent])
        # heap 1 runs out; the next player can only repeat the now illegal move, and forfeits after 3 tries
        loser = next(a for a, t in record.trajectories.items() if t.turns[-1].invalid_action)
        assert record.outcomes == {a: -1.0 if a == loser else 1.0 for a in record.trajectories}
        if reward == "sparse":
            assert sum(record.trajectories[loser].turn_rewards) == pytest.approx(-1.3)


def test_illegal_moves_are_invalid_turns_of_that_agent_with_the_games_penalty(tiny):
    model, tokenizer = tiny
    env = agentenv.make_multi(NIM, invalid_action_penalty=0.2, max_invalid=3)
    seating = {"player_0": ScriptedSeat("expert"), "player_1": model_policy(model, tokenizer, "tiny")}
    record = play_game(env, seating, seed=0)
    model_turns = record.trajectories["player_1"].turns
    assert [t.invalid_action for t in model_turns] == [True, True, True]  # the tiny model writes no move: forfeit
    assert all("Invalid turn" in t.observation for t in model_turns)
    assert [t.reward for t in model_turns] == pytest.approx([-0.2, -0.2, -1.2])  # the loss lands on its last turn
    expert = record.trajectories["player_0"]
    assert [t.invalid_action for t in expert.turns] == [False] and expert.turns[0].reward == 1.0 and expert.success
    assert expert.token_ids == [] and expert.turns[0].action  # a scripted seat plays text turns
    assert record.score("player_0") == 1.0 and record.score("player_1") == 0.0


# ---- seatings ------------------------------------------------------------------------------------------------------
def test_self_play_with_one_policy_batches_seats_and_games_and_changes_no_game(tiny):
    model, tokenizer = tiny
    policy = model_policy(model, tokenizer, "tiny", temperature=0.0)
    batched = play_games(games(NEGOTIATION, 3), seats(policy, NEGOTIATION), [0, 1, 2])
    assert max(len(prompts) for prompts, _ in policy.calls) == 3  # one call served three games' turns
    alone = [play_game(agentenv.make_multi(NEGOTIATION), seats(policy, NEGOTIATION), seed) for seed in [0, 1, 2]]
    for a, b in zip(batched, alone, strict=True):
        for agent in a.trajectories:
            assert (
                a.trajectories[agent].token_ids == b.trajectories[agent].token_ids
            )  # greedy: batching changes nothing
    seat_names = {name for record in batched for name in record.seats.values()}
    assert seat_names == {"tiny"}


def test_policy_against_a_frozen_snapshot_generates_each_seat_with_its_own_model(tiny):
    model, tokenizer = tiny
    learner = model_policy(model, tokenizer, "learner")
    frozen = model_policy(copy.deepcopy(model), tokenizer, "snapshot")
    records = play_games(games(NEGOTIATION, 2), {"player_0": learner, "player_1": frozen}, [0, 1])
    for record in records:
        assert record.seats == {"player_0": "learner", "player_1": "snapshot"}
        assert_token_exact(record.trajectories["player_0"], ChatFormat(tokenizer), learner.generated())
        assert_token_exact(record.trajectories["player_1"], ChatFormat(tokenizer), frozen.generated())
    for policy, agent in ((learner, "player_0"), (frozen, "player_1")):
        assert all(f"You are {agent}" in tokenizer.decode(p) for prompts, _ in policy.calls for p in prompts)


def test_a_seating_must_map_every_agent():
    with pytest.raises(ConfigError, match="missing \\['player_1'\\], unknown \\['player_2'\\]"):
        play_game(agentenv.make_multi(NIM), {"player_0": ScriptedSeat(), "player_2": ScriptedSeat()}, 0)
    with pytest.raises(ConfigError, match="kind"):
        ScriptedSeat("perfect")


def test_a_game_that_outgrows_the_context_stops_with_every_trajectory_truncated(tiny):
    model, tokenizer = tiny
    policy = model_policy(model, tokenizer, "tiny")
    [record] = play_games(
        games(NEGOTIATION, 1, max_invalid=10), seats(policy, NEGOTIATION), [0], max_context_tokens=720
    )
    assert record.truncated and not record.terminated and not record.error
    assert sum(t.context_truncated for t in record.trajectories.values()) == 1
    for trajectory in record.trajectories.values():
        assert trajectory.truncated and len(trajectory.turns) == len(trajectory.turn_spans)
        assert len(trajectory.token_ids) <= 720
        assert len(trajectory.token_ids) == (
            trajectory.turn_spans[-1][1] if trajectory.turns else trajectory.prompt_length
        )


def test_simultaneous_games_are_played_through_their_aec_view():
    env = agentenv.make_multi("AgentEnv/MutualFriends-v0", reward="dense")
    record = play_game(env, seats(ScriptedSeat("expert"), "AgentEnv/MutualFriends-v0"), seed=4)
    for agent, trajectory in record.trajectories.items():
        assert trajectory.success and len(trajectory.turns) == 2  # share the list, then select
        assert sum(trajectory.turn_rewards) == pytest.approx(record.returns[agent]) == pytest.approx(1.0)


# ---- evaluation ----------------------------------------------------------------------------------------------------
def test_expert_beats_random_nim_by_the_expected_margin():
    evaluation = evaluate_games(games(NIM, 4), ScriptedSeat("expert"), ScriptedSeat("random", seed=7), 200)
    summary = evaluation.summary()
    assert summary["games"] == 200 and summary["errors"] == 0 and summary["draws"] == 0
    assert summary["wins"] + summary["losses"] == 200
    assert summary["win_rate"] >= 0.95 and summary["win_ci_low"] > 0.9  # the README measures 996 of 1000
    assert summary["win_ci_low"] <= summary["win_rate"] <= summary["win_ci_high"]
    assert evaluation.policy_seats[:4] == ["player_0", "player_1", "player_0", "player_1"]
    assert [r.seed for r in evaluation.records[:4]] == [0, 0, 1, 1]  # each seed from both seats
    assert evaluation.records[1].seats == {"player_0": "scripted:random", "player_1": "scripted:expert"}


def test_evaluation_does_not_depend_on_how_many_games_run_at_once():
    one = evaluate_games(agentenv.make_multi(NIM), ScriptedSeat("random", seed=1), ScriptedSeat("random", seed=2), 30)
    three = evaluate_games(games(NIM, 3), ScriptedSeat("random", seed=1), ScriptedSeat("random", seed=2), 30)
    assert one.results() == three.results() and 0 < one.wins < 30


def test_elo_ratings_are_deterministic_order_free_and_anchored():
    table = [("ckpt-2", "ckpt-1", 1.0)] * 6 + [("ckpt-1", "ckpt-2", 1.0)] * 2 + [("ckpt-1", "random", 1.0)] * 8
    table += [("ckpt-2", "random", 0.5)] * 2 + [("ckpt-2", "random", 1.0)] * 6
    ratings = elo_ratings(table)
    assert ratings == elo_ratings(list(reversed(table)))
    assert ratings["ckpt-2"] > ratings["ckpt-1"] > ratings["random"]
    draws = elo_ratings([("a", "b", 0.5)] * 10)
    assert draws["a"] == pytest.approx(1000.0) == pytest.approx(draws["b"])
    pair = elo_ratings([("a", "b", 1.0)] * 3 + [("a", "b", 0.0)])
    assert pair["a"] - 1000 == pytest.approx(1000 - pair["b"])  # symmetric about the anchor
    assert 0.5 < expected_score(pair["a"], pair["b"]) < 0.75  # shrunk towards even by the prior draws
    assert math.isfinite(elo_ratings([("a", "b", 1.0)] * 50)["a"])  # unbeaten, still finite
    with pytest.raises(ConfigError, match="score of a against b"):
        elo_ratings([("a", "b", 2.0)])


def test_evaluation_results_feed_the_ratings():
    expert_vs_random = evaluate_games(games(NIM, 2), ScriptedSeat("expert"), ScriptedSeat("random"), 40)
    random_vs_random = evaluate_games(
        games(NIM, 2), ScriptedSeat("random", seed=3), ScriptedSeat("random"), 40, name="random-3"
    )
    ratings = elo_ratings(expert_vs_random.results() + random_vs_random.results())
    assert ratings["scripted:expert"] > ratings["random-3"] and ratings["scripted:expert"] > ratings["scripted:random"]
