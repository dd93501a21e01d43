"""A reward hook: replace an env's reward with a user function that returns named components.

The LLM reward-refinement loop and users' own shaping plug in here. The function sees the
transition and the env's info; the components it returns are put in ``info["reward_components"]``
(and logged by the trainer as ``reward/<name>``), the env's own reward in ``info["env_reward"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

RewardFn = Callable[[Any, Any, Any, float, dict[str, Any]], "tuple[float, dict[str, float]]"]
"""``fn(obs, action, next_obs, env_reward, info) -> (reward, {name: value})``."""


class RewardHook(gym.Wrapper):
    """Swap the reward for ``reward_fn``'s; keep the env's reward and the components in ``info``."""

    def __init__(self, env: gym.Env, reward_fn: RewardFn) -> None:
        super().__init__(env)
        self._reward_fn = reward_fn
        self._last_obs: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        reward, components = self._reward_fn(self._last_obs, action, obs, float(env_reward), info)
        if not np.isfinite(reward):
            raise ValueError(f"reward function returned a non-finite reward {reward!r}")
        info = dict(info, env_reward=float(env_reward), reward_components=dict(components))
        self._last_obs = obs
        return obs, float(reward), terminated, truncated, info
