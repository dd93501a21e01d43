"""The infinite-horizon test: only correct time-limit bootstrapping learns V(s0) = 1 / (1 − γ)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlctl.train.loop import train
from tests.helpers import small_config

GAMMA = 0.9


def _fitted_value(tmp_path: Path, env_id: str) -> float:
    cfg = small_config(
        env_id,
        env={"num_envs": 4},
        policy={"normalize_obs": False, "hidden_sizes": [16]},
        ppo={"total_timesteps": 6400, "num_steps": 64, "minibatch_size": 64, "update_epochs": 10,
             "learning_rate": 3e-3, "gamma": GAMMA, "gae_lambda": 0.95, "normalize_reward": False,
             "vf_coef": 1.0, "max_grad_norm": 10.0},
        run={"checkpoint_every": 10**9},
    )
    result = train(cfg, tmp_path, progress=False)
    with torch.no_grad():
        return float(result.agent.value(torch.zeros(1, 1)).item())


def test_value_of_never_ending_env_is_one_over_one_minus_gamma(tmp_path: Path) -> None:
    value = _fitted_value(tmp_path, "rlctl-test/Constant-v0")
    assert value == pytest.approx(1.0 / (1.0 - GAMMA), abs=0.5)


class _TruncationAsTermination(gym.Wrapper):
    """What CleanRL-style code effectively does: the time limit is reported as a termination."""

    def step(self, action):  # type: ignore[no-untyped-def]
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, False, info


def test_treating_truncation_as_termination_underestimates_the_value(tmp_path: Path) -> None:
    if "rlctl-test/ConstantWrong-v0" not in gym.registry:
        gym.register("rlctl-test/ConstantWrong-v0",
                     entry_point=lambda: _TruncationAsTermination(gym.make("rlctl-test/Constant-v0")))
    value = _fitted_value(tmp_path, "rlctl-test/ConstantWrong-v0")
    # Averaged over an episode's 20 steps, the truncated return is far below 1/(1-γ) = 10.
    mean_truncated_return = np.mean([(1 - GAMMA ** (20 - t)) / (1 - GAMMA) for t in range(20)])
    assert value < 9.0
    assert value == pytest.approx(mean_truncated_return, abs=1.0)
