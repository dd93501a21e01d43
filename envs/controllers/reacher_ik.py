"""Scripted controller for ``Reacher-v5`` and ``rlctl/ReacherSparse-v0``: inverse kinematics of the two-link arm,
then a PD law on the joint angles (torques clipped to the action range)."""

from __future__ import annotations

from typing import Any

import numpy as np

LINK1, LINK2 = 0.1, 0.11  # shoulder → elbow, elbow → fingertip (reacher.xml)


class ReacherIKController:
    """Elbow-up IK solution for the target in the observation, tracked with ``kp``·error − ``kd``·velocity."""

    def __init__(self, env: Any, kp: float = 4.0, kd: float = 0.3) -> None:
        shape = getattr(env.observation_space, "shape", None)
        if shape != (10,):
            raise ValueError(f"the reacher controller drives Reacher-v5 (10 observations), not {shape}")
        self.kp, self.kd = kp, kd

    def reset(self) -> None:
        pass

    def act(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        q = np.arctan2(obs[2:4], obs[0:2])
        x, y = obs[4], obs[5]
        cos2 = np.clip((x * x + y * y - LINK1**2 - LINK2**2) / (2 * LINK1 * LINK2), -1.0, 1.0)
        q2 = np.arccos(cos2)
        q1 = np.arctan2(y, x) - np.arctan2(LINK2 * np.sin(q2), LINK1 + LINK2 * np.cos(q2))
        error = (np.array([q1, q2]) - q + np.pi) % (2 * np.pi) - np.pi
        return np.clip(self.kp * error - self.kd * obs[6:8], -1.0, 1.0).astype(np.float32)
