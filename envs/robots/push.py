"""Push task for the KUKA arm of :mod:`rlctl.envs.robots.arm`: slide a cube along the floor to a goal.

Contact-rich where reaching is not: the arm has to get behind the cube and push it in the right
direction, so a reward that only pulls the hand toward the goal does not solve it. The arm, its
joint-target action space and its control rates are the reach task's.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import pybullet
from gymnasium import spaces

from rlctl.envs.robots.arm import ArmReachEnv


class ArmPushEnv(ArmReachEnv):
    """Push a cube on the floor to within ``success_threshold`` metres (in the floor plane) of a goal.

    Observation (float32, 32): joint positions (7), joint velocities (7), end-effector position (3), cube
    position (3), cube linear velocity (3), goal position (3), cube − end effector (3), goal − cube (3).
    Action (7, in [-1, 1]): joint-target deltas, as in the reach task.

    Reward components (their sum is the reward; the dict is ``info["reward_components"]``):

    * ``"dense"``: ``reach`` = −‖cube − hand‖ (get to the cube), ``push`` = −2·‖goal − cube‖ (in the
      plane), ``action_rate`` = −0.01·‖a − a_prev‖², ``success`` = bonus on success;
    * ``"sparse"``: ``success`` = 0 on success, −1 otherwise.

    Success terminates (``info["is_success"]``); a cube pushed out of the arm's reach (``max_cube_radius``
    from the base, or off the floor) terminates with ``info["failure_reason"] = "cube_lost"``; after
    ``episode_s`` seconds the episode is truncated.
    """

    TASK = "push"
    CUBE_HALF = 0.03
    CUBE_MASS = 0.2
    CUBE_FRICTION = 0.5
    CUBE_LOW = np.array([0.55, -0.15])
    CUBE_HIGH = np.array([0.68, 0.15])
    """Cube start positions (x, y in metres, robot base at the origin)."""
    GOAL_LOW = np.array([0.5, -0.25])
    GOAL_HIGH = np.array([0.75, 0.25])
    MIN_PUSH = 0.1
    MAX_PUSH = 0.2
    """Goals are drawn this far (in the plane) from the cube's start."""

    def __init__(
        self,
        reward_type: str = "dense",
        success_threshold: float = 0.05,
        episode_s: float = 8.0,
        ctrl_hz: int = 24,
        max_joint_delta: float = 0.05,
        max_cube_radius: float = 0.95,
        render_mode: str | None = None,
    ) -> None:
        self.max_cube_radius = float(max_cube_radius)
        self._goal = np.array([0.55, 0.0, self.CUBE_HALF])
        super().__init__(reward_type, success_threshold, episode_s, ctrl_hz, max_joint_delta, render_mode)
        n = self.N_JOINTS
        high = np.concatenate([np.full(n, np.pi), np.full(n, self.MAX_JOINT_SPEED), np.full(3, 2.0), np.full(3, 2.0),
                               np.full(3, 10.0), np.full(3, 2.0), np.full(6, 4.0)]).astype(np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    def _build_world(self) -> None:
        super()._build_world()
        p = self._client
        shape = p.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[self.CUBE_HALF] * 3)
        visual = p.createVisualShape(pybullet.GEOM_BOX, halfExtents=[self.CUBE_HALF] * 3, rgbaColor=[0.2, 0.4, 0.9, 1])
        self._cube = p.createMultiBody(baseMass=self.CUBE_MASS, baseCollisionShapeIndex=shape,
                                       baseVisualShapeIndex=visual, basePosition=[0.55, 0.0, self.CUBE_HALF])
        p.changeDynamics(self._cube, -1, lateralFriction=self.CUBE_FRICTION)
        self._marker_goal = self._marker  # the reach task's red sphere marks the goal

    def cube_position(self) -> np.ndarray:
        return np.array(self._client.getBasePositionAndOrientation(self._cube)[0])

    def _obs(self) -> tuple[np.ndarray, float]:
        q, qd = self._joint_state()
        ee = self.ee_position()
        cube = self.cube_position()
        cube_vel = np.array(self._client.getBaseVelocity(self._cube)[0])
        obs = np.concatenate([q, qd, ee, cube, cube_vel, self._goal, cube - ee, self._goal - cube]).astype(np.float32)
        return obs, float(np.linalg.norm((self._goal - cube)[:2]))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)  # arm pose (and a reach target we do not use)
        rng = self.np_random
        cube = rng.uniform(self.CUBE_LOW, self.CUBE_HIGH)
        for _ in range(1000):
            angle = rng.uniform(-np.pi, np.pi)
            goal = cube + rng.uniform(self.MIN_PUSH, self.MAX_PUSH) * np.array([np.cos(angle), np.sin(angle)])
            if np.all(goal >= self.GOAL_LOW) and np.all(goal <= self.GOAL_HIGH):
                break
        self._goal = np.array([goal[0], goal[1], self.CUBE_HALF])
        self._target = self._goal.copy()  # keeps the parent's marker and state in step with the goal
        p = self._client
        p.resetBasePositionAndOrientation(self._cube, [cube[0], cube[1], self.CUBE_HALF], [0.0, 0.0, 0.0, 1.0])
        p.resetBaseVelocity(self._cube, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
        p.resetBasePositionAndOrientation(self._marker, self._goal.tolist(), [0.0, 0.0, 0.0, 1.0])
        obs, distance = self._obs()
        return obs, {"is_success": False, "distance": distance}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = self._apply_action(action)
        obs, distance = self._obs()
        cube = self.cube_position()
        success = distance < self.success_threshold
        lost = bool(np.linalg.norm(cube[:2]) > self.max_cube_radius or cube[2] < -0.05)
        if self.reward_type == "dense":
            components = {
                "reach": -float(np.linalg.norm(cube - self.ee_position())),
                "push": -2.0 * distance,
                "action_rate": -0.01 * float(np.sum((a - self._prev_action) ** 2)),
                "success": self.SUCCESS_BONUS if success else 0.0,
            }
        else:
            components = {"success": 0.0 if success else -1.0}
        self._prev_action = a
        terminated = bool(success or lost)
        truncated = bool(not terminated and self._steps >= self.max_steps)
        info: dict[str, Any] = {"is_success": bool(success), "distance": distance, "reward_components": components}
        if lost and not success:
            info["failure_reason"] = "cube_lost"
        return obs, float(sum(components.values())), terminated, truncated, info

    # -- exact save/restore (used by rlctl.envs.snapshot) ----------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """The whole simulation, contacts included, plus the task's own variables.

        Unlike the reach task, the cube rests on the floor and touches the arm: PyBullet's contact
        solver warm-starts from the previous step's contact impulses, so poses and velocities alone
        would not continue exactly. ``saveBullet`` writes the complete world (contact cache included) to
        a file; its bytes are the snapshot.
        """
        fd, path = tempfile.mkstemp(suffix=".bullet")
        os.close(fd)
        try:
            self._client.saveBullet(path)
            with open(path, "rb") as fh:
                world = np.frombuffer(fh.read(), dtype=np.uint8).copy()
        finally:
            os.unlink(path)
        return {**super().get_state(), "world": world, "goal_position": self._goal.copy()}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._goal = np.array(state["goal_position"], dtype=np.float64).reshape(3)
        fd, path = tempfile.mkstemp(suffix=".bullet")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(np.asarray(state["world"], dtype=np.uint8).tobytes())
            self._client.restoreState(fileName=path)
        finally:
            os.unlink(path)
