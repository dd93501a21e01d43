"""The quadrotor's physical model: Crazyflie 2.x nominal constants, motor geometry and mixing.

Pure numpy, no simulator: the env, the PID controller and the randomization wrapper all read the
same :class:`QuadParams`, so "the controller's model" and "the simulated vehicle" can differ only
where randomization makes them differ.

Nominal values follow gym-pybullet-drones' ``cf2x`` model (mass, inertia, arm, kf, km and
thrust-to-weight), converted to SI per rad/s. Sources disagree on several of them (inertia by up
to ~70%, km by 2x, the motor time constant from 0.03 to 0.2 s); the randomization ranges in
:mod:`rlctl.envs.uav.sim2real` cover those disagreements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

RPM_TO_RADS = 2.0 * np.pi / 60.0

# Motor layout (X configuration, body frame: x forward, y left, z up), in gym-pybullet-drones' cf2x
# order. Motors 1 and 3 spin so that their reaction torque yaws the body positively.
MOTOR_DIRS = np.array([[1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]) / np.sqrt(2.0)
YAW_SIGN = np.array([-1.0, 1.0, -1.0, 1.0])


@dataclass
class QuadParams:
    """Physical parameters of one vehicle (SI units; rotor speeds in rad/s)."""

    mass: float = 0.027
    inertia: tuple[float, float, float] = (1.4e-5, 1.4e-5, 2.17e-5)
    arm: float = 0.0397
    """centre to rotor axis [m]"""
    kf: float = 3.16e-10 / RPM_TO_RADS**2
    """thrust per rotor = kf * omega^2 [N / (rad/s)^2]"""
    km: float = 7.94e-12 / RPM_TO_RADS**2
    """yaw reaction torque per rotor = km * omega^2 [N m / (rad/s)^2]"""
    thrust_to_weight: float = 2.25
    motor_tau: float = 0.04
    """first-order motor lag [s]; 0 applies commands instantly"""
    motor_scale: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    """per-motor thrust multiplier (manufacturing spread, damaged props)"""
    drag_xy: float = 9.1785e-7
    drag_z: float = 10.311e-7
    """rotor drag: F_body = -drag * v_body * sum(omega) [N / (m/s) / (rad/s)]"""
    thrust_noise: float = 0.0
    """std of per-step multiplicative thrust noise (turbulence, battery sag)"""
    gravity: float = 9.81

    @property
    def weight(self) -> float:
        return self.mass * self.gravity

    @property
    def max_thrust(self) -> float:
        """Per-motor thrust limit [N] (nominal motor, before ``motor_scale``)."""
        return self.thrust_to_weight * self.weight / 4.0

    @property
    def max_omega(self) -> float:
        return float(np.sqrt(self.max_thrust / self.kf))

    @property
    def hover_omega(self) -> float:
        return float(np.sqrt(self.weight / (4.0 * self.kf)))

    def rotor_positions(self) -> np.ndarray:
        """``[4, 3]`` rotor positions in the body frame."""
        xy = MOTOR_DIRS * self.arm
        return np.column_stack([xy, np.zeros(4)])

    def allocation(self) -> np.ndarray:
        """``[4, 4]`` matrix A with ``[T, tau_x, tau_y, tau_z] = A @ f`` for per-rotor thrusts ``f``."""
        pos = self.rotor_positions()
        return np.vstack([np.ones(4), pos[:, 1], -pos[:, 0], YAW_SIGN * self.km / self.kf])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def with_values(self, **values: Any) -> QuadParams:
        return replace(self, **values)
