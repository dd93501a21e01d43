"""CAPS smoothness regularization: the penalties' math, the next-step pairing, and that the regularized
update actually makes the policy smoother (what it is for)."""

from __future__ import annotations

import pytest
import torch

from rlctl.agents.distributions import ActionSpec
from rlctl.agents.policy import ActorCritic
from rlctl.agents.ppo import MinibatchStep, ppo_update, smoothness_penalties
from rlctl.agents.rollout import Rollout
from rlctl.config import PPOConfig, from_dict
from rlctl.errors import UserError
from rlctl.train.advantages import next_step_pairs

SPEC = ActionSpec("continuous", 2, low=(-1.0,) * 2, high=(1.0,) * 2)


def test_penalties_match_hand_computation_and_skip_pairs_across_resets() -> None:
    mean = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    nxt = torch.tensor([[1.0, 0.0], [1.0, 2.0], [9.0, 9.0]])
    valid = torch.tensor([1.0, 1.0, 0.0])  # the third pair straddles an episode end
    near = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 2.0]])
    temporal, spatial = smoothness_penalties(mean, nxt, valid, near)
    assert temporal.item() == pytest.approx((1.0 + 4.0) / 2)
    assert spatial.item() == pytest.approx(1.0 / 3)
    assert smoothness_penalties(mean) == (0.0, 0.0)


def test_next_step_pairs_follow_each_env_and_mask_episode_ends() -> None:
    r = Rollout.allocate(3, 2, 1, 1, False, torch.device("cpu"))
    r.obs[:, :, 0] = torch.tensor([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    r.terminated[0, 1] = True
    r.truncated[1, 0] = True
    pairs = next_step_pairs(r)
    # flat index t*N + n; the pair of (t, n) is (t+1, n)
    torch.testing.assert_close(pairs["next_obs"][:4, 0], torch.tensor([1.0, 11.0, 2.0, 12.0]))
    torch.testing.assert_close(pairs["next_valid"], torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]))


def _sensitivity(agent: ActorCritic, obs: torch.Tensor, sigma: float) -> float:
    gen = torch.Generator().manual_seed(99)
    with torch.no_grad():
        near = obs + sigma * torch.randn(obs.shape, generator=gen)
        return float((agent.dist(obs).mode() - agent.dist(near).mode()).pow(2).sum(-1).mean())


def _train(smooth_spatial: float, smooth_temporal: float) -> tuple[ActorCritic, torch.Tensor, dict[str, float]]:
    torch.manual_seed(0)
    agent = ActorCritic(6, SPEC, [32, 32])
    gen = torch.Generator().manual_seed(1)
    n = 512
    obs = torch.randn(n, 6, generator=gen)
    batch = {"obs": obs, "actions": torch.randn(n, 2, generator=gen), "logprobs": torch.zeros(n),
             "advantages": torch.randn(n, generator=gen), "values": torch.zeros(n),
             "returns": torch.randn(n, generator=gen),
             "next_obs": torch.roll(obs, -1, 0) + 0.05 * torch.randn(n, 6, generator=gen), "next_valid": torch.ones(n)}
    params = PPOConfig(minibatch_size=128, update_epochs=20, smooth_spatial=smooth_spatial,
                       smooth_temporal=smooth_temporal, smooth_sigma=0.3)
    optimizer = torch.optim.Adam(agent.parameters(), lr=3e-3)
    stats = ppo_update(agent, optimizer, batch, params, MinibatchStep(agent, optimizer, params))
    return agent, obs, stats


def test_spatial_regularization_makes_the_policy_less_sensitive_to_its_input() -> None:
    plain, obs, _ = _train(0.0, 0.0)
    smooth, _, stats = _train(5.0, 0.0)
    assert "smooth_spatial" in stats and "smooth_temporal" in stats
    assert _sensitivity(smooth, obs, 0.3) < 0.5 * _sensitivity(plain, obs, 0.3)


def test_temporal_regularization_brings_consecutive_actions_closer() -> None:
    def gap(agent: ActorCritic, obs: torch.Tensor) -> float:
        with torch.no_grad():
            mean = agent.dist(obs).mode()
            return float((mean - mean.roll(-1, 0)).pow(2).sum(-1).mean())

    plain, obs, _ = _train(0.0, 0.0)
    smooth, _, stats = _train(0.0, 5.0)
    assert stats["smooth_temporal"] > 0
    assert gap(smooth, obs) < 0.5 * gap(plain, obs)


def test_bad_smoothness_settings_are_clear_errors() -> None:
    with pytest.raises(UserError, match="smooth_spatial must be >= 0"):
        from_dict({"ppo": {"smooth_spatial": -1.0}})
    with pytest.raises(UserError, match="smooth_sigma must be positive"):
        from_dict({"ppo": {"smooth_sigma": 0.0}})
    discrete = ActorCritic(4, ActionSpec("discrete", 1, nvec=(3,)), [8])
    with pytest.raises(ValueError, match="Gaussian"):
        MinibatchStep(discrete, torch.optim.Adam(discrete.parameters()), PPOConfig(smooth_temporal=1.0))
