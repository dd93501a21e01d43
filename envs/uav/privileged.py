"""Privileged observations for an asymmetric actor-critic: what the simulator knows and the vehicle does not.

Under domain randomization the same observation comes from vehicles with different returns ahead of
them: a heavy one with slow motors and 100 ms of latency, or a light, crisp one. A critic that sees only
the policy's observation must average over them, and that average's error lands in every advantage.
Learning to Fly in Seconds (Eschmann et al. 2023) and the legged-robot literature give the critic the
simulator's state instead; the actor, which must run on the robot, keeps its own inputs.

This wrapper appends that state to the observation and declares the count in
``metadata["critic_only_obs"]``; the learner feeds those entries to the critic alone (see
:class:`rlctl.agents.policy.ActorCritic`), and export drops them. Appended, in order:

* the true (noise-free, undelayed) target error, rotation matrix, body-frame velocity and body rates;
* motor speeds relative to the nominal hover speed, and the rate loop's integral (CTBR mode);
* the drawn vehicle parameters relative to nominal (:class:`rlctl.envs.uav.model.QuadParams`);
* the episode's observation and action delay in control steps (0 without the delay wrappers).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlctl.envs.ids import CRITIC_ONLY_OBS, find_wrapper
from rlctl.envs.uav.latency import ActionDelay, ObservationDelay

FEATURES: tuple[tuple[str, int], ...] = (
    ("target_error", 3), ("rotation", 9), ("velocity_body", 3), ("body_rates", 3), ("motor_speed", 4),
    ("rate_integral", 3), ("mass", 1), ("inertia", 3), ("kf", 1), ("km", 1), ("motor_scale", 4),
    ("log_motor_tau", 1), ("thrust_noise", 1), ("drag_xy", 1), ("drag_z", 1), ("obs_delay", 1),
    ("action_delay", 1),
)
"""Name and width of each appended block, in order."""
DIM = sum(width for _, width in FEATURES)


class PrivilegedObservation(gym.ObservationWrapper):
    """Append the privileged state (:data:`FEATURES`, ``DIM`` values) and declare it critic-only.

    Wrap it outermost, after the sim-to-real wrappers and the error integral, so the appended values are
    neither noised nor delayed and the actor's part of the observation is unchanged.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        for attr in ("pos", "rot", "vel_body", "rates", "omega", "params", "nominal", "target"):
            if not hasattr(base, attr):
                raise ValueError(f"PrivilegedObservation needs a quadrotor env; {type(base).__name__} has no {attr!r}")
        dim = int(np.prod(env.observation_space.shape or (0,))) + DIM
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.metadata = {**env.metadata, CRITIC_ONLY_OBS: DIM}
        self._delays = (find_wrapper(env, ObservationDelay), find_wrapper(env, ActionDelay))

    def privileged(self) -> np.ndarray:
        """The ``DIM`` privileged values for the vehicle's current state."""
        b: Any = self.env.unwrapped
        p, n = b.params, b.nominal
        rate_integral = getattr(b, "rate_integral", np.zeros(3))
        delay = [float(w.delay) if w is not None else 0.0 for w in self._delays]
        parts = [
            b.target - b.pos, b.rot.reshape(-1), b.vel_body, b.rates, b.omega / n.hover_omega - 1.0, rate_integral,
            [p.mass / n.mass - 1.0], np.asarray(p.inertia) / np.asarray(n.inertia) - 1.0,
            [p.kf / n.kf - 1.0, p.km / n.km - 1.0], np.asarray(p.motor_scale) - 1.0,
            [math.log(p.motor_tau / n.motor_tau), p.thrust_noise, p.drag_xy / n.drag_xy - 1.0,
             p.drag_z / n.drag_z - 1.0], delay,
        ]
        return np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in parts]).astype(np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        return np.concatenate([np.asarray(observation, dtype=np.float32), self.privileged()])
