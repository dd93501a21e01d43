"""The sim-to-real evaluation protocol: ``rlctl eval RUN --env-set nominal,randomized,held-out``.

Each set is the run's env inside one of :mod:`rlctl.envs.uav.sim2real`'s named wrapper sets. Episode ``i`` of
every set is reset with ``seed + i``, so a policy and a baseline controller meet the *same* start
states, vehicles, noise and delays. Per set it reports the success rate with a Wilson 95% interval,
time to goal, the causes of failed episodes, and the mean return; the ratio of held-out to nominal
success is the sim-to-real gap.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from rlctl.envs.ids import check_env_id
from rlctl.envs.make import make_env
from rlctl.errors import UserError

Actor = Callable[[np.ndarray], np.ndarray]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: sane at 0/n and n/n, unlike the normal one."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def baseline_for(name: str, env: Any) -> Any:
    """The env's scripted controller (``act(obs)``, ``reset()``), by name."""
    base = env.unwrapped
    if name == "pid":
        if not hasattr(base, "obs_slices") or not hasattr(base, "nominal"):
            raise UserError(f"--baseline pid flies the rlctl/Quad* envs, not {base.__class__.__name__}")
        from rlctl.envs.controllers.quad_pid import QuadPID

        try:
            return QuadPID(env)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if name == "ik":
        from rlctl.envs.controllers.arm_ik import ArmIKController
        from rlctl.envs.controllers.arm_push import ArmPushController

        try:
            return ArmPushController(env) if getattr(base, "TASK", None) == "push" else ArmIKController(env)
        except TypeError as exc:
            raise UserError(f"--baseline ik drives the rlctl/ArmReach and ArmPush envs ({exc})") from None
    raise UserError(f"unknown baseline {name!r}; choose from pid (quadrotor), ik (arm)")


SET_KWARGS = ("sim2real", "latency_priority", "sim2real_strength")


