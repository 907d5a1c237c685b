"""Scripted policies: baselines and data sources that need no model.

A scripted policy sees the env itself (it may ask for a walkthrough or the admissible commands), so it plays
through :func:`agentenv.rollout.play_episode`, one episode at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agentenv.core import TextEnv
from agentenv.errors import ConfigError, check_choice
from agentenv.policy import EpisodePolicy

ScriptedPolicy = EpisodePolicy  # the protocol's old name: a scripted policy is any EpisodePolicy


class RandomPolicy:
    """Uniform over the env's admissible commands; random text when the env cannot list them."""

    name = "random"

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)
        self.env: TextEnv | None = None

    def start(self, env: TextEnv, observation: str, info: dict[str, Any]) -> None:
        self.env = env

    def act(self, observation: str, info: dict[str, Any]) -> str:
        assert self.env is not None, "call start() first"
        commands = self.env.admissible_commands()
        if commands:
            return commands[int(self.rng.integers(len(commands)))]
        return self.env.action_space.sample()


class WalkthroughPolicy:
    """Follows the env's own optimal plan, re-planning if the episode leaves it. An expert for SFT data."""

    name = "walkthrough"

    def __init__(self, seed: int | None = None):
        self.env: TextEnv | None = None
        self.plan: list[str] = []

    def start(self, env: TextEnv, observation: str, info: dict[str, Any]) -> None:
        plan = env.walkthrough()
        if plan is None:
            raise ConfigError(f"{type(env).__name__} has no walkthrough; use --policy random")
        self.env, self.plan = env, list(plan)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        assert self.env is not None, "call start() first"
        if not self.plan or info.get("invalid_action"):
            self.plan = list(self.env.walkthrough() or ["look"])
        return self.plan.pop(0)


POLICIES: dict[str, type] = {"random": RandomPolicy, "walkthrough": WalkthroughPolicy}


def make_policy(name: str, seed: int | None = None) -> EpisodePolicy:
    check_choice("policy", name, POLICIES)
    return POLICIES[name](seed=seed)
