"""Tiny gymnasium envs whose correct values are known in closed form, registered for the tests."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ConstantRewardEnv(gym.Env):
    """Reward 1 every step, never terminates, constant observation: V(s) = 1 / (1 - γ) when the time
    limit is treated as a truncation (bootstrapped), and much less if it is mistaken for a termination."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(1, np.float32), 1.0, False, False, {}


class DictObsEnv(ConstantRewardEnv):
    """An env with a Dict observation space, which rlctl must refuse with a clear message."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Dict({"a": spaces.Box(-1.0, 1.0, (1,), np.float32)})

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        return {"a": np.zeros(1, np.float32)}, {}


class TargetEnv(gym.Env):
    """One-step bandit over a MultiDiscrete action: reward = number of components equal to the target."""

    target = np.array([2, 0, 1])

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.MultiDiscrete([3, 2, 4])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(2, np.float32), float(np.sum(action == self.target)), True, False, {}


def register() -> None:
    specs = {
        "rlctl-test/Constant-v0": (ConstantRewardEnv, 20),
        "rlctl-test/DictObs-v0": (DictObsEnv, 20),
        "rlctl-test/Target-v0": (TargetEnv, None),
    }
    for env_id, (cls, limit) in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=cls, max_episode_steps=limit)


register()
