"""Reach task for a 7-joint KUKA iiwa arm simulated with PyBullet.

The policy moves the joint *targets* of stiff position-controlled joints (like a real arm's joint
position interface), so a scripted IK controller and a learned policy act in the same space. Each env
owns a private DIRECT PyBullet client: envs in one process never share, or step, each other's world.
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet
import pybullet_data
from gymnasium import spaces
from pybullet_utils.bullet_client import BulletClient

PHYSICS_HZ = 240
"""PyBullet's default step; contacts and joint motors are tuned for it."""


class ArmReachEnv(gym.Env[np.ndarray, np.ndarray]):
    """Move the arm's end effector to within ``success_threshold`` metres of a random target.

    Observation (float32, 23): joint positions (7), joint velocities (7), end-effector position (3),
    target position (3), target − end effector (3). Action (7, in [-1, 1]): joint-target deltas in units
    of ``max_joint_delta`` radians per control step.

    Reward components (their sum is the reward; the dict is ``info["reward_components"]``):

    * ``"dense"``: ``distance`` = −d, ``action_rate`` = −0.01·‖a − a_prev‖², ``success`` = bonus on success;
    * ``"sparse"``: ``success`` = 0 on success, −1 otherwise.

    Reaching the target terminates the episode (``info["is_success"]`` True); after ``episode_s`` seconds
    the episode is truncated. Nothing else ends an episode.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 24}  # noqa: RUF012 - an Env instance var

    TASK = "reach"
    """Which task this is (the push task subclasses this env); controllers check it."""
    URDF = "kuka_iiwa/model.urdf"
    N_JOINTS = 7
    EE_LINK = 6
    """Index of the last link (``lbr_iiwa_link_7``, the flange); its URDF frame is the end effector."""
    HOME = np.array([0.0, 0.5, 0.0, -1.5, 0.0, 1.1, 0.0])
    """Elbow-up pose with the flange over the workspace, away from the joint limits."""
    HOME_NOISE = 0.05
    WORKSPACE_LOW = np.array([0.4, -0.3, 0.2])
    WORKSPACE_HIGH = np.array([0.7, 0.3, 0.6])
    """Targets are drawn from this box (metres, world frame, robot base at the origin); all of it is reachable."""
    MIN_START_DISTANCE = 0.25
    """Targets closer than this to the initial end effector are redrawn, so no episode starts solved."""
    SUCCESS_BONUS = 10.0
    JOINT_FORCE = 300.0
    """Maximum motor torque (N·m), the URDF's effort limit."""
    POSITION_GAIN = 0.3
    VELOCITY_GAIN = 1.0
    MAX_JOINT_SPEED = 20.0
    """Observation bound for joint speeds (rad/s); the motors move the joints at a few rad/s at most."""
    RENDER_SIZE = 240

    def __init__(
        self,
        reward_type: str = "dense",
        success_threshold: float = 0.05,
        episode_s: float = 5.0,
        ctrl_hz: int = 24,
        max_joint_delta: float = 0.05,
        render_mode: str | None = None,
    ) -> None:
        if reward_type not in ("dense", "sparse"):
            raise ValueError(f"reward_type must be 'dense' or 'sparse', got {reward_type!r}")
        if isinstance(ctrl_hz, bool) or not isinstance(ctrl_hz, int | np.integer) or ctrl_hz <= 0:
            raise ValueError(f"ctrl_hz must be a positive integer, got {ctrl_hz!r}")
        if PHYSICS_HZ % ctrl_hz != 0:
            raise ValueError(f"ctrl_hz must divide the physics rate {PHYSICS_HZ} Hz exactly, got {ctrl_hz}")
        if not success_threshold > 0:
            raise ValueError(f"success_threshold must be positive, got {success_threshold!r}")
        if not episode_s > 0:
            raise ValueError(f"episode_s must be positive, got {episode_s!r}")
        if not max_joint_delta > 0:
            raise ValueError(f"max_joint_delta must be positive, got {max_joint_delta!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")

        self.reward_type = reward_type
        self.success_threshold = float(success_threshold)
        self.ctrl_hz = int(ctrl_hz)
        self.substeps = PHYSICS_HZ // self.ctrl_hz
        self.max_steps = max(1, round(episode_s * self.ctrl_hz))
        self.max_joint_delta = float(max_joint_delta)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.ctrl_hz}

        self.action_space = spaces.Box(-1.0, 1.0, (self.N_JOINTS,), np.float32)
        # generous physical bounds (finite, so tools that normalise by them can): angles, rad/s, metres
        n = self.N_JOINTS
        high = np.concatenate([np.full(n, np.pi), np.full(n, self.MAX_JOINT_SPEED), np.full(6, 2.0), np.full(3, 4.0)])
        self.observation_space = spaces.Box(-high.astype(np.float32), high.astype(np.float32), dtype=np.float32)

        self._client: Any = BulletClient(connection_mode=pybullet.DIRECT)
        self._build_world()
        self._joint_targets = self.HOME.copy()
        self._target = (self.WORKSPACE_LOW + self.WORKSPACE_HIGH) / 2
        self._prev_action = np.zeros(self.N_JOINTS)
        self._steps = 0
        self._write_joints(self.HOME, np.zeros(self.N_JOINTS))

    # -- world -------------------------------------------------------------------------------------

    def _build_world(self) -> None:
        p = self._client
        p.setAdditionalSearchPath(pybullet_data.getDataPath())
        p.setTimeStep(1.0 / PHYSICS_HZ)
        p.setGravity(0.0, 0.0, -9.81)
        # makes contact ordering independent of the history of pair additions/removals
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        self._plane = p.loadURDF("plane.urdf")
        self._robot = p.loadURDF(self.URDF, basePosition=[0.0, 0.0, 0.0], useFixedBase=True)
        if p.getNumJoints(self._robot) != self.N_JOINTS:
            raise RuntimeError(f"{self.URDF} has {p.getNumJoints(self._robot)} joints, expected {self.N_JOINTS}")
        info = [p.getJointInfo(self._robot, j) for j in range(self.N_JOINTS)]
        self.joint_lower = np.array([i[8] for i in info], dtype=np.float64)
        self.joint_upper = np.array([i[9] for i in info], dtype=np.float64)
        self._joints = list(range(self.N_JOINTS))
        # a collision-free marker: visible in renders, invisible to the physics
        marker = p.createVisualShape(pybullet.GEOM_SPHERE, radius=0.025, rgbaColor=[0.9, 0.1, 0.1, 0.8])
        self._marker = p.createMultiBody(baseMass=0.0, baseVisualShapeIndex=marker, basePosition=[0.0, 0.0, -1.0])

    @property
    def bullet_client(self) -> Any:
        """The env's private PyBullet client (for tools that need the simulation, e.g. rendering or debugging)."""
        return self._client

    @property
    def robot_id(self) -> int:
        return int(self._robot)

    def _write_joints(self, positions: np.ndarray, velocities: np.ndarray) -> None:
        """Teleport the joints (positions and velocities, exactly) and point the motors at the joint targets."""
        p = self._client
        for j in self._joints:
            p.resetJointState(self._robot, j, float(positions[j]), float(velocities[j]))
        self._command_motors()

    def _command_motors(self) -> None:
        n = self.N_JOINTS
        self._client.setJointMotorControlArray(
            self._robot,
            self._joints,
            pybullet.POSITION_CONTROL,
            targetPositions=self._joint_targets.tolist(),
            targetVelocities=[0.0] * n,
            forces=[self.JOINT_FORCE] * n,
            positionGains=[self.POSITION_GAIN] * n,
            velocityGains=[self.VELOCITY_GAIN] * n,
        )

    def _joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        states = self._client.getJointStates(self._robot, self._joints)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def ee_position(self) -> np.ndarray:
        """World position of the end-effector link's frame (float64)."""
        return np.array(self._client.getLinkState(self._robot, self.EE_LINK, computeForwardKinematics=True)[4])

    def _obs(self) -> tuple[np.ndarray, float]:
        q, qd = self._joint_state()
        ee = self.ee_position()
        delta = self._target - ee
        obs = np.concatenate([q, qd, ee, self._target, delta]).astype(np.float32)
        return obs, float(np.linalg.norm(delta))

    # -- gymnasium API -----------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        q0 = np.clip(
            self.HOME + rng.uniform(-self.HOME_NOISE, self.HOME_NOISE, self.N_JOINTS),
            self.joint_lower,
            self.joint_upper,
        )
        self._joint_targets = q0.copy()
        self._write_joints(q0, np.zeros(self.N_JOINTS))
        ee = self.ee_position()
        for _ in range(1000):
            self._target = rng.uniform(self.WORKSPACE_LOW, self.WORKSPACE_HIGH)
            if np.linalg.norm(self._target - ee) >= self.MIN_START_DISTANCE:
                break
        self._client.resetBasePositionAndOrientation(self._marker, self._target.tolist(), [0.0, 0.0, 0.0, 1.0])
        self._prev_action = np.zeros(self.N_JOINTS)
        self._steps = 0
        obs, distance = self._obs()
        return obs, {"is_success": False, "distance": distance}

    def _apply_action(self, action: np.ndarray) -> np.ndarray:
        """Move the joint targets by the (checked, clipped) action and simulate one control step; the
        clipped action (for the action-rate term)."""
        a = np.asarray(action, dtype=np.float64).reshape(self.N_JOINTS)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {action!r}")
        a = np.clip(a, -1.0, 1.0)
        self._joint_targets = np.clip(
            self._joint_targets + a * self.max_joint_delta, self.joint_lower, self.joint_upper
        )
        self._command_motors()
        for _ in range(self.substeps):
            self._client.stepSimulation()
        self._steps += 1
        return a

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = self._apply_action(action)
        obs, distance = self._obs()
        success = distance < self.success_threshold
        if self.reward_type == "dense":
            components = {
                "distance": -distance,
                "action_rate": -0.01 * float(np.sum((a - self._prev_action) ** 2)),
                "success": self.SUCCESS_BONUS if success else 0.0,
            }
        else:
            components = {"success": 0.0 if success else -1.0}
        self._prev_action = a
        reward = float(sum(components.values()))
        terminated = bool(success)
        truncated = bool(not success and self._steps >= self.max_steps)
        info = {"is_success": bool(success), "distance": distance, "reward_components": components}
        return obs, reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        p, size = self._client, self.RENDER_SIZE
        view = p.computeViewMatrix(
            cameraEyePosition=[1.5, -1.1, 1.1], cameraTargetPosition=[0.4, 0.0, 0.4], cameraUpVector=[0, 0, 1]
        )
        proj = p.computeProjectionMatrixFOV(fov=50.0, aspect=1.0, nearVal=0.05, farVal=5.0)
        _, _, rgba, _, _ = p.getCameraImage(size, size, view, proj, renderer=pybullet.ER_TINY_RENDERER)
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[:, :, :3].copy()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(pybullet.error):  # already disconnected, e.g. at interpreter exit
                self._client.disconnect()
            self._client = None
        super().close()

    # -- exact save/restore (used by rlctl.envs.snapshot) ----------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Everything that determines the future besides the RNG, as plain arrays and numbers.

        The arm touches nothing, so the joint positions and velocities plus the motor targets are the
        whole physical state; PyBullet keeps no solver history that would make the continuation differ.
        """
        q, qd = self._joint_state()
        return {
            "joint_positions": q,
            "joint_velocities": qd,
            "joint_targets": self._joint_targets.copy(),
            "target_position": self._target.copy(),
            "prev_action": self._prev_action.copy(),
            "step_count": int(self._steps),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict (from this env or another instance)."""
        arrays = {}
        for key, size in (
            ("joint_positions", self.N_JOINTS),
            ("joint_velocities", self.N_JOINTS),
            ("joint_targets", self.N_JOINTS),
            ("target_position", 3),
            ("prev_action", self.N_JOINTS),
        ):
            value = np.array(state[key], dtype=np.float64).reshape(-1)
            if value.shape != (size,):
                raise ValueError(f"state[{key!r}] must have {size} values, got shape {np.shape(state[key])}")
            arrays[key] = value
        self._joint_targets = arrays["joint_targets"]
        self._target = arrays["target_position"]
        self._prev_action = arrays["prev_action"]
        self._steps = int(state["step_count"])
        self._write_joints(arrays["joint_positions"], arrays["joint_velocities"])
        self._client.resetBasePositionAndOrientation(self._marker, self._target.tolist(), [0.0, 0.0, 0.0, 1.0])
