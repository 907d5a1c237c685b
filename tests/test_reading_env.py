"""AgentEnv/Search-World-Read-v0: one-turn reading QA graded by the search rubric; only the answer pays."""

import pytest

import agentenv
from agentenv import ConfigError
from agentenv.redteam import redteam
from agentenv.testing import check_env


def test_the_env_passes_the_checker():
    report = check_env("AgentEnv/Search-World-Read-v0")
    assert not report.failed, report.failed


def test_the_documents_hold_the_answer_and_only_the_answer_pays():
    env = agentenv.make("AgentEnv/Search-World-Read-v0", split="test")
    for seed in range(6):
        observation, info = env.reset(seed=seed)
        reference = info["reference"]
        answers = env.unwrapped.question.answers  # the reference and its aliases ("51360", "51,360")
        assert any(a in observation for a in answers) and info["question"] in observation
        assert env.step(reference)[1] == 1.0
        env.reset(seed=seed)
        assert env.step(answers[-1])[1] == 1.0  # as the documents write it
        pasted = " ".join(observation.split())[:500]  # the documents and question on one line
        for attempt in (":", "I don't know.", f"{reference} or 7", info["question"], pasted):
            env.reset(seed=seed)
            _, reward, terminated, _, step_info = env.step(attempt)
            assert reward == 0.0 and terminated and step_info["verified"] == 0.0, attempt


def test_no_reading_hack_beats_the_noop():
    report = redteam("AgentEnv/Search-World-Read-v0", 4)
    assert report.family == "reading" and len(report.results) > 8
    assert not [h.name for h in report.beaten]
    assert report.oracle.mean == 1.0


def test_bad_knobs_are_config_errors():
    with pytest.raises(ConfigError, match="answer_types"):
        agentenv.make("AgentEnv/Search-World-Read-v0", answer_types=["list"])
    with pytest.raises(ConfigError, match="context_chars"):
        agentenv.make("AgentEnv/Search-World-Read-v0", context_chars=5)
