"""An integral of the observed target error, appended to the quadrotor's observation.

A feed-forward policy is a static map from observation to action, so it has no integral action: on a
vehicle heavier than nominal, or with weaker propellers, it hovers where its proportional response
balances the missing thrust, centimetres off the goal (measured on the held-out set: offsets of
5–17 cm, against a 10 cm success tolerance). Flight controllers remove that offset with an integrator;
this wrapper gives the policy the same state. It is computed from the observation the policy receives
(after sensor noise and delay), as on-board code would compute it, and it is the only state the
exported policy needs besides its inputs (see README, *Robots and UAVs*).

Integration is conditional, as in :class:`rlctl.envs.controllers.quad_pid.QuadPID`: while the target is more
than ``radius`` away the integral holds, so chasing a far waypoint does not wind it up, and what it has
learnt about the vehicle (its weight, its thrust asymmetry) carries over to the next waypoint.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class TargetErrorIntegral(gym.ObservationWrapper):
    """Append ``clip(∫ e dt, ±limit) / limit`` (3 values in [-1, 1]) to the observation, ``e`` = target − position.

    The base env must name its ``"target"`` observation slice in ``obs_slices`` and have ``dt``.
    """

    def __init__(self, env: gym.Env, radius: float = 0.3, limit: float = 0.5) -> None:
        super().__init__(env)
        if radius <= 0 or limit <= 0:
            raise ValueError(f"radius and limit must be positive, got {radius} and {limit}")
        base = env.unwrapped
        self._target: slice = base.obs_slices["target"]  # type: ignore[attr-defined]
        self.dt: float = float(base.dt)  # type: ignore[attr-defined]
        self.radius, self.limit = radius, limit
        dim = int(np.prod(env.observation_space.shape or (0,))) + 3
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.integral = np.zeros(3)

    @property
    def wrapper_state(self) -> dict[str, Any]:
        """The integral so far: it shapes every later observation (for :mod:`rlctl.envs.snapshot`)."""
        return {"integral": self.integral.copy()}

    @wrapper_state.setter
    def wrapper_state(self, state: dict[str, Any]) -> None:
        self.integral = np.array(state["integral"], dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self.integral = np.zeros(3)
        obs, info = self.env.reset(seed=seed, options=options)
        return self.observation(obs), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        error = np.asarray(obs[self._target], dtype=np.float64)
        if np.linalg.norm(error) <= self.radius:
            self.integral = np.clip(self.integral + error * self.dt, -self.limit, self.limit)
        return self.observation(obs), reward, terminated, truncated, info

    def describe(self) -> dict[str, Any]:
        """What on-board code must reproduce (the export writes it next to the model)."""
        dim = int(np.prod(self.observation_space.shape or (0,)))
        return {"obs": [dim - 3, dim], "of": "target", "radius": self.radius, "limit": self.limit, "dt": self.dt,
                "rule": "if |target| <= radius: I = clip(I + target*dt, -limit, limit); obs = I / limit; "
                        "I = 0 at episode start"}

    def observation(self, observation: Any) -> np.ndarray:
        extra = (self.integral / self.limit).astype(np.float32)
        return np.concatenate([np.asarray(observation, dtype=np.float32), extra])
