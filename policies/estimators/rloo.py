"""RLOO's estimator (Ahmadian et al. 2024): each episode's return minus the mean of the other returns of its task
group, spread over the episode's agent tokens."""

from __future__ import annotations

from typing import Any

from agentenv.policies.estimators import EstimatorInputs, register_estimator


@register_estimator("rloo", min_group_size=2)
def rloo(inputs: EstimatorInputs) -> dict[str, Any]:
    from agentenv.policies.advantages import rloo as leave_one_out

    return {"advantages": leave_one_out(inputs.returns, inputs.group_ids).unsqueeze(1) * inputs.mask}
