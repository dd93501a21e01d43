"""Scripted (non-learned) controllers for the envs: baselines, demonstrations and sanity checks of a task.

Every controller has the :class:`Controller` interface, the same as a deterministic policy's: ``reset()``
at each episode start, ``act(obs)`` for one (unbatched) observation, returning one env action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym


class Controller(Protocol):
    def reset(self) -> None:
        """Clear per-episode state (integrators, phases); called at every episode start."""
        ...

    def act(self, obs: Any) -> Any:
        """The env action for one observation."""
        ...


def _pid(env: gym.Env) -> Controller:
    from rlctl.envs.controllers.quad_pid import QuadPID

    return QuadPID(env)


def _ik(env: gym.Env) -> Controller:
    from rlctl.envs.controllers.arm_ik import ArmIKController

    return ArmIKController(env)


def _push(env: gym.Env) -> Controller:
    from rlctl.envs.controllers.arm_push import ArmPushController

    return ArmPushController(env)


def _reacher(env: gym.Env) -> Controller:
    from rlctl.envs.controllers.reacher_ik import ReacherIKController

    return ReacherIKController(env)


def _energy(env: gym.Env) -> Controller:
    from rlctl.envs.controllers.pendulum_energy import PendulumEnergyController

    return PendulumEnergyController(env)


CONTROLLERS: dict[str, tuple[Callable[[gym.Env], Controller], str]] = {
    "pid": (_pid, "cascaded PID for the rlctl/Quad* envs"),
    "ik": (_ik, "inverse-kinematics reacher for rlctl/ArmReach*"),
    "push": (_push, "scripted pusher for rlctl/ArmPush*"),
    "energy": (_energy, "energy-based swing-up for Pendulum-v1"),
    "reacher": (_reacher, "inverse kinematics + PD for Reacher-v5 and rlctl/ReacherSparse-v0"),
}


def make_controller(name: str, env: gym.Env) -> Controller:
    """The named controller for ``env``; ValueError for an unknown name or an env it cannot drive."""
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}; choose from "
                         + ", ".join(f"{k} ({why})" for k, (_, why) in CONTROLLERS.items()))
    build, why = CONTROLLERS[name]
    try:
        return build(env)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"controller {name!r} ({why}) cannot drive {env.unwrapped.__class__.__name__}: {exc}") \
            from None
