"""Reward components (``agentenv.rewards``): verifiers, rubrics, judges and shaping.

Rewards depend only on the ``agentenv`` core, never on envs or policies.
"""

from agentenv.rewards.shaping import REWARD_MODES, ProgressReward

__all__ = ["REWARD_MODES", "ProgressReward"]
