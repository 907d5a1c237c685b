"""The contract checker must fail envs that break the contract, naming the broken check."""

import random

import pytest

import agentenv
from agentenv import EnvContractError, TextEnv
from agentenv.testing import check_env


class Guess(TextEnv):
    """A well-behaved env: guess the secret digit."""

    instructions = "Guess the digit from 0 to 9."

    def _reset(self, task_seed, options):
        self.secret = task_seed % 10
        return "Guess.", {}

    def _step(self, action):
        if action.strip() == str(self.secret):
            return "Yes!", 1.0, True, {"success": True}
        return "No.", 0.0, False, {"invalid_action": not action.strip().isdigit()}


class Nondeterministic(Guess):
    def _reset(self, task_seed, options):
        self.secret = random.randrange(10)  # ignores the task seed
        return f"Guess ({self.secret}).", {}


class CrashesOnBadInput(Guess):
    def _step_invalid(self, reason):
        raise RuntimeError("cannot handle this")


class LyingRewardParts(Guess):
    def _step(self, action):
        observation, reward, terminated, info = super()._step(action)
        return observation, reward, terminated, {**info, "reward_parts": {"bonus": 7.0}}


class BadInfo(Guess):
    def _reset(self, task_seed, options):
        observation, info = super()._reset(task_seed, options)
        return observation, {**info, "optimal_steps": "three"}


class NeverFlagsInvalid(Guess):
    def _step_invalid(self, reason):
        return "Whatever.", 0.0, False, {"invalid_action": False}


class IgnoresBadSeeds(Guess):
    def reset(self, *, seed=None, options=None):
        return super().reset(seed=None if isinstance(seed, bool) else seed, options=options)  # seed=True: random


class RendersRawControls(Guess):
    def render(self):
        return "\x1b[2J" + super().render()


for cls in (Guess, Nondeterministic, CrashesOnBadInput, LyingRewardParts, BadInfo, IgnoresBadSeeds, RendersRawControls):
    agentenv.register(f"CheckTest{cls.__name__}-v0", f"tests.test_testing:{cls.__name__}", kwargs={"max_turns": 20})


def test_a_good_env_passes_every_check():
    report = check_env("AgentEnv/CheckTestGuess-v0")
    assert report.ok and len(report.passed) == 12 and not report.failed


@pytest.mark.parametrize(
    "name, failing_check",
    [
        ("Nondeterministic", "same seed, same episode"),
        ("CrashesOnBadInput", "bad actions are invalid turns"),
        ("LyingRewardParts", "text spaces and info keys"),
        ("BadInfo", "text spaces and info keys"),
        ("IgnoresBadSeeds", "bad seeds and options are ConfigErrors"),
        ("RendersRawControls", "render ansi"),
    ],
)
def test_contract_breaches_are_reported_by_name(name, failing_check):
    report = check_env(f"AgentEnv/CheckTest{name}-v0", raise_on_failure=False)
    assert failing_check in report.failed


def test_base_class_enforces_invalid_flag_even_if_a_subclass_forgets():
    env = NeverFlagsInvalid()
    env.reset(seed=0)
    assert env.step(b"\xff")[4]["invalid_action"] is True


def test_failures_raise_one_error_listing_them_all():
    with pytest.raises(EnvContractError, match=r"CheckTestNondeterministic-v0 fails \d+ contract check"):
        check_env("AgentEnv/CheckTestNondeterministic-v0")