def without_set(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` without its sim-to-real set and the set's training-only sampling: each evaluation set
    brings its own wrappers, and draws from its fixed distribution."""
    return {k: v for k, v in env_kwargs.items() if k not in SET_KWARGS}


def preset_env_kwargs(env_id: str) -> dict[str, Any]:
    """The env kwargs of ``env_id``'s preset (action mode, error integral, ...) without its sim-to-real set, so a
    baseline evaluated alone flies the interface a policy trained with the preset has."""
    from rlctl.resolve import resolve_config

    return without_set(resolve_config(env_id)[0].env.kwargs)


ActorFactory = Callable[[Any], "tuple[Actor, Callable[[], None] | None]"]


def policy_actor(agent: Any, adapter: Any) -> ActorFactory:
    """A trained policy as an actor factory: deterministic (mean) actions, raw observations in."""
    from rlctl.evaluate import Chooser

    def factory(env: Any) -> tuple[Actor, Callable[[], None]]:
        chooser = Chooser(agent, adapter, True)  # a recurrent policy's state, reset per episode
        return chooser, chooser.reset

    return factory


def baseline_actor(name: str) -> ActorFactory:
    """A scripted controller as an actor factory; it is rebuilt per env and reset per episode."""

    def factory(env: Any) -> tuple[Actor, Callable[[], None]]:
        ctrl = baseline_for(name, env)
        return ctrl.act, ctrl.reset

    return factory


def run_episodes(env: Any, actor: Actor, episodes: int, seed: int, reset: Callable[[], None] | None = None
                 ) -> list[dict[str, Any]]:
    """Play ``episodes`` episodes (episode i reset with ``seed + i``); one record per episode."""
    records = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        if reset is not None:
            reset()
        total, length, done, info = 0.0, 0, False, {}
        while not done:
            obs, reward, terminated, truncated, info = env.step(actor(obs))
            total += float(reward)
            length += 1
            done = terminated or truncated
        records.append({"return": total, "length": length, "success": bool(info.get("is_success", False)),
                        "failure_reason": info.get("failure_reason", "timeout" if truncated else "other"),
                        "time_to_goal": float(info.get("time_to_goal", float("nan"))),
                        # where the episode ended: at the last target or not, how far from it and how fast
                        "final_target": bool(info.get("final_target", True)),
                        "final_distance": float(info.get("distance", float("nan"))),
                        "final_speed": float(info.get("speed", float("nan")))})
    return records


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    wins = sum(r["success"] for r in records)
    low, high = wilson_interval(wins, n)
    times = [r["time_to_goal"] for r in records if r["success"] and np.isfinite(r["time_to_goal"])]
    failures = Counter(r["failure_reason"] for r in records if not r["success"])
    return {
        "episodes": n, "successes": wins, "success_rate": wins / n if n else float("nan"),
        "success_ci95": [low, high], "mean_time_to_goal_s": float(np.mean(times)) if times else float("nan"),
        "failures": dict(sorted(failures.items())),
        "mean_return": float(np.mean([r["return"] for r in records])),
        **_timeouts(records),
    }


def _timeouts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How the failed episodes that ran out of time ended. Some never reached the last target, which means the
    controller was too slow. Others reached it but did not settle inside the tolerance, which means it cannot
    hold under these dynamics. The two call for different fixes."""
    late = [r for r in records if not r["success"] and r["failure_reason"] == "timeout"]
    if not late:
        return {}
    at_last = [r for r in late if r["final_target"]]
    return {"timeouts": {
        "count": len(late), "at_final_target": len(at_last),
        "median_final_distance_m": float(np.median([r["final_distance"] for r in at_last])) if at_last else None,
        "median_final_speed_mps": float(np.median([r["final_speed"] for r in at_last])) if at_last else None,
    }}


def evaluate_sets(env_id: str, env_kwargs: dict[str, Any], actors: dict[str, ActorFactory], sets: list[str],
                  episodes: int, seed: int) -> dict[str, Any]:
    """``actors[name](env) -> (act, reset)`` for each controller; every one runs every set on the same seeds."""
    from rlctl.envs.uav.sim2real import SIM2REAL_SETS

    bad = [s for s in sets if s not in SIM2REAL_SETS]
    if bad:
        raise UserError(f"unknown --env-set {bad}; choose from {', '.join(SIM2REAL_SETS)}")
    if "make_quad" not in str(check_env_id(env_id).entry_point):
        raise UserError(f"--env-set needs an env with sim-to-real sets (the rlctl/Quad* envs), not {env_id}")
    results: dict[str, Any] = {"env": env_id, "episodes": episodes, "seed": seed, "sets": sets, "results": {}}
    for name, factory in actors.items():
        per_set = {}
        for level in sets:
            env = make_env(env_id, {**env_kwargs, "sim2real": level})
            try:
                act, reset = factory(env)
                per_set[level] = summarize(run_episodes(env, act, episodes, seed, reset))
            finally:
                env.close()
        nominal, held = per_set.get("nominal"), per_set.get("held-out")
        if nominal and held and nominal["success_rate"] > 0:
            per_set["gap_held_out_over_nominal"] = held["success_rate"] / nominal["success_rate"]
        results["results"][name] = per_set
    return results


def _timeout_note(summary: dict[str, Any]) -> str:
    t = summary.get("timeouts")
    if not t:
        return ""
    if not t["at_final_target"]:
        return " (none at the last target)"
    return (f" ({t['at_final_target']} at the last target, median {t['median_final_distance_m']:.2f} m, "
            f"{t['median_final_speed_mps']:.2f} m/s at the end)")


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{result['env']}: {result['episodes']} episodes per set, seeds {result['seed']}.."
             f"{result['seed'] + result['episodes'] - 1}",
             f"{'controller':12s} {'set':11s} {'success':>8s} {'95% CI':>13s} {'t_goal':>7s} {'return':>8s}  failures"]
    for name, per_set in result["results"].items():
        for level in result["sets"]:
            s = per_set[level]
            ci = f"[{s['success_ci95'][0]:.2f}, {s['success_ci95'][1]:.2f}]"
            fails = ", ".join(f"{k} {v}{_timeout_note(s) if k == 'timeout' else ''}"
                              for k, v in s["failures"].items()) or "-"
            lines.append(f"{name:12s} {level:11s} {s['success_rate']:8.2f} {ci:>13s} "
                         f"{s['mean_time_to_goal_s']:7.2f} {s['mean_return']:8.1f}  {fails}")
        if "gap_held_out_over_nominal" in per_set:
            lines.append(f"{name:12s} held-out / nominal success: {per_set['gap_held_out_over_nominal']:.2f}")
    return "\n".join(lines)
