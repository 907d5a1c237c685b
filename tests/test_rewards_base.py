import asyncio
import math

import gymnasium as gym
import pytest

import agentenv
from agentenv import ConfigError
from agentenv.rewards import (
    CentredSigmoid,
    FormatPenalty,
    Gate,
    LengthPenalty,
    ProgressDensity,
    Reward,
    RewardDict,
    RewardFn,
    RewardList,
    Sample,
    Score,
    Sequential,
    WeightedSum,
    discounted_returns,
)


def exact(sample):
    return float(sample.response.strip() == (sample.reference or ""))


def nonempty(sample):
    return float(bool(sample.response.strip()))


class Counting(Reward):
    """Counts how many samples reach it, to check that gates and chains skip work."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def score_batch(self, samples):
        self.seen += len(samples)
        return [Score(1.0) for _ in samples]


def test_weighted_sum_reports_every_child_by_name():
    reward = WeightedSum(correct=RewardFn(exact), fmt=(RewardFn(nonempty), 0.2))
    score = reward(Sample("42", reference="42"))
    assert math.isclose(score.value, 1.2)
    assert score.parts == {"correct": 1.0, "fmt": 1.0}


def test_weighted_sum_can_normalise_by_its_weights():
    reward = WeightedSum({"a": (RewardFn(exact), 3.0), "b": (RewardFn(nonempty), 1.0)}, normalize=True)
    assert math.isclose(reward(Sample("x", reference="42")).value, 0.25)


def test_nested_parts_are_flattened_with_dots():
    inner = WeightedSum(correct=RewardFn(exact))
    outer = RewardDict(task=inner, length=LengthPenalty(5, rate=0.1))
    score = outer(Sample("1234567", reference="1234567"))
    assert score.parts["task"] == 1.0 and score.parts["task.correct"] == 1.0
    assert math.isclose(score.parts["length"], -0.2) and score.parts["length.over_limit"] == 2.0


def test_named_rewards_walks_the_tree_like_nn_module():
    tree = RewardDict(a=WeightedSum(x=RewardFn(exact)), b=RewardList([RewardFn(nonempty)]))
    assert [name for name, _ in tree.named_rewards()] == ["", "a", "a.x", "b", "b.0"]


def test_gate_skips_the_inner_reward_when_the_gate_fails():
    inner = Counting()
    gate = Gate(RewardFn(nonempty), inner)
    scores = gate.batch(["", "  ", "answer"])
    assert [s.value for s in scores] == [0.0, 0.0, 1.0]
    assert inner.seen == 1 and scores[0].reason.startswith("gated")


def test_sequential_stops_at_the_first_failing_step():
    expensive = Counting()
    chain = Sequential({"nonempty": RewardFn(nonempty), "exact": (RewardFn(exact), 1.0), "judge": expensive})
    scores = chain.batch(["", "41", "42"], reference="42")
    assert [s.value for s in scores] == [0.0, 0.0, 1.0]
    assert expensive.seen == 1
    assert scores[1].reason.startswith("stopped at exact") and "judge" not in scores[1].parts


@pytest.mark.parametrize(
    "bad, reason",
    [(None, "must be text"), (b"\xff\xfe", "UTF-8"), ("x" * 300_000, "limit"), ("a\udcffb", "UTF-8"), (3, "int")],
)
def test_bad_input_scores_zero_with_a_reason(bad, reason):
    score = WeightedSum(correct=RewardFn(exact))(bad)
    assert score.value == 0.0 and reason in score.reason


def test_a_failing_component_scores_zero_instead_of_raising():
    broken = RewardFn(lambda s: 1 / 0, "broken")
    score = broken("anything")
    assert score.value == 0.0 and "ZeroDivisionError" in score.reason


def test_strict_mode_raises_for_debugging():
    broken = RewardFn(lambda s: 1 / 0, "broken")
    broken.strict = True
    with pytest.raises(ZeroDivisionError):
        broken("anything")


def test_non_finite_rewards_become_zero():
    assert RewardFn(lambda s: float("nan"))("x").value == 0.0


def test_context_kwargs_fill_the_sample():
    assert RewardFn(exact)("42", reference="42").value == 1.0
    assert RewardFn(exact)({"response": "42", "reference": "42"}).value == 1.0


def test_async_batch_matches_sync_batch():
    reward = WeightedSum(correct=RewardFn(exact), fmt=RewardFn(nonempty))
    samples = [Sample("42", reference="42"), Sample("", reference="42")]
    assert asyncio.run(reward.abatch(samples)) == reward.batch(samples)


def test_children_must_be_rewards():
    with pytest.raises(ConfigError, match="'x' must be a Reward"):
        RewardDict(x=lambda s: 1.0)


def test_forgetting_super_init_is_a_clear_error():
    class Broken(Reward):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match="must call super"):
        Broken()


def test_discounted_returns_carry_a_terminal_reward_back():
    assert discounted_returns([0, 0, 1], gamma=0.5) == [0.25, 0.5, 1.0]
    assert discounted_returns([1, 0, 1], gamma=1.0) == [2.0, 1.0, 1.0]


def test_centred_sigmoid_is_bounded_and_centred_on_the_reference_answer():
    length = RewardFn(lambda s: float(len(s.response)))
    shaped = CentredSigmoid(length, temperature=1.0)
    assert shaped(Sample("abc", reference="abc")).value == 0.5
    huge = shaped(Sample("a" * 1000, reference="abc")).value
    assert 0.99 < huge <= 1.0 and shaped(Sample("", reference="abc")).value < 0.5
    assert "no reference" in shaped("abc").reason


def test_length_penalty_grows_past_the_limit_and_is_capped():
    penalty = LengthPenalty(10, rate=0.1, cap=0.5)
    assert penalty("short").value == 0.0
    assert math.isclose(penalty("x" * 13).value, -0.3)
    assert penalty("x" * 1000).value == -0.5


def test_format_penalty_applies_when_the_check_fails():
    penalty = FormatPenalty(RewardFn(nonempty), penalty=0.3)
    assert [s.value for s in penalty.batch(["", "ok"])] == [-0.3, 0.0]


def test_progress_density_repays_a_sparse_env_densely():
    env = ProgressDensity(agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0", reward="sparse"), reward="dense")
    env.reset(seed=5)
    steps = [env.step(a) for a in env.unwrapped.walkthrough()]
    rewards = [s[1] for s in steps]
    assert math.isclose(sum(rewards), 1.0) and sum(r > 0 for r in rewards) == 5
    assert steps[-1][4]["reward_parts"]["env"] == 1.0


def test_progress_density_ratio_pays_when_an_outer_time_limit_truncates():
    probe = agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0")
    probe.reset(seed=5)
    walkthrough = probe.unwrapped.walkthrough()
    limit = next(i for i, a in enumerate(walkthrough) if a.startswith("take")) + 1  # ends right after a key
    env = ProgressDensity(
        gym.wrappers.TimeLimit(agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0", max_turns=500), limit), reward="ratio"
    )
    env.reset(seed=5)
    steps = [env.step(a) for a in walkthrough[:limit]]
    assert [s[1] for s in steps[:-1]] == [0.0] * (limit - 1)
    assert steps[-1][3] and math.isclose(steps[-1][1], 0.2)  # one milestone of five
