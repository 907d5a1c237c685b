"""PPO's estimator: token-level GAE over the agent's tokens with the critic's values (Schulman et al. 2016), the
advantages whitened over the batch when ``whiten_advantages``; the returns are the value head's targets."""

from __future__ import annotations

from typing import Any

from agentenv.policies.estimators import EstimatorInputs, register_estimator


@register_estimator("ppo", critic=True)
def ppo(inputs: EstimatorInputs) -> dict[str, Any]:
    from agentenv.policies.advantages import gae

    c = inputs.config
    advantages, returns = gae(inputs.rewards, inputs.values, inputs.mask, c.gamma, c.lam)
    if c.whiten_advantages:
        advantages = inputs.whiten(advantages, inputs.mask, 1e-8)
    return {"advantages": advantages, "returns": returns}
