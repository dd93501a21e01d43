"""A toy env with named reward terms (as the quadrotor has), cheap enough to run whole refine loops in tests.

``tests.test_refine_toyenv:RefineToy-v0``: a point on a line must reach 0 and stay within 0.1 of it; 40 steps.
Its reward is a weighted sum of named terms in ``info["reward_components"]``, with ``weights`` and
``obs_slices`` as :class:`rlctl.envs.uav.quadrotor.QuadrotorEnv` has them, and ``info["is_success"]``.
The candidate processes import this module by that id.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

WEIGHTS = {"progress": 2.0, "effort": 0.1, "success": 5.0}


class RefineToyEnv(gym.Env):
    obs_slices = {"position": slice(0, 1), "velocity": slice(1, 2)}  # noqa: RUF012 - read-only, as the quadrotor's

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.weights = dict(WEIGHTS)
        self.pos, self.vel, self.t = 0.0, 0.0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos, self.vel, self.t = float(self.np_random.uniform(-1, 1)), 0.0, 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = float(np.clip(np.asarray(action).reshape(-1)[0], -1, 1))
        before = abs(self.pos)
        self.vel = 0.8 * self.vel + 0.1 * a
        self.pos += self.vel
        self.t += 1
        truncated = self.t >= 40
        success = truncated and abs(self.pos) < 0.1
        comp = {"progress": WEIGHTS["progress"] * (before - abs(self.pos)), "effort": -WEIGHTS["effort"] * a * a}
        if success:
            comp["success"] = WEIGHTS["success"]
        info = {"reward_components": comp, "is_success": success, "distance": abs(self.pos)}
        return self._obs(), float(sum(comp.values())), False, truncated, info

    def _obs(self) -> np.ndarray:
        return np.array([self.pos, self.vel], dtype=np.float32)


gym.register(id="RefineToy-v0", entry_point=RefineToyEnv, max_episode_steps=40)

ENV_ID = "tests.test_refine_toyenv:RefineToy-v0"


def test_the_toy_env_reports_its_terms_so_the_schema_names_them() -> None:
    from rlctl.refine.schema import schema_for

    schema = schema_for(ENV_ID, {})
    names = [v.name for v in schema.variables()]
    assert schema.terms == WEIGHTS and schema.fitness == "success"
    assert {"position", "velocity", "env_progress", "env_effort", "env_success", "distance"} <= set(names)
