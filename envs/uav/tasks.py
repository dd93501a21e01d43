"""The quadrotor tasks: where episodes start and which waypoints (or gates) they fly through.

The physics, observations, rewards and termination rules are :class:`rlctl.envs.uav.quadrotor.QuadrotorEnv`'s;
each task chooses start states and waypoints, and may add obstacles and its own pass test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlctl.envs.uav.quadrotor import QuadrotorEnv, quat_from_euler


class QuadHoverEnv(QuadrotorEnv):
    """Recover from a random start (±0.5 m, up to ~17° tilt, some velocity) and hold at (0, 0, 1); 10 s.

    Ten seconds, not five: under the sim-to-real sets a push arrives every 1.5–5 s, and a 5 s episode left
    success to whether one landed inside the only window long enough for the one-second hold.
    """

    def __init__(self, start_radius: float = 0.5, goal: tuple[float, float, float] = (0.0, 0.0, 1.0),
                 episode_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(episode_s=episode_s, **kwargs)
        self.start_radius = start_radius
        self.goal = np.asarray(goal, dtype=np.float64)

    def _sample_episode(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                  np.ndarray]:
        pos = self.goal + rng.uniform(-self.start_radius, self.start_radius, 3)
        pos[2] = max(pos[2], 0.3)
        rpy = np.concatenate([rng.uniform(-0.3, 0.3, 2), rng.uniform(-math.pi, math.pi, 1)])
        return pos, rpy, rng.uniform(-0.3, 0.3, 3), rng.uniform(-0.5, 0.5, 3), self.goal[None]


class QuadWaypointEnv(QuadrotorEnv):
    """Pass through ``num_waypoints - 1`` random waypoints (within ``pass_tol``), then hold at the last."""

    def __init__(self, num_waypoints: int = 3, spacing: tuple[float, float] = (0.6, 1.2), episode_s: float = 10.0,
                 **kwargs: Any) -> None:
        if num_waypoints < 1:
            raise ValueError(f"num_waypoints must be >= 1, got {num_waypoints}")
        super().__init__(episode_s=episode_s, **kwargs)
        self.num_waypoints, self.spacing = num_waypoints, spacing

    def _sample_episode(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                  np.ndarray]:
        pos = np.array([*rng.uniform(-0.5, 0.5, 2), rng.uniform(0.8, 1.2)])
        points, here = [], pos
        limit = self.bounds - np.array([0.8, 0.8, 0.8])
        for _ in range(self.num_waypoints):
            for _ in range(100):  # rejection-sample a point at the given spacing inside the safe box
                d = rng.normal(size=3)
                d[2] *= 0.5
                cand = here + d / np.linalg.norm(d) * rng.uniform(*self.spacing)
                if np.all(np.abs(cand[:2]) < limit[:2]) and 0.5 < cand[2] < limit[2]:
                    break
            points.append(cand)
            here = cand
        rpy = np.array([0.0, 0.0, rng.uniform(-math.pi, math.pi)])
        return pos, rpy, np.zeros(3), np.zeros(3), np.array(points)


class QuadGatesEnv(QuadrotorEnv):
    """Fly through ``num_gates`` square gates in order, then hold 0.8 m past the last one.

    A gate counts when the vehicle crosses its plane inside the opening; crossing the plane outside
    it ends the episode (``failure_reason="missed_gate"``), and touching a frame is a ``collision``.
    Gates stand upright, facing along the path, with random heading changes and height offsets.
    """

    def __init__(self, num_gates: int = 2, opening: float = 0.5, spacing: tuple[float, float] = (1.0, 1.4),
                 episode_s: float = 10.0, **kwargs: Any) -> None:
        if num_gates < 1:
            raise ValueError(f"num_gates must be >= 1, got {num_gates}")
        super().__init__(episode_s=episode_s, **kwargs)
        self.num_gates, self.opening, self.spacing = num_gates, opening, spacing
        self.normals = np.zeros((num_gates, 3))
        self._gate_bodies: list[int] = []
        self._missed = False

    def _sample_episode(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                  np.ndarray]:
        heading = rng.uniform(-math.pi, math.pi)
        here = np.array([0.0, 0.0, 1.0]) - 0.5 * self.num_gates * np.array([math.cos(heading), math.sin(heading), 0])
        start = here.copy()
        points, normals = [], []
        for _ in range(self.num_gates):
            heading += rng.uniform(-0.5, 0.5)
            n = np.array([math.cos(heading), math.sin(heading), 0.0])
            here = here + n * rng.uniform(*self.spacing)
            here[2] = float(np.clip(here[2] + rng.uniform(-0.2, 0.2), 0.8, 1.5))
            points.append(here.copy())
            normals.append(n)
        points.append(here + normals[-1] * 0.8)
        self.normals = np.array(normals)
        self._missed = False
        rpy = np.array([0.0, 0.0, heading])
        return start, rpy, np.zeros(3), np.zeros(3), np.array(points)

    def _build_obstacles(self) -> None:
        """Four static boxes per gate (top, bottom, left, right), rebuilt for each episode's layout."""
        c = self._client
        for body in self._gate_bodies:
            c.removeBody(body)
        self._gate_bodies = []
        half, bar = self.opening / 2, 0.03
        for centre, n in zip(self.waypoints[:-1], self.normals, strict=True):
            side = np.array([-n[1], n[0], 0.0])
            yaw = math.atan2(n[1], n[0])
            quat = quat_from_euler(0.0, 0.0, yaw)
            for offset, extents in (((0, 0, half + bar), (bar, half + 2 * bar, bar)),
                                    ((0, 0, -half - bar), (bar, half + 2 * bar, bar)),
                                    ((0, half + bar, 0), (bar, bar, half)),
                                    ((0, -half - bar, 0), (bar, bar, half))):
                pos = centre + side * offset[1] + np.array([0.0, 0.0, offset[2]])
                col = c.createCollisionShape(c.GEOM_BOX, halfExtents=list(extents))
                vis = c.createVisualShape(c.GEOM_BOX, halfExtents=list(extents), rgbaColor=[1.0, 0.5, 0.0, 1.0])
                self._gate_bodies.append(c.createMultiBody(0.0, col, vis, pos.tolist(), quat))

    def _passed(self, prev_pos: np.ndarray, dist: float) -> bool:
        centre, n = self.waypoints[self.wp_index], self.normals[self.wp_index]
        before, after = float(n @ (prev_pos - centre)), float(n @ (self.pos - centre))
        if not (before < 0.0 <= after):
            return False
        cross = prev_pos + (self.pos - prev_pos) * (before / (before - after)) - centre
        inside = abs(cross[2]) < self.opening / 2 and abs(cross @ np.array([-n[1], n[0], 0.0])) < self.opening / 2
        self._missed = not inside
        return inside

    def _failure(self) -> str | None:
        if self._missed:
            return "missed_gate"
        return super()._failure()

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "normals": self.normals.copy(), "missed": self._missed}

    def set_state(self, state: dict[str, Any]) -> None:
        self.normals = np.array(state["normals"])
        self._missed = bool(state["missed"])
        super().set_state(state)
