"""Reward components (``agentenv.rewards``): verifiers, rubrics, judges and shaping, composed like ``nn.Module``s.

Rewards depend only on the ``agentenv`` core, never on envs or policies.
"""

from agentenv.rewards.base import (
    Gate,
    Reward,
    RewardDict,
    RewardFn,
    RewardList,
    Sample,
    Score,
    Sequential,
    WeightedSum,
)
from agentenv.rewards.shaping import (
    REWARD_MODES,
    CentredSigmoid,
    FormatPenalty,
    LengthPenalty,
    ProgressDensity,
    ProgressReward,
    discounted_returns,
)

__all__ = [
    "REWARD_MODES",
    "CentredSigmoid",
    "FormatPenalty",
    "Gate",
    "LengthPenalty",
    "ProgressDensity",
    "ProgressReward",
    "Reward",
    "RewardDict",
    "RewardFn",
    "RewardList",
    "Sample",
    "Score",
    "Sequential",
    "WeightedSum",
    "discounted_returns",
]
