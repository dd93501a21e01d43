"""Register the envs rlctl ships, so ``gymnasium.make("rlctl/...")`` works without rlctl's CLI.

Entry points are strings: importing ``envs`` does not import PyBullet; making one of these envs
without it installed raises gymnasium's ``DependencyNotInstalled`` naming the ``bullet`` extra.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

QUAD_TASKS = {"hover": "QuadHoverEnv", "waypoint": "QuadWaypointEnv", "gates": "QuadGatesEnv"}


def make_quad(task: str = "hover", sim2real: str = "nominal", latency_priority: float = 0.0,
              sim2real_strength: float = 1.0, error_integral: bool = False, command_history: int = 0,
              privileged_obs: bool = False, **kwargs: Any) -> gym.Env:
    """A quadrotor task, optionally inside one of the named sim-to-real wrapper sets (its delays drawn by
    failure rate with ``latency_priority`` > 0: :class:`rlctl.envs.uav.sim2real.LatencyPriority`; its
    perturbations scaled by ``sim2real_strength``: :class:`rlctl.envs.uav.sim2real.RandomizationStrength`),
    then with these appended to the observation, in this order: the integral of the observed target error
    (:mod:`rlctl.envs.uav.integral`), the policy's last ``command_history`` commands
    (:class:`rlctl.envs.uav.latency.CommandHistory`), and critic-only privileged state
    (:mod:`rlctl.envs.uav.privileged`)."""
    from rlctl.envs.uav import tasks
    from rlctl.envs.uav.integral import TargetErrorIntegral
    from rlctl.envs.uav.latency import CommandHistory
    from rlctl.envs.uav.privileged import PrivilegedObservation
    from rlctl.envs.uav.sim2real import apply_sim2real

    if task not in QUAD_TASKS:
        raise ValueError(f"unknown quadrotor task {task!r}; choose from {', '.join(QUAD_TASKS)}")
    env = getattr(tasks, QUAD_TASKS[task])(**kwargs)
    try:
        env = apply_sim2real(env, sim2real, latency_priority, sim2real_strength)
        env = TargetErrorIntegral(env) if error_integral else env
        if command_history < 0:
            raise ValueError(f"command_history must be >= 0, got {command_history}")
        env = CommandHistory(env, command_history) if command_history else env
        return PrivilegedObservation(env) if privileged_obs else env
    except ValueError:
        env.close()
        raise


def register_all() -> None:
    specs: dict[str, tuple[str, dict[str, Any]]] = {
        "rlctl/QuadHover-v0": ("rlctl.envs.registration:make_quad", {"task": "hover"}),
        "rlctl/QuadWaypoint-v0": ("rlctl.envs.registration:make_quad", {"task": "waypoint"}),
        "rlctl/QuadGates-v0": ("rlctl.envs.registration:make_quad", {"task": "gates"}),
        "rlctl/ArmReach-v0": ("rlctl.envs.robots.arm:ArmReachEnv", {"reward_type": "dense"}),
        "rlctl/ArmReachSparse-v0": ("rlctl.envs.robots.arm:ArmReachEnv", {"reward_type": "sparse"}),
        "rlctl/ArmPush-v0": ("rlctl.envs.robots.push:ArmPushEnv", {"reward_type": "dense"}),
        "rlctl/ArmPushSparse-v0": ("rlctl.envs.robots.push:ArmPushEnv", {"reward_type": "sparse"}),
        "rlctl/TargetMatching-v0": ("rlctl.envs.synthetic:TargetMatchingEnv", {"dim": 10}),
        "rlctl/MemoryCue-v0": ("rlctl.envs.synthetic:MemoryCueEnv", {"length": 8}),
    }
    for env_id, (entry, kwargs) in specs.items():
        if env_id not in gym.registry:
            # the envs end episodes themselves (time limit → truncated), so no TimeLimit wrapper
            gym.register(env_id, entry_point=entry, kwargs=kwargs, disable_env_checker=True)
    limited = {  # MuJoCo subclasses, with their v5 task's time limit
        "rlctl/ReacherSparse-v0": ("rlctl.envs.reacher_sparse:ReacherSparseEnv", 50),
        "rlctl/InvertedPendulumP-v5": ("rlctl.envs.positions_only:InvertedPendulumPositionsEnv", 1000),
        "rlctl/HalfCheetahP-v5": ("rlctl.envs.positions_only:HalfCheetahPositionsEnv", 1000),
    }
    for env_id, (entry, steps) in limited.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry, max_episode_steps=steps)
