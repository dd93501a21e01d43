from __future__ import annotations

import math

import torch

from agents.ppo import explained_variance, ppo_loss


def _loss(**over: object) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    args = dict(
        new_logprobs=torch.log(torch.tensor([1.5, 0.5, 1.0, 1.1])),
        old_logprobs=torch.zeros(4),
        advantages=torch.tensor([1.0, 1.0, -2.0, -1.0]),
        new_values=torch.tensor([1.0, 2.0, 3.0, 0.0]),
        old_values=torch.tensor([0.0, 2.0, 2.0, 0.0]),
        returns=torch.tensor([2.0, 2.0, 2.0, 2.0]),
        entropy=torch.tensor([0.5, 0.5, 1.0, 1.0]),
        clip_coef=0.2, clip_vloss=False, ent_coef=0.01, vf_coef=0.5,
    )
    args.update(over)
    return ppo_loss(**args)  # type: ignore[arg-type]


def test_ppo_loss_matches_clipped_surrogate_formula() -> None:
    loss, stats = _loss()
    # ratios 1.5, 0.5, 1.0, 1.1; min(r·A, clip(r, 0.8, 1.2)·A) per sample:
    surrogate = [min(1.5, 1.2) * 1.0, min(0.5, 0.8) * 1.0, -2.0, min(1.1 * -1.0, 1.1 * -1.0)]
    policy = -sum(surrogate) / 4
    value = ((1 - 2) ** 2 + 0 + (3 - 2) ** 2 + (0 - 2) ** 2) / 4
    entropy = 0.75
    assert math.isclose(stats["policy_loss"].item(), policy, rel_tol=1e-6)
    assert math.isclose(stats["value_loss"].item(), value, rel_tol=1e-6)
    assert math.isclose(loss.item(), policy - 0.01 * entropy + 0.5 * value, rel_tol=1e-6)
    # |r − 1| > 0.2 for 1.5 and 0.5 only
    assert math.isclose(stats["clipfrac"].item(), 0.5)


def test_value_clipping_takes_pessimistic_max() -> None:
    _, stats = _loss(clip_vloss=True)
    # sample 0: V=1 clipped to 0+0.2 → (0.2−2)²=3.24 > (1−2)²=1; sample 2: V=3 clipped to 2.2 → max(1, 0.04)
    expected = (3.24 + 0.0 + 1.0 + 4.0) / 4
    assert math.isclose(stats["value_loss"].item(), expected, rel_tol=1e-6)


def test_approx_kl_is_zero_for_identical_policies_and_positive_otherwise() -> None:
    _, same = _loss(new_logprobs=torch.zeros(4))
    assert same["approx_kl"].item() == 0.0 and same["clipfrac"].item() == 0.0
    _, diff = _loss()
    r = torch.tensor([1.5, 0.5, 1.0, 1.1])
    assert math.isclose(diff["approx_kl"].item(), ((r - 1) - r.log()).mean().item(), rel_tol=1e-6)


def test_policy_gradient_points_to_higher_advantage_actions() -> None:
    logp = torch.zeros(2, requires_grad=True)
    loss, _ = ppo_loss(logp, torch.zeros(2), torch.tensor([1.0, -1.0]), torch.zeros(2), torch.zeros(2),
                       torch.zeros(2), torch.zeros(2), 0.2, False, 0.0, 0.5)
    loss.backward()
    assert logp.grad is not None
    assert logp.grad[0] < 0 < logp.grad[1]  # descent raises logπ of the positive-advantage action


def test_explained_variance() -> None:
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target) == 1.0
    assert abs(explained_variance(torch.full((4,), 2.5), target)) < 1e-6
    assert math.isnan(explained_variance(target, torch.ones(4)))
