"""Energy-based swing-up with a PD catch for gymnasium's Pendulum-v1 (Åström & Furuta, 2000).

Pendulum-v1: θ = 0 is upright, observation ``[cos θ, sin θ, θ̇]``, torque u ∈ [−2, 2], θ̈ = 3g/(2l)·sin θ +
3/(m l²)·u. The energy E = ½ I θ̇² + m g (l/2) cos θ (I = m l²/3) changes at rate θ̇·u, so pushing with
u ∝ (E* − E)·θ̇ pumps the pendulum to the upright energy E* = m g l / 2; near the top a PD law holds it.
The torque limit is under the gravity torque (m g l / 2 = 5), so it takes a few swings: a working but slow
baseline, the kind agency transfer is meant to improve on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class PendulumEnergyController:
    """``act(obs)`` for Pendulum-v1: pump energy until near upright, then PD-stabilize."""

    def __init__(self, env: Any, pump_gain: float = 2.0, kp: float = 12.0, kd: float = 2.5,
                 catch_angle: float = 0.5) -> None:
        base = env.unwrapped
        if not all(hasattr(base, name) for name in ("m", "l", "g", "max_torque")) or \
                getattr(base.observation_space, "shape", None) != (3,):
            raise ValueError(f"it swings up gymnasium's Pendulum-v1, not {type(base).__name__}")
        self.m, self.length, self.g, self.max_torque = float(base.m), float(base.l), float(base.g), \
            float(base.max_torque)
        self.pump_gain, self.kp, self.kd, self.catch_angle = pump_gain, kp, kd, catch_angle

    def reset(self) -> None:
        """Stateless: nothing to clear."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        cos_t, sin_t, theta_dot = (float(x) for x in obs)
        theta = math.atan2(sin_t, cos_t)
        if abs(theta) < self.catch_angle:
            u = -self.kp * theta - self.kd * theta_dot
        else:
            inertia = self.m * self.length ** 2 / 3.0
            energy = 0.5 * inertia * theta_dot ** 2 + self.m * self.g * self.length / 2.0 * cos_t
            target = self.m * self.g * self.length / 2.0
            u = self.pump_gain * (target - energy) * theta_dot
            if abs(theta_dot) < 1e-3:  # at rest at the bottom: any push starts the swing
                u = self.max_torque
        return np.array([np.clip(u, -self.max_torque, self.max_torque)], dtype=np.float32)
