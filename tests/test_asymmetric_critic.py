"""Asymmetric actor-critic: critic-only (privileged) observation entries reach the critic, never the actor,
and never the deployed model; the quadrotor's privileged state is the simulator's truth."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import rlctl.envs  # noqa: F401  (registers the rlctl/ ids)
from rlctl.agents.distributions import ActionSpec
from rlctl.agents.policy import ActorCritic
from rlctl.envs.uav import privileged
from rlctl.errors import UserError
from rlctl.export import export_policy
from rlctl.spaces import adapter_for, adapter_for_env

SPEC = ActionSpec(kind="continuous", dim=2, low=(-1.0, -1.0), high=(1.0, 1.0))


def _asymmetric(obs_dim: int = 10, actor_obs_dim: int = 6) -> ActorCritic:
    torch.manual_seed(0)
    agent = ActorCritic(obs_dim, SPEC, [16, 16], actor_obs_dim=actor_obs_dim)
    with torch.no_grad():
        agent.obs_rms.mean.copy_(torch.linspace(-2, 2, obs_dim, dtype=torch.float64))
        agent.obs_rms.var.copy_(torch.linspace(0.3, 5, obs_dim, dtype=torch.float64))
        agent.actor[-1].weight.mul_(100.0)  # live actions, so the clip and a real dependence show
    return agent.eval()


def test_actor_ignores_critic_only_entries_and_the_critic_uses_them() -> None:
    agent = _asymmetric()
    assert agent.actor[0].in_features == 6 and agent.critic[0].in_features == 10 and agent.critic_only_obs == 4
    obs = torch.randn(32, 10, generator=torch.Generator().manual_seed(1))
    other = obs.clone()
    other[:, 6:] += 3.0  # change only the privileged tail
    with torch.no_grad():
        a, b = agent.normalize_obs(obs), agent.normalize_obs(other)
        assert torch.equal(agent.dist(a).mode(), agent.dist(b).mode())
        assert not torch.allclose(agent.value(a), agent.value(b))
        changed = obs.clone()
        changed[:, 0] += 1.0  # and the actor does see its own part
        assert not torch.equal(agent(changed), agent(obs))


def test_deployable_takes_only_the_actor_observation_and_acts_identically() -> None:
    agent = _asymmetric()
    deployed = agent.deployable()
    assert deployed.obs_dim == 6 and deployed.critic_only_obs == 0 and deployed.obs_rms.mean.shape == (6,)
    obs = torch.randn(64, 10, generator=torch.Generator().manual_seed(2)) * 4
    torch.testing.assert_close(deployed(obs[:, :6]), agent(obs), rtol=0, atol=0)
    symmetric = ActorCritic(6, SPEC, [16, 16])
    assert symmetric.deployable() is symmetric


def test_adapter_rejects_a_critic_only_count_the_observation_cannot_hold() -> None:
    act = spaces.Box(-1, 1, (2,), np.float32)
    assert adapter_for(spaces.Box(-1, 1, (5,)), act, 2).critic_only_obs == 2
    for bad in (5, 9):
        with pytest.raises(UserError, match="critic-only"):
            adapter_for(spaces.Box(-1, 1, (5,)), act, bad)
    with pytest.raises(UserError, match="critic-only"):
        adapter_for(spaces.Box(0, 255, (4, 84, 84), np.uint8), spaces.Discrete(3), 1)


def test_export_of_an_asymmetric_policy_leaves_the_privileged_inputs_out(tmp_path) -> None:
    agent = _asymmetric()
    adapter = adapter_for(spaces.Box(-np.inf, np.inf, (10,), np.float32), spaces.Box(-1, 1, (2,), np.float32), 4)
    meta = export_policy(agent, adapter, None, tmp_path, "numpy")
    assert meta["io"]["input_shape"] == ["batch", 6] and meta["observation"]["critic_only_dropped"] == 4
    from rlctl.export import NumpyPolicy

    runner = NumpyPolicy.load(tmp_path / "policy.npz")
    obs = np.random.default_rng(3).normal(0, 3, (16, 10)).astype(np.float32)
    np.testing.assert_allclose(runner(obs[:, :6]), agent(torch.from_numpy(obs)).numpy(), atol=1e-5)


def test_quad_privileged_state_is_the_simulators_truth_and_leaves_the_actor_part_alone() -> None:
    kwargs = {"action_mode": "ctbr", "error_integral": True, "sim2real": "held-out"}
    plain = gym.make("rlctl/QuadHover-v0", **kwargs)
    env = gym.make("rlctl/QuadHover-v0", privileged_obs=True, **kwargs)
    assert adapter_for_env(env).critic_only_obs == privileged.DIM and adapter_for_env(plain).critic_only_obs == 0
    obs, info = env.reset(seed=7)
    ref, _ = plain.reset(seed=7)
    action = np.full(env.action_space.shape, 0.1, np.float32)
    for _ in range(5):
        obs, *_ = env.step(action)
        ref, *_ = plain.step(action)
    n = ref.shape[0]
    assert obs.shape == (n + privileged.DIM,)
    np.testing.assert_array_equal(obs[:n], ref)  # the actor's observation is unchanged, noise and delay included
    tail = dict(zip((name for name, _ in privileged.FEATURES),
                    np.split(obs[n:], np.cumsum([w for _, w in privileged.FEATURES])[:-1]), strict=True))
    base = env.unwrapped
    np.testing.assert_allclose(tail["target_error"], base.target - base.pos, atol=1e-6)  # noise-free, undelayed
    assert not np.allclose(obs[base.obs_slices["target"]], tail["target_error"], atol=1e-4)  # the actor's is not
    drawn = info["sim2real"]
    assert tail["mass"][0] == pytest.approx(drawn["dynamics"]["mass"] / base.nominal.mass - 1.0, rel=1e-5)
    assert tail["obs_delay"][0] == drawn["obs_delay"] >= 1 and tail["action_delay"][0] == drawn["action_delay"] >= 1
    env.close()
    plain.close()


@pytest.mark.parametrize("sampler", ["inline", "process"])
def test_training_on_a_privileged_env_builds_an_asymmetric_learner_and_workers(tmp_path, sampler: str) -> None:
    from rlctl.train.loop import train
    from tests.helpers import small_config, weights

    cfg = small_config("rlctl/QuadHover-v0", env={"num_envs": 2, "kwargs": {"privileged_obs": True}},
                       ppo={"total_timesteps": 256, "num_steps": 64, "minibatch_size": 64, "update_epochs": 1},
                       run={"sampler": sampler, "num_workers": 1})
    result = train(cfg, tmp_path)
    assert result.agent.critic_only_obs == privileged.DIM
    saved = weights(tmp_path)
    assert saved["actor.0.weight"].shape[1] + privileged.DIM == saved["critic.0.weight"].shape[1]
