"""Quadrotor flight tasks on PyBullet: a Crazyflie 2.x with per-rotor thrust, motor lag and drag.

PyBullet integrates the rigid body and detects contacts; everything a real vehicle adds on top of a
rigid body is modelled here, per physics step: a first-order motor lag on each rotor speed, thrust
``kf*w^2`` and reaction torque ``km*w^2`` per rotor, rotor drag proportional to body velocity times
total rotor speed, and (optionally) ground effect. PyBullet's default linear and angular damping is
switched off: it would be unmodelled drag.

Semantics the learner relies on:

* a crash (ground or obstacle contact), leaving the flight box or tilting past ``max_tilt`` is a
  *termination* with ``info["failure_reason"]`` and a penalty, never a truncation;
* the time limit is a *truncation*;
* the final waypoint is a place to *hold*: the episode runs to its time limit, and
  ``info["is_success"]`` on the last step says whether the vehicle, at some point, stayed within
  ``goal_tol`` m and ``speed_tol`` m/s of it for ``hold_s`` seconds, and never crashed
  (``info["time_to_goal"]`` is when that hold was complete). Ending the episode at the goal
  instead would make a policy that collects per-step proximity reward prefer *not* to finish;
  requiring the hold at the very end would make a late random push decide the outcome.

Observations (actor): target − position (world frame), the rotation matrix (row-major), body-frame
linear velocity, body rates (gyro) and the last ``action_history`` actions. ``obs_slices`` names
the parts, for sensor-noise wrappers and the PID controller. Reward is a sum of named terms, returned
in ``info["reward_components"]``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlctl.envs.uav.model import YAW_SIGN, QuadParams

GROUND_EFFECT_COEFF = 11.36859  # gym-pybullet-drones' cf2x value
PROP_RADIUS = 2.31348e-2

DEFAULT_REWARD_WEIGHTS: dict[str, float] = {
    "progress": 10.0,  # per metre of distance closed to the current target (potential-based)
    "proximity": 1.0,  # bounded: w * (1 - tanh(d / proximity_scale)) per step, final target only
    "hold": 1.0,  # per step inside the success tolerance at the final target: pays for precision
    "upright": 0.2,  # w * (cos(tilt) - 1)
    "spin": 0.02,  # w * -|body rates|^2
    "action_rate": 0.1,  # w * -|a_t - a_{t-1}|^2: the cure for motor chatter
    "waypoint": 5.0,  # once per intermediate waypoint passed
    "crash": 20.0,  # once, on a failure termination
    "success": 20.0,  # once, on the last step of a successful episode
}


_sum = np.add.reduce  # ndarray.sum without its Python wrapper (called 10 times per control step)


def _clip(x: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """``np.clip`` without its Python wrapper (which was a tenth of an env step), same values."""
    return np.minimum(np.maximum(x, lo), hi)


def _rotation(quat: tuple[float, ...]) -> np.ndarray:
    """Rotation matrix (body → world) of a PyBullet ``(x, y, z, w)`` quaternion."""
    x, y, z, w = quat
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence C-level writes to stdout (file descriptor 1) for the duration of the block."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # captured or replaced stdout: nothing to protect
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def quat_from_euler(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def _save_world(client: Any) -> np.ndarray:
    """The PyBullet world's exact state (``saveBullet``), as the file's bytes."""
    fd, path = tempfile.mkstemp(suffix=".bullet")
    os.close(fd)
    try:
        client.saveBullet(path)
        with open(path, "rb") as fh:
            return np.frombuffer(fh.read(), dtype=np.uint8).copy()
    finally:
        os.unlink(path)


def _load_world(client: Any, world: np.ndarray) -> None:
    """Restore :func:`_save_world`'s bytes into a world with the same bodies."""
    fd, path = tempfile.mkstemp(suffix=".bullet")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(np.asarray(world, dtype=np.uint8).tobytes())
        client.restoreState(fileName=path)
    finally:
        os.unlink(path)


