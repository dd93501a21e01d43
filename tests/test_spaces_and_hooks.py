from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rlctl.errors import UserError
from rlctl.logger import read_metrics
from rlctl.spaces import adapter_for
from rlctl.train.loop import train
from tests.helpers import small_config


def test_adapter_handles_discrete_multidiscrete_and_box() -> None:
    a = adapter_for(spaces.Discrete(4, start=1), spaces.Discrete(3, start=-1))
    assert a.obs_dim == 4 and a.action.kind == "discrete" and a.action.nvec == (3,)
    np.testing.assert_array_equal(a.obs(np.array([1, 4])), np.eye(4, dtype=np.float32)[[0, 3]])
    np.testing.assert_array_equal(a.to_env(np.array([[0], [2]])), [-1, 1])

    m = adapter_for(spaces.Box(-1, 1, (2, 3)), spaces.MultiDiscrete([3, 2]))
    assert m.obs_dim == 6 and m.action.kind == "multidiscrete" and m.action.dim == 2
    assert m.obs(np.zeros((5, 2, 3))).shape == (5, 6)

    c = adapter_for(spaces.Box(-1, 1, (3,)), spaces.Box(-2.0, 2.0, (2, 2), np.float32))
    assert c.action.kind == "continuous" and c.action.dim == 4 and c.action.low == (-2.0,) * 4
    assert c.to_env(np.zeros((7, 4), np.float32)).shape == (7, 2, 2)

    unbounded = adapter_for(spaces.Box(-1, 1, (3,)), spaces.Box(-np.inf, np.inf, (2,), np.float32))
    assert unbounded.action.low == ()  # nothing to clip to


@pytest.mark.parametrize("space", [spaces.Dict({"a": spaces.Discrete(2)}), spaces.Tuple([spaces.Discrete(2)]),
                                   spaces.Box(0, 255, (84, 84, 3), np.uint8)])
def test_unsupported_observation_spaces_are_named(space: spaces.Space) -> None:
    with pytest.raises(UserError, match=type(space).__name__ if not isinstance(space, spaces.Box) else "CNN"):
        adapter_for(space, spaces.Discrete(2))


def test_continuous_actions_are_clipped_only_on_the_way_to_the_env(tmp_path: Path) -> None:
    cfg = small_config("Pendulum-v1", ppo={"total_timesteps": 256, "num_steps": 256, "minibatch_size": 64,
                                           "update_epochs": 1}, policy={"log_std_init": 2.0})
    from rlctl.agents.rollout import Rollout
    from rlctl.envs.make import make_vector_env
    from rlctl.runs import build_agent
    from rlctl.sampling.collector import Collector

    envs = make_vector_env("Pendulum-v1", 1)
    adapter = adapter_for(envs.single_observation_space, envs.single_action_space)
    agent = build_agent(cfg, adapter, torch.device("cpu"))
    rollout = Rollout.allocate(256, 1, adapter.obs_dim, 1, False, torch.device("cpu"))
    collector = Collector(envs, agent, adapter, cfg.ppo, torch.device("cpu"))
    collector.reset(0)
    collector.collect(rollout, 0)
    envs.close()
    assert rollout.actions.abs().max() > 2.0  # std e² ≈ 7.4: samples leave [-2, 2]
    assert rollout.executed_actions.abs().max() <= 2.0
    # the stored log-prob is that of the unclipped sample
    dist = agent.dist(rollout.obs[:, 0])
    torch.testing.assert_close(dist.log_prob(rollout.actions[:, 0]), rollout.logprobs[:, 0])


def test_multidiscrete_policy_learns_the_target_combination(tmp_path: Path) -> None:
    cfg = small_config("rlctl-test/Target-v0", env={"num_envs": 8},
                       policy={"normalize_obs": False},
                       ppo={"total_timesteps": 8192, "num_steps": 16, "minibatch_size": 64, "update_epochs": 4,
                            "learning_rate": 3e-3, "normalize_reward": False, "ent_coef": 0.0})
    result = train(cfg, tmp_path, progress=False)
    assert np.mean(result.episode_returns[:64]) < 1.5  # random: 1/3 + 1/2 + 1/4 ≈ 1.08
    assert np.mean(result.episode_returns[-64:]) > 2.8  # all three components right
    greedy = result.agent.dist(torch.zeros(1, 2)).mode()[0].tolist()
    assert greedy == [2, 0, 1]


def test_reward_hook_replaces_reward_and_logs_named_components(tmp_path: Path) -> None:
    def shaped(obs, action, next_obs, env_reward, info):  # type: ignore[no-untyped-def]
        upright = float(np.cos(next_obs[2]))
        return 2.0 * env_reward + upright, {"alive": 2.0 * env_reward, "upright": upright}

    cfg = small_config("CartPole-v1", env={"num_envs": 2}, ppo={"total_timesteps": 512, "num_steps": 128,
                                                                "minibatch_size": 64, "update_epochs": 1},
                       run={"log_every": 256})
    result = train(cfg, tmp_path, reward_fn=shaped, progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    alive = [r["value"] for r in records if r["tag"] == "reward/alive"]
    upright = [r["value"] for r in records if r["tag"] == "reward/upright"]
    assert alive and all(v == pytest.approx(2.0) for v in alive)
    assert upright and all(0.9 < v <= 1.0 for v in upright)
    # the episodic return stays the env's own (1 per step); the shaped one is about 3 per step
    lengths = [r["value"] for r in records if r["tag"] == "charts/episodic_length"]
    shaped_returns = [r["value"] for r in records if r["tag"] == "charts/shaped_return"]
    assert result.episode_returns[0] == lengths[0]
    assert shaped_returns[0] == pytest.approx(3.0 * lengths[0], rel=0.05)


def test_async_vector_env_matches_sync_vector_env(tmp_path: Path) -> None:
    kw = dict(env={"num_envs": 2}, ppo={"total_timesteps": 512, "num_steps": 128, "minibatch_size": 64,
                                         "update_epochs": 1})
    sync = train(small_config("CartPole-v1", **kw), tmp_path / "s", progress=False)  # type: ignore[arg-type]
    kw["env"] = {"num_envs": 2, "vectorization": "async"}
    asyn = train(small_config("CartPole-v1", **kw), tmp_path / "a", progress=False)  # type: ignore[arg-type]
    assert sync.episode_returns == asyn.episode_returns
