"""GRPO's estimator (Shao et al. 2024): each episode's return minus its task group's mean, over the group's std
unless ``scale_rewards`` is false (Dr. GRPO), spread over the episode's agent tokens."""

from __future__ import annotations

from typing import Any

from agentenv.policies.estimators import EstimatorInputs, register_estimator


@register_estimator("grpo", min_group_size=2)
def grpo(inputs: EstimatorInputs) -> dict[str, Any]:
    from agentenv.policies.advantages import grpo as group_relative

    per_episode = group_relative(inputs.returns, inputs.group_ids, scale=inputs.config.scale_rewards)
    return {"advantages": per_episode.unsqueeze(1) * inputs.mask}
