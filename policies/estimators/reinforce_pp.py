"""REINFORCE++'s estimator (Hu 2025): token-level returns-to-go normalised over every agent token of the batch (all
processes) — a global baseline instead of a critic or a group."""

from __future__ import annotations

from typing import Any

from agentenv.policies.estimators import EstimatorInputs, register_estimator


@register_estimator("reinforce_pp")
def reinforce_pp(inputs: EstimatorInputs) -> dict[str, Any]:
    from agentenv.policies.advantages import returns_to_go

    to_go = returns_to_go(inputs.rewards, inputs.mask, inputs.config.gamma)
    return {"advantages": inputs.whiten(to_go, inputs.mask, 1e-6)}
