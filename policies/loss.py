"""The masked policy-gradient core that SFT, PPO, GRPO, RLOO and REINFORCE++ share.

Every quantity is per *agent token* (``(rows, agent_tokens)`` tensors with a ``mask`` for padding): the forward
pass only computes logits where the agent spoke, so env and prompt tokens cannot receive a gradient at all.
Losses are sums divided by ``denom`` — the number of agent tokens in the whole mini-batch (DAPO's token-level mean)
— so micro-batches accumulate to exactly the mini-batch loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class AgentBatch:
    """Padded sequences plus, per row, the agent tokens in order: where they are and what they carry."""

    input_ids: torch.Tensor  # (rows, seq)
    attention_mask: torch.Tensor  # (rows, seq)
    positions: torch.Tensor  # (rows, agent): index in the sequence of the logits that predict each agent token
    targets: torch.Tensor  # (rows, agent): the agent token ids
    mask: torch.Tensor  # (rows, agent): 1 on real agent tokens, 0 on padding
    rewards: torch.Tensor  # (rows, agent): each turn's reward on its last token
    rollout_logprobs: torch.Tensor  # (rows, agent): log-probs recorded while sampling
    returns: torch.Tensor  # (rows,): episode returns
    group_ids: list[Any] = field(default_factory=list)  # episodes of one task seed share a group (GRPO, RLOO)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: Any) -> AgentBatch:
        """The same batch on ``device`` (itself when already there)."""
        if self.input_ids.device == torch.device(device):
            return self
        return AgentBatch(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(self).items()})

    def rows(self, index: Any) -> AgentBatch:
        index = torch.as_tensor(index, dtype=torch.long)
        width = int(self.attention_mask[index].sum(1).max())  # right padding: drop columns no row uses
        agents = max(1, int(self.mask[index].sum(1).max()))
        return AgentBatch(
            self.input_ids[index, :width], self.attention_mask[index, :width], self.positions[index, :agents],
            self.targets[index, :agents], self.mask[index, :agents], self.rewards[index, :agents],
            self.rollout_logprobs[index, :agents], self.returns[index], [self.group_ids[i] for i in index.tolist()],
        )  # fmt: skip


def agent_forward(
    model: Any, batch: AgentBatch, *, temperature: float = 1.0, value_head: Any = None, entropy: bool = False
) -> dict[str, torch.Tensor]:
    """Log-probs of the agent tokens under ``logits / temperature`` (+ entropy, + values from ``value_head``).

    The language-model head runs on the agent positions only: cheaper, and nothing else is in the graph. Rows are
    right-padded, so under the causal mask no real token attends to padding and no attention mask is passed: the
    outputs at real positions are the same, and the backward pass takes the fast causal kernel (a padding mask
    makes it several times slower on CPU).
    """
    out = model(input_ids=batch.input_ids, output_hidden_states=True, logits_to_keep=1, use_cache=False)
    hidden = out.hidden_states[-1]  # (rows, seq, hidden), after the final norm
    index = batch.positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
    selected = hidden.gather(1, index)  # (rows, agent, hidden)
    logits = model.get_output_embeddings()(selected).float() / temperature
    logprobs_all = torch.log_softmax(logits, dim=-1)
    result = {"logprobs": logprobs_all.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)}
    if entropy:
        result["entropy"] = -(logprobs_all.exp() * logprobs_all).sum(-1)
    if value_head is not None:
        result["values"] = value_head(selected).squeeze(-1).float()
    return result


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def sft_loss(logprobs: torch.Tensor, mask: torch.Tensor, denom: float) -> torch.Tensor:
    """Negative log-likelihood of the agent tokens, summed and divided by the mini-batch's agent-token count."""
    return -masked_sum(logprobs, mask) / denom


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    denom: float,
    clip: float = 0.2,
    clip_high: float | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate (Schulman et al. 2017): -min(ratio * A, clip(ratio, 1-eps, 1+eps_high) * A).

    ``clip_high`` > ``clip`` is DAPO's clip-higher. ``weights`` (no gradient) scale each token's term: truncated
    importance sampling when another engine sampled the tokens (:func:`tis_weights`). Returns the loss and, for
    logging, the clipped fraction and the approximate KL between the sampling policy and this one.
    """
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - clip, 1 + (clip if clip_high is None else clip_high))
    surrogate = -torch.min(ratio * advantages, clipped * advantages)
    loss = masked_sum(surrogate if weights is None else surrogate * weights, mask) / denom
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean(((ratio - clipped).abs() > 1e-12).float(), mask).item(),
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask).item(),  # k3, >= 0
        }
    return loss, stats


def tis_weights(
    trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor, cap: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Truncated importance sampling (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy
    RL training"): the tokens were sampled by an engine (vLLM, bf16) whose probabilities differ from the trainer's
    (fp32), so each token's policy-gradient term is weighted by min(pi_trainer / pi_sampler, cap).

    Returns the weights (1 off the mask) and the gap between the two: mean |log-prob difference|, the importance
    ratio's mean / std / max, and the share of tokens truncated at ``cap``.
    """
    with torch.no_grad():
        diff = (trainer_logprobs - sampler_logprobs) * mask
        ratio = diff.exp()
        weights = torch.where(mask > 0, ratio.clamp(max=cap), torch.ones_like(ratio))
        on = ratio[mask > 0]
        stats = {
            "logprob_gap": masked_mean(diff.abs(), mask).item(),
            "is_ratio_mean": on.mean().item() if on.numel() else 1.0,
            "is_ratio_std": on.std().item() if on.numel() > 1 else 0.0,
            "is_ratio_max": on.max().item() if on.numel() else 1.0,
            "tis_truncated": (on > cap).float().mean().item() if on.numel() else 0.0,
        }
    return weights, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    denom: float,
    clip: float | None = 0.2,
) -> torch.Tensor:
    """0.5 * (V - R)^2, with PPO's value clipping around the values seen at rollout time when ``clip`` is set."""
    loss = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        loss = torch.max(loss, (clipped - returns) ** 2)
    return 0.5 * masked_sum(loss, mask) / denom


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference) (Schulman 2020): unbiased, always >= 0."""
    log_ratio = ref_logprobs - logprobs
    return log_ratio.exp() - 1 - log_ratio
