"""Scripted push controller for :class:`rlctl.envs.robots.push.ArmPushEnv`: get behind the cube, then push.

Stateless, like the reach controller: the phase is read off the observation each step, so the
controller can take over mid-episode (arbitration) and can replay demonstrations from any state.

* **travel**: hand above the point behind the cube (on the goal–cube line), high enough to clear it;
* **descend**: once above that point, go down to pushing height;
* **push**: once low and behind the cube and on the line, drive through the cube toward the goal.
  If the cube turns away from the line, the hand falls back to travelling.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlctl.envs.controllers.arm_ik import ArmIKController
from rlctl.envs.robots.push import ArmPushEnv


class ArmPushController:
    """``act(obs)`` → a joint-delta action toward the phase's hand target (via the reach task's IK)."""

    PUSH_Z = 0.07
    """End-effector height while pushing: the last link's lower part (≈7 cm below its frame) meets the cube
    low on its side (higher, it rides on the cube's top edge and pins it to the floor)."""
    HOVER_Z = 0.22
    STANDOFF = 0.10
    """Hand distance behind the cube's centre at the start of a push (cube half-size + link radius + margin)."""
    LOOKAHEAD = 0.04
    """How far past the cube's centre the hand aims while pushing."""
    MAX_STEP = 0.03
    """Metres per control step the hand is asked to move (straight-line waypoints)."""
    PUSH_GAIN = 0.3
    """Slower while pushing: at full speed the cube slides past the goal."""

    def __init__(self, env: gym.Env, gain: float = 1.0) -> None:
        base = env.unwrapped
        if not isinstance(base, ArmPushEnv):
            raise TypeError(f"ArmPushController drives ArmPushEnv, got {type(base).__name__}")
        self._ik = ArmIKController(env, gain=gain)
        self._n = base.N_JOINTS

    def reset(self) -> None:
        """Nothing carries over between episodes."""

    def hand_target(self, obs: np.ndarray) -> tuple[np.ndarray, str]:
        """Where the hand should go now, and the phase name."""
        n = self._n
        hand, cube, goal = obs[2 * n : 2 * n + 3], obs[2 * n + 3 : 2 * n + 6], obs[2 * n + 9 : 2 * n + 12]
        line = goal[:2] - cube[:2]
        u = line / max(float(np.linalg.norm(line)), 1e-6)
        rel = hand[:2] - cube[:2]
        along = float(rel @ u)
        across = abs(float(rel[0] * u[1] - rel[1] * u[0]))
        start = cube[:2] - u * self.STANDOFF
        if along < -0.03 and across < 0.025 and hand[2] < self.PUSH_Z + 0.03:
            return np.array([*(cube[:2] + u * self.LOOKAHEAD), self.PUSH_Z]), "push"
        near = float(np.linalg.norm(hand[:2] - start))
        if near < 0.025 or (near < 0.05 and hand[2] < self.HOVER_Z - 0.03):  # keep descending once started
            return np.array([*start, self.PUSH_Z]), "descend"
        return np.array([*start, self.HOVER_Z]), "travel"

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        target, phase = self.hand_target(obs)
        q = obs[: self._n]
        # A short straight step toward the target, solved from the current angles: the hand moves in straight
        # lines (a far IK target, reached by per-joint clipped steps, makes curved detours near the cube).
        hand = obs[2 * self._n : 2 * self._n + 3]
        step = target - hand
        length = float(np.linalg.norm(step))
        if length > self.MAX_STEP:
            step *= self.MAX_STEP / length
        q_goal = self._ik.ik(q, hand + step)
        gain = self._ik.gain * (self.PUSH_GAIN if phase == "push" else 1.0)
        action = gain * (q_goal - q) / self._ik._scale
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def close(self) -> None:
        self._ik.close()
