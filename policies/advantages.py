"""Advantage estimators over padded token batches: one small function per algorithm.

All tensors are ``(batch, positions)`` in *target* space: position ``j`` is the prediction of token ``j + 1`` of
the sequence (see :func:`agentenv.policies.rl.collate`). ``mask`` is 1 where the predicted token is the agent's,
``rewards`` holds each turn's reward on the position of that turn's last token (and, for PPO with a KL penalty in
the reward, ``-kl_coef * kl`` on every agent position). Env tokens are transparent: the "next state" of an agent
token is the next *agent* token, whatever env text lies between (token-level GAE across turns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over the agent tokens of each row.

    delta_t = r_t + gamma * V(next agent token) - V_t  (0 after the last agent token), A_t = delta_t + gamma*lam*A_next.
    Returns ``(advantages, returns)``, with ``returns = advantages + values``; both 0 off the mask.
    """
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_advantage = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = advantage * m
        next_value = torch.where(m > 0, values[:, t], next_value)
        next_advantage = torch.where(m > 0, advantage, next_advantage)
    return advantages, (advantages + values) * mask


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Discounted sum of the rewards from each agent token to the end of its row (gamma per agent token)."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t].to(rewards.dtype)
        running = torch.where(m > 0, rewards[:, t] + gamma * running, running)  # rewards off the mask are ignored
        out[:, t] = running * m
    return out


def _groups(group_ids: Sequence[Any]) -> dict[Any, list[int]]:
    groups: dict[Any, list[int]] = {}
    for i, g in enumerate(group_ids):
        groups.setdefault(g, []).append(i)
    return groups


def grpo(returns: torch.Tensor, group_ids: Sequence[Any], *, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO (Shao et al. 2024): each episode's return minus its group's mean, over the group's std when ``scale``.

    ``returns`` is ``(episodes,)``; a group is the episodes of one task seed. ``scale=False`` is Dr. GRPO (Liu et al.
    2025), which drops the std division that over-weights near-deterministic groups. Singleton groups get 0.
    """
    advantages = torch.zeros_like(returns)
    for members in _groups(group_ids).values():
        r = returns[members]
        if len(members) < 2:
            continue
        centred = r - r.mean()
        advantages[members] = centred / (r.std(unbiased=True) + eps) if scale else centred
    return advantages


def rloo(returns: torch.Tensor, group_ids: Sequence[Any]) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024): each return minus the mean of the *other* returns of its group."""
    advantages = torch.zeros_like(returns)
    for members in _groups(group_ids).values():
        n = len(members)
        if n < 2:
            continue
        r = returns[members]
        advantages[members] = r - (r.sum() - r) / (n - 1)
    return advantages


def reinforce_pp(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE++ (Hu 2025): token-level returns-to-go (KL penalty already in ``rewards``), normalised over all
    agent tokens of the batch — a global baseline instead of a critic or a group."""
    returns = returns_to_go(rewards, mask, gamma)
    m = mask.to(returns.dtype)
    n = m.sum().clamp(min=1)
    mean = (returns * m).sum() / n
    std = (((returns - mean) ** 2 * m).sum() / n).sqrt()
    return (returns - mean) / (std + eps) * m


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise to mean 0, std 1 over the masked entries (PPO's advantage normalisation)."""
    m = mask.to(values.dtype)
    n = m.sum().clamp(min=1)
    mean = (values * m).sum() / n
    std = (((values - mean) ** 2 * m).sum() / n).sqrt()
    return (values - mean) / (std + eps) * m
