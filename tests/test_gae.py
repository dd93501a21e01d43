from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlctl.agents.gae import compute_gae
from rlctl.agents.policy import ActorCritic
from rlctl.agents.rollout import Rollout


def _col(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64).unsqueeze(1)


def _flags(*xs: bool) -> torch.Tensor:
    return torch.tensor(xs).unsqueeze(1)


def test_gae_matches_hand_computation_without_episode_end() -> None:
    g, lam = 0.9, 0.8
    r, v, nv = _col(1.0, 2.0, 3.0), _col(0.5, 1.0, 1.5), _col(1.0, 1.5, 2.0)
    adv, ret = compute_gae(r, v, nv, _flags(False, False, False), _flags(False, False, False), g, lam)
    d = [1 + g * 1.0 - 0.5, 2 + g * 1.5 - 1.0, 3 + g * 2.0 - 1.5]
    a2 = d[2]
    a1 = d[1] + g * lam * a2
    a0 = d[0] + g * lam * a1
    torch.testing.assert_close(adv, _col(a0, a1, a2))
    torch.testing.assert_close(ret, adv + v)


def test_termination_stops_bootstrap_and_trace() -> None:
    g, lam = 0.9, 0.8
    r, v, nv = _col(1.0, 2.0, 3.0), _col(0.5, 1.0, 1.5), _col(1.0, 7.0, 2.0)
    adv, _ = compute_gae(r, v, nv, _flags(False, True, False), _flags(False, False, False), g, lam)
    a2 = 3 + g * 2.0 - 1.5
    a1 = 2 - 1.0  # no bootstrap from the (absorbing) next state, no trace from the next episode
    a0 = (1 + g * 1.0 - 0.5) + g * lam * a1
    torch.testing.assert_close(adv, _col(a0, a1, a2))


def test_truncation_bootstraps_with_final_value_but_stops_trace() -> None:
    g, lam = 0.9, 0.8
    r, v, nv = _col(1.0, 2.0, 3.0), _col(0.5, 1.0, 1.5), _col(1.0, 7.0, 2.0)
    adv, _ = compute_gae(r, v, nv, _flags(False, False, False), _flags(False, True, False), g, lam)
    a2 = 3 + g * 2.0 - 1.5
    a1 = 2 + g * 7.0 - 1.0  # V(final obs) = 7 is used, the next row (new episode) is not
    a0 = (1 + g * 1.0 - 0.5) + g * lam * a1
    torch.testing.assert_close(adv, _col(a0, a1, a2))


def test_gamma_lambda_one_gives_monte_carlo_returns() -> None:
    torch.manual_seed(0)
    rewards = torch.randn(6, 2, dtype=torch.float64)
    values = torch.randn(6, 2, dtype=torch.float64)
    terminated = torch.zeros(6, 2, dtype=torch.bool)
    terminated[2, 0] = True  # env 0: episode ends after step 2
    terminated[5, :] = True  # both envs end at the last step
    next_values = torch.cat([values[1:], torch.randn(1, 2, dtype=torch.float64)])
    next_values[2, 0] = 123.0  # V(s_{t+1}) after a termination must be ignored
    _, returns = compute_gae(rewards, values, next_values, terminated, torch.zeros_like(terminated), 1.0, 1.0)
    expected = torch.empty_like(rewards)
    expected[:3, 0] = rewards[:3, 0].flip(0).cumsum(0).flip(0)
    expected[3:, 0] = rewards[3:, 0].flip(0).cumsum(0).flip(0)
    expected[:, 1] = rewards[:, 1].flip(0).cumsum(0).flip(0)
    torch.testing.assert_close(returns, expected)


def test_gae_rejects_mismatched_shapes() -> None:
    x = torch.zeros(4, 2)
    flags = torch.zeros(4, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="next_values"):
        compute_gae(x, x, torch.zeros(4, 3), flags, flags, 0.99, 0.95)


def _filled_rollout(agent: ActorCritic, steps: int = 6, envs: int = 3) -> Rollout:
    """A rollout as the collector fills it: values and next values from ``agent``, a time limit and a termination."""
    gen = torch.Generator().manual_seed(0)
    rollout = Rollout.allocate(steps, envs, 4, 2, False, torch.device("cpu"))
    rollout.obs.copy_(torch.randn(steps, envs, 4, generator=gen))
    rollout.rewards.copy_(torch.randn(steps, envs, generator=gen))
    rollout.terminated[2, 0] = True
    rollout.truncated[3, 1] = True
    with torch.no_grad():
        for t in range(steps):
            rollout.values[t] = agent.value(rollout.obs[t])
    rollout.next_values[:-1] = rollout.values[1:]
    rollout.next_values[-1] = torch.tensor([0.5, -0.5, 1.0])  # V(next obs): not in the rollout
    rollout.next_values[3, 1] = 2.0  # V(final obs) at the time limit
    return rollout


def test_recomputed_advantages_follow_the_current_critic_and_keep_the_unseen_bootstraps() -> None:
    from rlctl.agents.distributions import ActionSpec
    from rlctl.config import PPOConfig
    from rlctl.train.advantages import recompute_advantages

    torch.manual_seed(0)
    agent = ActorCritic(4, ActionSpec("continuous", 2, low=(-1.0,) * 2, high=(1.0,) * 2), [8, 8])
    rollout = _filled_rollout(agent)
    ppo = PPOConfig(gamma=0.9, gae_lambda=0.8)
    adv, ret = compute_gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated,
                           rollout.truncated, ppo.gamma, ppo.gae_lambda)
    batch: dict[str, torch.Tensor] = {}
    recompute_advantages(agent, rollout, ppo, batch)  # critic unchanged: the collection-time advantages
    torch.testing.assert_close(batch["advantages"], adv.flatten())
    torch.testing.assert_close(batch["returns"], ret.flatten())

    with torch.no_grad():  # the critic moves, as after an epoch
        for p in agent.parameters():
            p.add_(0.1)
    recompute_advantages(agent, rollout, ppo, batch)
    with torch.no_grad():
        fresh = agent.value(rollout.obs.flatten(0, 1)).reshape(6, 3)
    torch.testing.assert_close(batch["values"], fresh.flatten())
    expected_next = fresh.roll(-1, 0)
    expected_next[-1] = rollout.next_values[-1]  # beyond the rollout: kept
    expected_next[3, 1] = 2.0  # time limit: V(final obs) kept
    adv2, ret2 = compute_gae(rollout.rewards, fresh, expected_next, rollout.terminated, rollout.truncated,
                             ppo.gamma, ppo.gae_lambda)
    torch.testing.assert_close(batch["advantages"], adv2.flatten())
    torch.testing.assert_close(batch["returns"], ret2.flatten())
    assert not torch.allclose(adv2, adv)


@pytest.mark.slow
def test_training_with_recomputed_advantages_balances_cartpole(tmp_path: Path) -> None:
    from rlctl.train.loop import train
    from tests.helpers import small_config

    cfg = small_config("CartPole-v1", ppo={"total_timesteps": 40960, "recompute_adv": True}, run={"eval_episodes": 5})
    result = train(cfg, tmp_path, progress=False)
    assert result.final_eval is not None and result.final_eval["mean_return"] >= 475
