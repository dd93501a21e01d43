from __future__ import annotations

import math

import pytest
import torch

from rlctl.agents.ppo import explained_variance, ppo_loss


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


def _cleanrl_value_loss(newvalue: torch.Tensor, b_values: torch.Tensor, b_returns: torch.Tensor,
                        clip_coef: float, clip_vloss: bool) -> torch.Tensor:
    """ppo_continuous_action.py's value loss, as CleanRL writes it (with its ½)."""
    if clip_vloss:
        v_loss_unclipped = (newvalue - b_returns) ** 2
        v_clipped = b_values + torch.clamp(newvalue - b_values, -clip_coef, clip_coef)
        v_loss_clipped = (v_clipped - b_returns) ** 2
        return 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
    return 0.5 * ((newvalue - b_returns) ** 2).mean()


@pytest.mark.parametrize("clip_vloss", [False, True])
@pytest.mark.parametrize(("env_id", "preset", "cleanrl_clip"),
                         [("HalfCheetah-v5", "cleanrl-continuous", 0.2), ("ALE/Pong-v5", "atari", 0.1)])
def test_cleanrl_parity_presets_weight_the_value_loss_as_cleanrl_does(env_id: str, preset: str, cleanrl_clip: float,
                                                                       clip_vloss: bool) -> None:
    from rlctl.resolve import resolve_config

    cfg, _ = resolve_config(env_id, preset)
    assert cfg.ppo.clip_vloss and cfg.ppo.clip_coef == cleanrl_clip  # as in CleanRL; both loss forms are checked
    gen = torch.Generator().manual_seed(0)
    new_values, old_values, returns = (torch.randn(256, generator=gen) for _ in range(3))
    zeros = torch.zeros(256)
    _, stats = ppo_loss(zeros, zeros, zeros, new_values, old_values, returns, zeros, cfg.ppo.clip_coef, clip_vloss,
                        0.0, cfg.ppo.vf_coef)
    cleanrl = 0.5 * _cleanrl_value_loss(new_values, old_values, returns, cleanrl_clip, clip_vloss)  # its vf_coef 0.5
    assert math.isclose(cfg.ppo.vf_coef * stats["value_loss"].item(), cleanrl.item(), rel_tol=1e-6)


def test_a_masked_sample_with_an_overflowing_ratio_leaves_the_loss_gradient_and_diagnostics_alone() -> None:
    # sample 2 is a baseline controller's step (weight 0) whose action the learner had given log-prob -150 and now,
    # after imitating it, -1: exp(149) is inf in float32, and inf·0 would be NaN
    new = torch.tensor([0.1, -0.1, -1.0], requires_grad=True)
    old, adv = torch.tensor([0.0, 0.0, -150.0]), torch.tensor([1.0, -1.0, 0.5])
    zeros = torch.zeros(3)
    loss, stats = ppo_loss(new, old, adv, zeros, zeros, zeros, zeros, 0.2, False, 0.0, 0.5,
                           policy_weight=torch.tensor([1.0, 1.0, 0.0]))
    loss.backward()
    assert torch.isfinite(loss) and new.grad is not None and torch.isfinite(new.grad).all()
    assert new.grad[2] == 0.0
    kept = torch.tensor([0.1, -0.1], requires_grad=True)
    loss2, stats2 = ppo_loss(kept, old[:2], adv[:2], zeros[:2], zeros[:2], zeros[:2], zeros[:2], 0.2, False, 0.0, 0.5)
    loss2.backward()
    torch.testing.assert_close(loss, loss2)
    torch.testing.assert_close(new.grad[:2], kept.grad)
    for key in ("approx_kl", "old_approx_kl", "clipfrac"):  # the trust region of the learner's own steps
        torch.testing.assert_close(stats[key], stats2[key])
