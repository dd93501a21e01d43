"""MuJoCo tasks that observe positions only: a velocity must be inferred from the last few observations.

The standard partially observed check for policies with memory ("-P" tasks, as in Ni, Eysenbach and
Salakhutdinov 2022, "Recurrent model-free RL can be a strong baseline for many POMDPs"): dynamics, reward,
termination and time limit are the v5 task's own, the observation drops every joint velocity. A feed-forward
policy sees a still and a moving system alike; a recurrent one can difference what it saw.

* ``rlctl/InvertedPendulumP-v5``: cart position and pole angle (2 of 4 numbers);
* ``rlctl/HalfCheetahP-v5``: the joint positions without the root's x (8 of 17).

Subclasses, not wrappers: the env is still MuJoCo's, so exact state save/restore (:mod:`rlctl.envs.snapshot`)
and rendering work unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from gymnasium.spaces import Box


def _positions_space(size: int) -> Box:
    return Box(low=-np.inf, high=np.inf, shape=(size,), dtype=np.float64)


class InvertedPendulumPositionsEnv(InvertedPendulumEnv):
    """InvertedPendulum-v5 observing ``qpos`` only (cart position, pole angle)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.observation_space = _positions_space(self.data.qpos.size)
        self.observation_structure = {"qpos": self.data.qpos.size}

    def _get_obs(self) -> np.ndarray:
        return self.data.qpos.ravel().copy()


class HalfCheetahPositionsEnv(HalfCheetahEnv):
    """HalfCheetah-v5 observing ``qpos[1:]`` only (the root's x is left out, as in v5's default)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        skip = 1 if self._exclude_current_positions_from_observation else 0
        self.observation_space = _positions_space(self.data.qpos.size - skip)
        self.observation_structure = {"qpos": self.data.qpos.size - skip}

    def _get_obs(self) -> np.ndarray:
        position = self.data.qpos.flatten()
        return position[1:].copy() if self._exclude_current_positions_from_observation else position.copy()
