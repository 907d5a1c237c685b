"""The Judge env family: one judgement per episode, the right verdict pays, the format is checked."""

import pytest

import agentenv
from agentenv import ConfigError
from agentenv.envs.judge.env import read_verdict
from agentenv.redteam import redteam
from agentenv.testing import check_env

IDS = ["AgentEnv/Judge-Pointwise-v0", "AgentEnv/Judge-Pointwise-Think-v0", "AgentEnv/Judge-Pairwise-v0",
       "AgentEnv/Judge-Pairwise-Think-v0"]  # fmt: skip


@pytest.mark.parametrize("env_id", IDS)
def test_every_judge_env_meets_the_contract(env_id):
    assert check_env(env_id).ok


@pytest.mark.parametrize("env_id", IDS)
def test_the_oracle_wins_and_the_other_verdict_loses(env_id):
    env = agentenv.make(env_id, split="test", data_size="small")
    for seed in range(6):
        _, info = env.reset(seed=seed)
        right = env.unwrapped.walkthrough()[0]
        _, reward, terminated, _, info = env.step(right)
        assert terminated and reward == 1.0 and info["success"]
        env.reset(seed=seed)
        wrong = right.replace(
            env.unwrapped.label, ({"Yes": "No", "No": "Yes", "A": "B", "B": "A"})[env.unwrapped.label]
        )
        _, reward, terminated, _, info = env.step(wrong)
        assert terminated and reward == 0.0 and not info["success"]


def test_seeds_alternate_right_and_wrong_cases_and_the_observation_holds_the_case():
    env = agentenv.make("AgentEnv/Judge-Pointwise-v0", data_size="small")
    labels = []
    for seed in range(10):
        observation, info = env.reset(seed=seed)
        case = env.unwrapped.case
        assert case.question in observation and case.reference in observation and case.response in observation
        assert info["category"] == case.category
        labels.append(env.unwrapped.label)
    assert labels == ["Yes", "No"] * 5


def test_the_test_split_shares_no_question_with_train():
    env = agentenv.make("AgentEnv/Judge-Pointwise-v0", data_size="small")
    questions = {}
    for split in ("train", "test"):
        env = agentenv.make("AgentEnv/Judge-Pointwise-v0", data_size="small", split=split)
        questions[split] = set()
        for seed in range(60):
            env.reset(seed=seed)
            questions[split].add(env.unwrapped.case.group_id)
    assert questions["train"] and questions["test"] and not questions["train"] & questions["test"]


@pytest.mark.parametrize(
    "text, reasoning, expected",
    [
        ("Yes", False, ("Yes", None)),
        (" no. ", False, ("No", None)),
        ("Verdict: Yes", False, ("Yes", None)),
        ("Yes 0.8", False, ("Yes", 0.8)),
        ("Yes P(yes) = 0.3", False, ("Yes", 0.3)),
        ("It depends.\nNo", False, ("No", None)),
        ("<think>The reference is 4; the response says four.</think>\nYes", True, ("Yes", None)),
        ("Yes or No", False, (None, None)),
        ("Yes No", False, (None, None)),
        ("Yes 7", False, (None, None)),
        (":", False, (None, None)),
        ("Yes", True, (None, None)),
        ("<think></think>Yes", True, (None, None)),
        ("<think>Yes</think>", True, (None, None)),
    ],
)
def test_verdicts_are_read_strictly(text, reasoning, expected):
    verdict, probability, problem = read_verdict(text, ("Yes", "No"), reasoning=reasoning)
    assert (verdict, probability) == expected
    assert bool(problem) == (verdict is None)


def test_an_unreadable_verdict_is_an_invalid_turn_with_one_retry():
    env = agentenv.make("AgentEnv/Judge-Pointwise-v0", data_size="small")
    env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step("Yes or No")
    assert info["invalid_action"] and reward == 0.0 and not terminated and not truncated
    assert "exactly one verdict" in observation
    _, reward, terminated, _, _ = env.step("Yes")
    assert terminated and reward == 1.0


def test_dense_reward_is_a_brier_score_of_the_stated_probability():
    env = agentenv.make("AgentEnv/Judge-Pointwise-v0", data_size="small", reward="dense")
    env.reset(seed=0)  # a correct response: the label is Yes
    assert env.step("Yes 0.8")[1] == pytest.approx(1 - 0.2**2)
    env.reset(seed=0)
    assert env.step("No 0.9")[1] == pytest.approx(1 - 0.9**2)  # "No" at 0.9 is P(yes) = 0.1
    env.reset(seed=1)  # a wrong response: the label is No
    assert env.step("Yes")[1] == 0.0


def test_knobs_are_checked():
    with pytest.raises(ConfigError, match="mode="):
        agentenv.make("AgentEnv/Judge-Pointwise-v0", mode="listwise")
    with pytest.raises(ConfigError, match="data_size="):
        agentenv.make("AgentEnv/Judge-Pointwise-v0", data_size="huge")


@pytest.mark.parametrize("reward", ["sparse", "dense"])
def test_no_hack_beats_the_best_blind_verdict(reward):
    report = redteam(
        "AgentEnv/Judge-Pointwise-Think-v0", episodes=12, env_kwargs={"reward": reward, "data_size": "small"}
    )
    assert report.noop.mean == pytest.approx(0.5 if reward == "sparse" else 0.75)
    assert report.oracle.mean == 1.0
    assert not report.beaten, [(h.name, h.mean) for h in report.beaten]
