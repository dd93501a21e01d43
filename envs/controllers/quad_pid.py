"""A cascaded PID for the quadrotor: position → desired thrust vector → attitude → torques → motors.

The structure and the Crazyflie gains are those of gym-pybullet-drones' ``DSLPIDControl`` (Dynamic
Systems Lab, U. Toronto), re-derived here with three changes: the rate term uses the gyro's body rates
rather than finite-differenced Euler angles; far targets are approached through a "carrot" at most
``max_pos_err`` away, with the position integral frozen meanwhile (no windup); and the controller
reads only the env's *observation*
(goal-relative position, rotation matrix, body velocity, body rates) — the same input a learned
policy gets, with the same noise and delay when sim-to-real wrappers are on. It knows only the
*nominal* vehicle: under domain randomization it flies a vehicle it was not tuned for, as a real
controller would.

``act(obs)`` returns the env's action: normalized motor commands in the ``motors`` mode; in the ``ctbr``
mode the attitude loop ends in body-rate setpoints instead of torques (collective thrust + body rates,
what a flight controller's rate loop takes), and the env's firmware-style rate loop does the rest. So it
can stand in for a policy anywhere (evaluation, arbitration, demonstrations).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlctl.envs.uav.model import RPM_TO_RADS

# DSLPIDControl's Crazyflie gains (force loop in N, torque loop in PWM units) and PWM ↔ RPM map.
P_POS = np.array([0.4, 0.4, 1.25])
I_POS = np.array([0.05, 0.05, 0.05])
D_POS = np.array([0.2, 0.2, 0.5])
P_ATT = np.array([70000.0, 70000.0, 60000.0])
I_ATT = np.array([0.0, 0.0, 500.0])
D_ATT = np.array([20000.0, 20000.0, 12000.0])
I_POS_CLAMP = np.array([2.0, 2.0, 0.15])
I_ATT_CLAMP = np.array([1.0, 1.0, 1.0])
PWM2RPM_SCALE, PWM2RPM_CONST = 0.2685, 4070.3
MIN_PWM, MAX_PWM = 20000.0, 65535.0
MAX_TORQUE_PWM = 3200.0
# rows: motors 0..3 (rlctl.envs.uav.model order); columns: roll, pitch, yaw torque (PWM units)
MIXER = np.array([[-0.5, -0.5, -1.0], [-0.5, 0.5, 1.0], [0.5, 0.5, -1.0], [0.5, -0.5, 1.0]])
# ctbr mode: attitude error (the vee of R_d^T R - R^T R_d, ~2x the angle) → body-rate setpoint [rad/s]. Kept
# well under the env's rate-loop bandwidth (20 rad/s roll/pitch, 10 yaw), as cascades need.
P_ATT_RATE = np.array([3.0, 3.0, 1.5])


class QuadPID:
    """Cascaded PID with the ``act(obs)`` interface of a policy, for either action mode of the quadrotor."""

    def __init__(self, env: Any, target_yaw: float | None = None, max_pos_err: float = 0.3) -> None:
        """``target_yaw=None`` holds the heading of the episode's first observation (the tasks ignore yaw).

        ``max_pos_err`` [m] clips the position error (a "carrot" that moves toward a far waypoint):
        without it a 1 m step asks for a tilt past the env's limit.
        """
        base = env.unwrapped
        self.mode = getattr(base, "action_mode", None)
        if self.mode not in ("motors", "ctbr"):
            raise ValueError("QuadPID flies the quadrotor envs (action_mode 'motors' or 'ctbr'), "
                             f"not {type(base).__name__}")
        self.max_body_rate = getattr(base, "max_body_rate", 1.0)
        self.slices = base.obs_slices
        self.params = base.nominal
        self.dt = base.dt
        self.max_thrust = base.nominal.max_thrust
        self.kf_rpm = self.params.kf * RPM_TO_RADS**2
        self.target_yaw = target_yaw
        self.max_pos_err = max_pos_err
        self.reset()

    def reset(self) -> None:
        """Clear the integrators (call at every episode start)."""
        self.i_pos = np.zeros(3)
        self.i_att = np.zeros(3)
        self.yaw: float | None = self.target_yaw

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        pos_err = obs[self.slices["target"]]
        rot = obs[self.slices["rotation"]].reshape(3, 3)
        vel = rot @ obs[self.slices["velocity"]]
        rates = obs[self.slices["body_rates"]]
        if self.yaw is None:
            self.yaw = float(np.arctan2(rot[1, 0], rot[0, 0]))
        norm = np.linalg.norm(pos_err)
        if norm > self.max_pos_err:
            pos_err = pos_err * (self.max_pos_err / norm)
        else:  # conditional integration: no windup while chasing a far carrot
            self.i_pos = np.clip(self.i_pos + pos_err * self.dt, -I_POS_CLAMP, I_POS_CLAMP)

        # position loop → desired force in the world frame
        force = P_POS * pos_err + I_POS * self.i_pos - D_POS * vel + np.array([0.0, 0.0, self.params.weight])
        thrust = max(0.0, float(force @ rot[:, 2]))

        # desired attitude: body z along the force, heading from the target yaw
        z_d = force / max(np.linalg.norm(force), 1e-9)
        x_c = np.array([np.cos(self.yaw), np.sin(self.yaw), 0.0])
        y_d = np.cross(z_d, x_c)
        y_d /= max(np.linalg.norm(y_d), 1e-9)
        rot_d = np.column_stack([np.cross(y_d, z_d), y_d, z_d])

        # attitude loop on SO(3) → torques in PWM units
        err = rot_d.T @ rot - rot.T @ rot_d
        e_rot = np.array([err[2, 1], err[0, 2], err[1, 0]])
        if self.mode == "ctbr":
            collective = thrust / (4.0 * self.max_thrust) * 2.0 - 1.0
            rates_cmd = -P_ATT_RATE * e_rot / self.max_body_rate
            return np.clip(np.concatenate([[collective], rates_cmd]), -1.0, 1.0).astype(np.float32)
        self.i_att = np.clip(self.i_att - e_rot * self.dt, -I_ATT_CLAMP, I_ATT_CLAMP)
        torque = np.clip(-P_ATT * e_rot - D_ATT * rates + I_ATT * self.i_att, -MAX_TORQUE_PWM, MAX_TORQUE_PWM)

        # mix, then PWM → RPM → thrust → the env's normalized command
        thrust_pwm = (np.sqrt(thrust / (4.0 * self.kf_rpm)) - PWM2RPM_CONST) / PWM2RPM_SCALE
        pwm = np.clip(thrust_pwm + MIXER @ torque, MIN_PWM, MAX_PWM)
        rpm = PWM2RPM_SCALE * pwm + PWM2RPM_CONST
        return np.clip(2.0 * self.kf_rpm * rpm**2 / self.max_thrust - 1.0, -1.0, 1.0).astype(np.float32)