# CTBR mode's rate loop (per axis: roll, pitch, yaw), in angular acceleration per rad/s of error: bandwidth
# 20 rad/s roll/pitch, 10 yaw; integral zero at 2 rad/s; the integral's share capped at 30 rad/s^2.
RATE_KP = np.array([20.0, 20.0, 10.0])
RATE_KI = np.array([40.0, 40.0, 10.0])
RATE_I_LIMIT = 30.0 / RATE_KI

class QuadrotorEnv(gym.Env):
    """Fly through ``waypoints`` and hold at the last one. Subclasses choose start states and waypoints."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 48}  # noqa: RUF012 - gymnasium.Env declares it so
    # episode state (see _reset_episode_vars); arrays are float64, world frame unless named otherwise
    steps: int
    wp_index: int
    hold: int
    time_to_goal: float | None
    prev_dist: float
    waypoints: np.ndarray
    omega: np.ndarray
    last_action: np.ndarray
    actions: np.ndarray
    pos: np.ndarray
    rot: np.ndarray
    vel: np.ndarray
    vel_body: np.ndarray
    rates: np.ndarray

    def __init__(
        self,
        action_mode: str = "motors",
        physics_hz: int = 240,
        ctrl_hz: int = 48,
        episode_s: float = 5.0,
        action_history: int = 1,
        params: QuadParams | dict[str, Any] | None = None,
        drag: bool = True,
        ground_effect: bool = False,
        goal_tol: float = 0.1,
        speed_tol: float = 0.2,
        hold_s: float = 1.0,
        pass_tol: float = 0.2,
        max_tilt: float = 1.0,
        bounds: tuple[float, float, float] = (3.0, 3.0, 3.0),
        max_body_rate: float = 6.0,
        proximity_scale: float = 1.0,
        reward_weights: dict[str, float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if action_mode not in ("motors", "ctbr"):
            raise ValueError(f"action_mode must be 'motors' or 'ctbr', got {action_mode!r}")
        if physics_hz <= 0 or ctrl_hz <= 0 or physics_hz % ctrl_hz:
            raise ValueError(f"ctrl_hz ({ctrl_hz}) must be positive and divide physics_hz ({physics_hz})")
        if action_history < 0:
            raise ValueError(f"action_history must be >= 0, got {action_history}")
        unknown = set(reward_weights or {}) - set(DEFAULT_REWARD_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown reward weights {sorted(unknown)}; known: {sorted(DEFAULT_REWARD_WEIGHTS)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.action_mode = action_mode
        self.physics_hz, self.ctrl_hz = physics_hz, ctrl_hz
        self.substeps = physics_hz // ctrl_hz
        self.dt = 1.0 / ctrl_hz
        self.max_steps = round(episode_s * ctrl_hz)
        self.action_history = action_history
        self.nominal = QuadParams(**params) if isinstance(params, dict) else (params or QuadParams())
        self.params = self.nominal
        self.drag, self.ground_effect = drag, ground_effect
        self.goal_tol, self.speed_tol, self.pass_tol = goal_tol, speed_tol, pass_tol
        self.hold_steps_needed = max(1, round(hold_s * ctrl_hz))
        self.max_tilt = max_tilt
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.max_body_rate = max_body_rate
        self.proximity_scale = proximity_scale
        self.weights = {**DEFAULT_REWARD_WEIGHTS, **(reward_weights or {})}
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": ctrl_hz}

        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        dim = 18 + 4 * action_history
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.obs_slices = {"target": slice(0, 3), "rotation": slice(3, 12), "velocity": slice(12, 15),
                           "body_rates": slice(15, 18), "actions": slice(18, dim)}
        self.neutral_action = np.full(4, self.hover_command(), dtype=np.float32)
        if action_mode == "ctbr":
            self.neutral_action[1:] = 0.0

        self._client: Any = None
        self._pb: Any = None
        self._cid = -1
        self._body = -1
        self._plane = -1
        self._obstacles: list[int] = []
        self._alloc_inv = np.linalg.inv(self.nominal.allocation())
        # the firmware's fixed view of the vehicle, read 5 times per control step by the rate loop
        self._max_thrust = self.nominal.max_thrust
        self._inertia = np.asarray(self.nominal.inertia, dtype=np.float64)
        self._reset_episode_vars()
        self._connect()  # here, not at reset: a missing simulator should fail at make time

    # -- public helpers used by controllers and wrappers -------------------------------------------

    def hover_command(self) -> float:
        """The normalized motor command that holds the *nominal* vehicle in hover."""
        return 2.0 * (self.nominal.weight / 4.0) / self.nominal.max_thrust - 1.0

    def set_params(self, params: QuadParams) -> None:
        """Use these physical parameters from now on (domain randomization calls this before reset)."""
        self.params = params
        if self._client is not None:
            self._apply_params()

    def apply_push(self, delta_v: np.ndarray) -> None:
        """Add ``delta_v`` [m/s] to the body's linear velocity (a gust or a push)."""
        lin, ang = self._client.getBaseVelocity(self._body)
        self._client.resetBaseVelocity(self._body, (np.asarray(lin) + delta_v).tolist(), ang)
        self._read_state()

    @property
    def target(self) -> np.ndarray:
        return self.waypoints[self.wp_index]

    # -- gymnasium API -----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if self._client is None:
            raise gym.error.ClosedEnvironmentError("reset() after close()")
        self._apply_params()
        pos, rpy, vel, rates, waypoints = self._sample_episode(self.np_random)
        self._client.resetBasePositionAndOrientation(self._body, pos.tolist(), quat_from_euler(*rpy))
        self._client.resetBaseVelocity(self._body, vel.tolist(), (_rotation(quat_from_euler(*rpy)) @ rates).tolist())
        self._reset_episode_vars()
        self.waypoints = np.asarray(waypoints, dtype=np.float64).reshape(-1, 3)
        self._build_obstacles()
        self.omega = np.full(4, self.params.hover_omega)
        self._read_state()
        self.prev_dist = float(np.linalg.norm(self.target - self.pos))
        return self._obs(), {"params": self.params.to_dict(), "waypoints": self.waypoints.copy()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = _clip(np.asarray(action, dtype=np.float64).reshape(4), -1.0, 1.0)
        thrust_cmd = None if self.action_mode == "ctbr" else (a + 1.0) * 0.5 * self._max_thrust
        prev_pos = self.pos
        for _ in range(self.substeps):
            self._physics_step(a, thrust_cmd)
        self._read_state()
        self.steps += 1

        w = self.weights
        comp: dict[str, float] = {}
        dist = float(np.linalg.norm(self.target - self.pos))
        comp["progress"] = w["progress"] * (self.prev_dist - dist)
        if self.wp_index < len(self.waypoints) - 1 and self._passed(prev_pos, dist):
            self.wp_index += 1
            comp["waypoint"] = w["waypoint"]
            dist = float(np.linalg.norm(self.target - self.pos))
        self.prev_dist = dist
        final = self.wp_index == len(self.waypoints) - 1
        if final:  # only the last target: near an intermediate one, it would pay to hover instead of passing
            comp["proximity"] = w["proximity"] * (1.0 - math.tanh(dist / self.proximity_scale))
        comp["upright"] = w["upright"] * (self.rot[2, 2] - 1.0)
        comp["spin"] = -w["spin"] * float(self.rates @ self.rates)
        comp["action_rate"] = -w["action_rate"] * float(np.sum((a - self.last_action) ** 2))
        self.last_action = a
        self.actions = np.concatenate([a, self.actions[:-4]]) if self.action_history else self.actions

        speed = float(np.linalg.norm(self.vel))
        at_goal = final and dist < self.goal_tol and speed < self.speed_tol
        self.hold = self.hold + 1 if at_goal else 0
        if at_goal:
            comp["hold"] = w["hold"]
        if self.hold >= self.hold_steps_needed and self.time_to_goal is None:
            self.time_to_goal = self.steps * self.dt

        failure = self._failure()
        terminated = failure is not None
        truncated = not terminated and self.steps >= self.max_steps
        success = truncated and self.time_to_goal is not None
        if terminated:
            comp["crash"] = -w["crash"]
        if success:
            comp["success"] = w["success"]
        info: dict[str, Any] = {
            "reward_components": comp, "is_success": success, "distance": dist, "waypoint": self.wp_index,
            "final_target": final, "speed": speed,
        }
        if failure is not None:
            info["failure_reason"] = failure
        if terminated or truncated:
            info["time_to_goal"] = self.time_to_goal if self.time_to_goal is not None else float("nan")
        return self._obs(), float(sum(comp.values())), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._client is None:
            return None
        c = self._client
        look = self.pos.tolist()
        view = c.computeViewMatrix([look[0] - 0.35, look[1] - 0.35, look[2] + 0.2], look, [0, 0, 1])
        proj = c.computeProjectionMatrixFOV(60, 1.0, 0.05, 20.0)
        _, _, rgb, _, _ = c.getCameraImage(256, 256, view, proj, renderer=c.ER_TINY_RENDERER)
        return np.asarray(rgb, dtype=np.uint8).reshape(256, 256, 4)[:, :, :3]

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    # -- exact state save / restore (curricula) ---------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Everything the future of this episode depends on, as plain arrays (RNGs are the Snapshot's job).

        ``world`` is PyBullet's own serialization of the world (``saveBullet``): the pose read through the API
        comes from a rotation matrix, one rounding away from the quaternion PyBullet integrates, so restoring
        from ``quat`` alone continues within 1e-16, not exactly. The readable fields stay: edit them (to place
        the vehicle) and :meth:`set_state` uses them instead of the world's pose.
        """
        pos, quat = self._client.getBasePositionAndOrientation(self._body)
        lin, ang = self._client.getBaseVelocity(self._body)
        return {"pos": np.array(pos), "quat": np.array(quat), "lin": np.array(lin), "ang": np.array(ang),
                "omega": self.omega.copy(), "rate_integral": self.rate_integral.copy(),
                "last_action": self.last_action.copy(), "actions": self.actions.copy(),
                "steps": self.steps, "wp_index": self.wp_index, "hold": self.hold, "prev_dist": self.prev_dist,
                "time_to_goal": self.time_to_goal, "waypoints": self.waypoints.copy(), "params": self.params.to_dict(),
                "world": _save_world(self._client)}

    def set_state(self, state: dict[str, Any]) -> None:
        params: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in state["params"].items()}
        self.set_params(QuadParams(**params))
        self.waypoints = np.array(state["waypoints"])
        self._build_obstacles()
        pose = [np.asarray(state[k], dtype=np.float64) for k in ("pos", "quat", "lin", "ang")]
        if state.get("world") is not None:
            _load_world(self._client, state["world"])
        if state.get("world") is None or not self._pose_is(*pose):
            # no saved world (older states), or its readable pose was edited (placing the vehicle): the fields win
            self._client.resetBasePositionAndOrientation(self._body, pose[0].tolist(), pose[1].tolist())
            self._client.resetBaseVelocity(self._body, pose[2].tolist(), pose[3].tolist())
        self.omega = np.array(state["omega"])
        self.rate_integral = np.array(state.get("rate_integral", np.zeros(3)))
        self.last_action, self.actions = np.array(state["last_action"]), np.array(state["actions"])
        self.steps, self.wp_index, self.hold = int(state["steps"]), int(state["wp_index"]), int(state["hold"])
        self.prev_dist, self.time_to_goal = float(state["prev_dist"]), state["time_to_goal"]
        self._read_state()

    def _pose_is(self, pos: np.ndarray, quat: np.ndarray, lin: np.ndarray, ang: np.ndarray) -> bool:
        """Whether the body's pose and velocity, as :meth:`get_state` reads them, are exactly these."""
        now = [*self._client.getBasePositionAndOrientation(self._body), *self._client.getBaseVelocity(self._body)]
        wanted = (pos, quat, lin, ang)
        return all(np.array_equal(np.asarray(a, dtype=np.float64), b) for a, b in zip(now, wanted, strict=True))

    # -- what subclasses define ---------------------------------------------------------------------------

    def _sample_episode(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                  np.ndarray]:
        """Start position, roll-pitch-yaw, world velocity, body rates, and the ``[N, 3]`` waypoints."""
        raise NotImplementedError

    def _build_obstacles(self) -> None:
        """Create (or move) task obstacles after the waypoints are known; none by default."""

    def _passed(self, prev_pos: np.ndarray, dist: float) -> bool:
        """Whether the current intermediate waypoint counts as passed (default: within ``pass_tol``)."""
        return dist < self.pass_tol

    # -- internals ----------------------------------------------------------------------------------------

    def _reset_episode_vars(self) -> None:
        self.steps, self.wp_index, self.hold = 0, 0, 0
        self.time_to_goal = None
        self.waypoints = np.zeros((1, 3))
        self.omega = np.full(4, self.params.hover_omega)
        self.rate_integral = np.zeros(3)
        self.last_action = self.neutral_action.astype(np.float64)
        self.actions = np.tile(self.last_action, self.action_history)
        self.pos = np.zeros(3)
        self.rot = np.eye(3)
        self.vel = np.zeros(3)
        self.vel_body = np.zeros(3)
        self.rates = np.zeros(3)
        self.prev_dist = 0.0

    def _connect(self) -> None:
        try:
            import pybullet
            import pybullet_data
            from pybullet_utils.bullet_client import BulletClient
        except ImportError as exc:  # registered envs are importable without pybullet; making one is not
            raise gym.error.DependencyNotInstalled(f"{exc}; pip install 'rlctl[bullet]'") from None
        with _quiet_stdout():  # PyBullet prints its argv on connect
            c = BulletClient(connection_mode=pybullet.DIRECT)
        c.setAdditionalSearchPath(pybullet_data.getDataPath())
        c.setTimeStep(1.0 / self.physics_hz)
        c.setGravity(0, 0, -self.params.gravity)
        self._plane = c.loadURDF("plane.urdf")
        half = [0.03, 0.03, 0.008]
        col = c.createCollisionShape(c.GEOM_BOX, halfExtents=half)
        arm = self.nominal.rotor_positions()
        vis = c.createVisualShapeArray(
            shapeTypes=[c.GEOM_BOX] + [c.GEOM_CYLINDER] * 4,
            halfExtents=[half] + [[0, 0, 0]] * 4,
            radii=[0.0] + [PROP_RADIUS] * 4, lengths=[0.0] + [0.004] * 4,
            rgbaColors=[[0.2, 0.2, 0.2, 1]] + [[0.9, 0.2, 0.2, 1], [0.2, 0.2, 0.9, 1]] * 2,
            visualFramePositions=[[0, 0, 0]] + [[*p[:2], 0.01] for p in arm],
        )
        self._body = c.createMultiBody(baseMass=self.params.mass, baseCollisionShapeIndex=col,
                                       baseVisualShapeIndex=vis, basePosition=[0, 0, 1])
        self._client = c
        self._pb, self._cid = pybullet, c._client  # direct calls in the hot loop skip BulletClient's wrapper

    def _apply_params(self) -> None:
        p = self.params
        self._client.setGravity(0, 0, -p.gravity)
        self._client.changeDynamics(self._body, -1, mass=p.mass, localInertiaDiagonal=list(p.inertia),
                                    linearDamping=0.0, angularDamping=0.0)
        # per-physics-step constants, computed once per parameter change
        rp = p.rotor_positions()
        scale = np.asarray(p.motor_scale, dtype=np.float64)
        self._k_force = p.kf * scale
        self._k_yaw = YAW_SIGN * p.km * scale
        self._lever = np.vstack([rp[:, 1], -rp[:, 0]])  # [tau_x, tau_y] = lever @ f
        self._drag = np.array([p.drag_xy, p.drag_xy, p.drag_z]) if self.drag else None
        self._lag = 1.0 - math.exp(-1.0 / (self.physics_hz * p.motor_tau)) if p.motor_tau > 0 else 1.0

    def _rate_loop(self, a: np.ndarray, rates: np.ndarray) -> np.ndarray:
        """CTBR: collective thrust + body-rate commands → per-motor thrusts, run at the physics rate.

        Like flight firmware, this inner loop only knows the *nominal* vehicle (inertia, geometry).
        """
        collective = (a[0] + 1.0) * 0.5 * 4.0 * self._max_thrust
        error = a[1:] * self.max_body_rate - rates
        # PI, like the Crazyflie firmware's rate controller: the integral cancels a constant torque (uneven
        # motors, an off-centre mass) that a P-only loop would leave as a steady rotation
        self.rate_integral = _clip(self.rate_integral + error / self.physics_hz, -RATE_I_LIMIT, RATE_I_LIMIT)
        torque = self._inertia * (RATE_KP * error + RATE_KI * self.rate_integral)
        f = self._alloc_inv @ np.concatenate([[collective], torque])
        return _clip(f, 0.0, self._max_thrust)

    def _physics_step(self, a: np.ndarray, thrust_cmd: np.ndarray | None) -> None:
        """One physics step: motor lag, rotor forces and torques, drag, then PyBullet's integrator."""
        pb, cid, body = self._pb, self._cid, self._body
        pos, quat = pb.getBasePositionAndOrientation(body, physicsClientId=cid)
        rot = _rotation(quat)
        lin, ang = pb.getBaseVelocity(body, physicsClientId=cid) if (self._drag is not None or thrust_cmd is None) \
            else ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
        if thrust_cmd is None:
            thrust_cmd = self._rate_loop(a, rot.T @ np.asarray(ang))
        # the ESC turns a command into a rotor *speed* calibrated for the nominal propeller; the thrust
        # that speed produces is the actual vehicle's (randomized kf, motor_scale)
        omega_cmd = np.sqrt(np.maximum(thrust_cmd, 0.0) / self.nominal.kf)
        self.omega += (omega_cmd - self.omega) * self._lag
        w2 = self.omega * self.omega
        f = self._k_force * w2
        if self.params.thrust_noise > 0:
            f = f * (1.0 + self.params.thrust_noise * self.np_random.standard_normal(4))
        if self.ground_effect and rot[2, 2] > 0:  # only while the rotor wash points at the ground
            h = max(pos[2], 0.5 * PROP_RADIUS)  # clipped: the formula diverges at the ground
            f = f * (1.0 + GROUND_EFFECT_COEFF * (PROP_RADIUS / (4.0 * h)) ** 2)
        force = np.array([0.0, 0.0, _sum(f)])
        if self._drag is not None:
            force -= self._drag * (rot.T @ np.asarray(lin)) * _sum(self.omega)
        torque = np.array([*(self._lever @ f), self._k_yaw @ w2])
        pb.applyExternalForce(body, -1, (rot @ force).tolist(), pos, pb.WORLD_FRAME, physicsClientId=cid)
        pb.applyExternalTorque(body, -1, (rot @ torque).tolist(), pb.WORLD_FRAME, physicsClientId=cid)
        pb.stepSimulation(physicsClientId=cid)

    def _read_state(self) -> None:
        pos, quat = self._pb.getBasePositionAndOrientation(self._body, physicsClientId=self._cid)
        lin, ang = self._pb.getBaseVelocity(self._body, physicsClientId=self._cid)
        self.pos, self.rot = np.asarray(pos), _rotation(quat)
        self.vel = np.asarray(lin)
        self.vel_body = self.rot.T @ self.vel
        self.rates = self.rot.T @ np.asarray(ang)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.target - self.pos, self.rot.reshape(-1), self.vel_body, self.rates,
                               self.actions]).astype(np.float32)

    def _failure(self) -> str | None:
        for contact in self._client.getContactPoints(bodyA=self._body):
            return "crash_ground" if contact[2] == self._plane else "collision"
        if self.pos[2] < 0.0 or np.any(np.abs(self.pos[:2]) > self.bounds[:2]) or self.pos[2] > self.bounds[2]:
            return "out_of_bounds"
        if self.rot[2, 2] < math.cos(self.max_tilt):
            return "over_tilt"
        return None
