"""Advantage estimators and the clipped losses against values computed by hand."""

import math

import pytest
import torch

from agentenv.policies import advantages as adv
from agentenv.policies.loss import kl_penalty, policy_loss, sft_loss, value_loss


def close(actual, expected):
    torch.testing.assert_close(actual, t(expected), atol=1e-5, rtol=1e-5)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_with_gamma_one_and_lambda_one_is_return_minus_value():
    a, ret = adv.gae(t([[0, 0, 1]]), t([[0.5, 0.2, 0.9]]), t([[1, 1, 1]]))
    close(a, [[0.5, 0.8, 0.1]])
    close(ret, [[1, 1, 1]])


def test_gae_by_hand_with_discount_and_lambda():
    # t=2: d=1-0.5=0.5, A=0.5; t=1: d=0.9*0.5-0.5=-0.05, A=-0.05+0.45*0.5=0.175; t=0: A=-0.05+0.45*0.175
    a, ret = adv.gae(t([[0, 0, 1]]), t([[0.5, 0.5, 0.5]]), t([[1, 1, 1]]), gamma=0.9, lam=0.5)
    close(a, [[0.02875, 0.175, 0.5]])
    close(ret, [[0.52875, 0.675, 1.0]])


def test_gae_skips_masked_positions_as_if_they_were_not_there():
    full, _ = adv.gae(t([[0, 7, 0, 1]]), t([[0.1, 9, 0.3, 0.6]]), t([[1, 0, 1, 1]]), gamma=0.9, lam=0.8)
    compact, _ = adv.gae(t([[0, 0, 1]]), t([[0.1, 0.3, 0.6]]), t([[1, 1, 1]]), gamma=0.9, lam=0.8)
    assert full[0, 1] == 0
    assert full[0, [0, 2, 3]].tolist() == pytest.approx(compact[0].tolist())


def test_gae_rows_are_independent_and_padding_is_zero():
    a, _ = adv.gae(t([[1, 0], [0, 2]]), t([[0, 0], [0, 0]]), t([[1, 0], [1, 1]]))
    close(a, [[1, 0], [2, 2]])


def test_returns_to_go_discounts_per_agent_token():
    out = adv.returns_to_go(t([[1, 0, 2]]), t([[1, 1, 1]]), gamma=0.5)
    close(out, [[1 + 0.25 * 2, 0.5 * 2, 2]])


def test_grpo_normalises_within_groups_and_zeroes_constant_groups():
    out = adv.grpo(t([1, 0, 0, 1, 2, 2]), ["a", "a", "a", "a", "b", "b"])
    std = math.sqrt(4 * 0.25 / 3)
    assert out.tolist() == pytest.approx([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std, 0, 0], abs=1e-5)


def test_dr_grpo_only_centres():
    assert adv.grpo(t([3, 1]), [0, 0], scale=False).tolist() == pytest.approx([1, -1])


def test_grpo_singleton_group_gets_no_signal():
    assert adv.grpo(t([5.0]), [0]).tolist() == [0.0]


def test_rloo_subtracts_the_mean_of_the_others():
    out = adv.rloo(t([1, 0, 0, 1, 4, 2]), [0, 0, 0, 0, 1, 1])
    assert out.tolist() == pytest.approx([1 - 1 / 3, -2 / 3, -2 / 3, 1 - 1 / 3, 2, -2])


def test_reinforce_pp_normalises_token_returns_over_the_batch():
    out = adv.reinforce_pp(t([[0, 1], [0, 0]]), t([[1, 1], [1, 1]]))
    close(out, [[1, 1], [-1, -1]])


def test_reinforce_pp_ignores_padding_in_the_statistics():
    out = adv.reinforce_pp(t([[0, 1, 0], [0, 0, 5]]), t([[1, 1, 0], [1, 1, 0]]))
    close(out, [[1, 1, 0], [-1, -1, 0]])


def test_whiten_uses_masked_entries_only():
    out = adv.whiten(t([[1, 3, 100]]), t([[1, 1, 0]]))
    close(out, [[-1, 1, 0]])


def test_policy_loss_is_minus_mean_advantage_at_ratio_one():
    lp = t([[-1.0, -2.0, -3.0]])
    loss, stats = policy_loss(lp, lp.clone(), t([[1, -3, 99]]), t([[1, 1, 0]]), denom=2)
    assert loss.item() == pytest.approx(1.0)  # -(1 - 3) / 2
    assert stats["clipfrac"] == 0 and stats["approx_kl"] == pytest.approx(0)


def test_policy_loss_clips_the_ratio_pessimistically():
    old = t([[0.0, 0.0]])
    new = t([[math.log(1.5), math.log(1.5)]])
    loss, stats = policy_loss(new, old, t([[1, -1]]), t([[1, 1]]), denom=2, clip=0.2)
    assert loss.item() == pytest.approx((-1.2 + 1.5) / 2)  # min(1.5*1, 1.2*1) and min(-1.5, -1.2)
    assert stats["clipfrac"] == 1.0


def test_clip_higher_lets_positive_advantages_grow_further():
    old, new = t([[0.0]]), t([[math.log(1.5)]])
    loss, _ = policy_loss(new, old, t([[1]]), t([[1]]), denom=1, clip=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx(-1.28)


def test_value_loss_by_hand_with_clipping():
    values, old, returns = t([[2.0, 0.0]]), t([[0.0, 0.0]]), t([[1.0, 1.0]])
    unclipped = value_loss(values, old, returns, t([[1, 1]]), denom=2, clip=None)
    assert unclipped.item() == pytest.approx(0.5 * (1 + 1) / 2)
    clipped = value_loss(values, old, returns, t([[1, 1]]), denom=2, clip=0.5)
    # first: max((2-1)^2, (0.5-1)^2) = 1; second: 1
    assert clipped.item() == pytest.approx(0.5)


def test_sft_loss_is_token_mean_nll():
    assert sft_loss(t([[-1.0, -3.0, -50.0]]), t([[1, 1, 0]]), denom=2).item() == pytest.approx(2.0)


def test_kl_penalty_is_zero_at_equality_and_positive_otherwise():
    assert kl_penalty(t([-1.0]), t([-1.0])).item() == pytest.approx(0)
    assert kl_penalty(t([-1.0]), t([-2.0])).item() > 0
    assert kl_penalty(t([-2.0]), t([-1.0])).item() > 0
