"""``rlctl/ReacherSparse-v0``: MuJoCo's Reacher-v5 with a success-only reward.

The two-link arm must bring its fingertip within 2 cm of the target *and* be nearly still there (joint speeds
under 1 rad/s): reward 1 and the episode ends on success, reward 0 on every other step, 50 steps at most.
A uniformly random policy never succeeds (0 of 100 episodes, seeds 0–99), so plain PPO gets no learning signal
until it stumbles on the target; the scripted controller ``controller:reacher`` (inverse kinematics + PD)
succeeds in about 15 steps and can record demonstrations (``rlctl demo record``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv


class ReacherSparseEnv(ReacherEnv):
    """Reacher-v5, reward = success only (see the module docstring)."""

    def __init__(self, success_distance: float = 0.02, max_speed: float = 1.0, **kwargs: Any) -> None:
        self.success_distance, self.max_speed = float(success_distance), float(max_speed)
        super().__init__(**kwargs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:  # type: ignore[override]
        obs, _, terminated, truncated, info = super().step(action)
        distance = float(np.linalg.norm(obs[8:10]))
        speed = float(np.linalg.norm(obs[6:8]))
        success = distance < self.success_distance and speed < self.max_speed
        info = {**info, "is_success": success, "distance": distance}
        return obs, float(success), bool(terminated or success), truncated, info
