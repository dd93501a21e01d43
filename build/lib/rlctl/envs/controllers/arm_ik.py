"""Scripted reach controller for :class:`rlctl.envs.robots.arm.ArmReachEnv`: inverse kinematics, then joint steps.

A baseline that shows the task is solvable in a few dozen steps, a source of demonstrations, and a
check that the env's success test can be passed on purpose (and is not passed by chance).
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from rlctl.envs.robots.arm import ArmReachEnv


class ArmIKController:
    """Each step: solve IK for the observed target from the observed joint angles, move toward the solution.

    PyBullet's ``calculateInverseKinematics`` works on a loaded body, not on a kinematic description, so the
    controller needs a copy of the arm. It keeps ``env.unwrapped`` only to read the model (URDF, end-effector
    link, joint limits, home pose, action scale) and loads its own copy of the arm in a private DIRECT
    client: setting that copy's joints to the observed angles seeds the solver, and the env's simulation is
    never touched, so the action is a function of the observation alone (running the controller does not
    change the env's trajectory or its ``get_state``).
    """

    def __init__(self, env: gym.Env, gain: float = 1.0, ik_iterations: int = 50) -> None:
        base = env.unwrapped
        if not isinstance(base, ArmReachEnv):
            raise TypeError(f"ArmIKController drives ArmReachEnv, got {type(base).__name__}")
        self._reach = base.TASK == "reach"  # the push controller uses this one's IK, not its act()
        self.gain = float(gain)
        self.ik_iterations = int(ik_iterations)
        self._n = base.N_JOINTS
        self._lower = base.joint_lower.copy()
        self._upper = base.joint_upper.copy()
        self._rest = base.HOME.copy()
        self._scale = base.max_joint_delta
        self._client: Any = BulletClient(connection_mode=pybullet.DIRECT)
        self._client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self._robot = self._client.loadURDF(base.URDF, useFixedBase=True)
        self._ee_link = base.EE_LINK

    def reset(self) -> None:
        """Nothing carries over between episodes (each action depends on the current observation only)."""

    def ik(self, joint_positions: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Joint angles that put the end effector at ``target``, near the home pose, within the joint limits."""
        p = self._client
        for j in range(self._n):
            p.resetJointState(self._robot, j, float(joint_positions[j]), 0.0)
        solution = p.calculateInverseKinematics(
            self._robot,
            self._ee_link,
            [float(x) for x in target],
            lowerLimits=self._lower.tolist(),
            upperLimits=self._upper.tolist(),
            jointRanges=(self._upper - self._lower).tolist(),
            restPoses=self._rest.tolist(),
            maxNumIterations=self.ik_iterations,
            residualThreshold=1e-4,
        )
        return np.clip(np.asarray(solution[: self._n], dtype=np.float64), self._lower, self._upper)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Normalised joint-delta action toward the IK solution (clipped to the action space)."""
        if not self._reach:
            raise TypeError("ArmIKController.act reads the reach task's observation; use ArmPushController for push")
        obs = np.asarray(obs, dtype=np.float64)
        q = obs[: self._n]
        target = obs[2 * self._n + 3 : 2 * self._n + 6]
        q_goal = self.ik(q, target)
        action = self.gain * (q_goal - q) / self._scale
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(pybullet.error):  # already disconnected, e.g. at interpreter exit
                self._client.disconnect()
            self._client = None
