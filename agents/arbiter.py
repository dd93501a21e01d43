"""Agency transfer: who acts at each step, a working baseline controller or the learned policy.

Pure functions over ``[N]`` arrays (one entry per env), so they are tested with hand-made numbers and run
the same inside every sampler worker. The learner's share ``p`` comes from a transfer schedule
(:func:`transfer_share`) that the trainer advances; the per-step rules are:

* ``prob`` — the learner acts with probability ``p``;
* ``calf`` — CALF (Osinenko et al., arXiv:2405.18118; the SB3 wrapper of ``stable-baselines-playground``): the
  learner acts when its critic certifies an improvement of at least ν over the last certified value
  ``V†`` (then ``V† ← V(s)``), else with the relax probability ``max(λ, p)``, else the baseline acts; λ decays
  by ``step_factor`` each step and restarts each episode from λ₀, which grows by ``episode_factor``;
* ``jsrl`` — Jump-Start RL (Uchendu et al., 2023): the baseline acts for the first ``h = ⌈H·(1 − p)⌉`` steps
  of each episode, the learner after;
* ``residual`` — residual policy learning (Silver et al., 2018) with the baseline faded out: the env receives
  ``a_learner + (1 − p)·a_baseline``, so at ``p = 1`` the learner stands alone.

At ``p = 1`` every mode leaves the learner alone: the final stage, with the baseline disconnected.
"""

from __future__ import annotations

import math

import numpy as np

MODES = ("prob", "calf", "jsrl", "residual")
SCHEDULES = ("fixed", "linear", "multiplicative", "success_gated")


def transfer_share(schedule: str, progress: float, start: float, end: float, updates: int = 0,
                   factor: float = 1.0, gated: float | None = None) -> float:
    """The learner's share ``p`` at training ``progress`` ∈ [0, 1] (fraction of the step budget).

    ``fixed`` keeps ``start``; ``linear`` rises from ``start`` to 1 at ``progress = end``; ``multiplicative``
    multiplies ``start`` by ``factor`` per update; ``success_gated`` is the level ``gated`` that evaluations of
    the learner alone raised (:func:`gate_level`). Past ``end`` every schedule but ``fixed`` gives 1: the final
    stage, the baseline disconnected.
    """
    if schedule == "fixed":
        return start
    if progress >= end:
        return 1.0
    if schedule == "linear":
        return start + (1.0 - start) * progress / end
    if schedule == "multiplicative":
        return min(1.0, max(start, 1e-3) * factor ** updates)
    if schedule == "success_gated":
        return start if gated is None else gated
    raise ValueError(f"unknown transfer schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def gate_level(level: float, success: float, threshold: float, step: float, floor: float = 0.0) -> float:
    """One success-gated move: up by ``step`` when the learner alone reached the goal often enough, back down
    by ``step`` (not below ``floor``, the schedule's starting share) when its success collapsed (under half the
    threshold), else unchanged."""
    if success >= threshold:
        return min(1.0, level + step)
    if success < threshold / 2:
        return max(floor, level - step)
    return level


def prob_step(share: float, uniforms: np.ndarray) -> np.ndarray:
    """``[N]`` bool, True where the learner acts."""
    return uniforms < share


def jsrl_step(share: float, steps_in_episode: np.ndarray, horizon: int) -> np.ndarray:
    """``[N]`` bool: the learner acts from step ``⌈horizon·(1 − share)⌉`` of each episode on."""
    guide_steps = math.ceil(horizon * (1.0 - share) - 1e-9)
    return steps_in_episode >= guide_steps


def calf_step(values: np.ndarray, certified_value: np.ndarray, relax: np.ndarray, share: float,
              uniforms: np.ndarray, nu: float, step_factor: float, episode_start: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One CALF decision per env: ``(learner_acts, certified, new certified value, new relax probability)``.

    ``values`` is the learner's critic ``V(s_t)`` (return-to-go, higher is better), ``certified_value`` the
    last certified ``V†``; at an episode's first step ``V† = V(s_0)`` was just set (:func:`calf_episode_start`)
    and nothing is certified (``episode_start``).
    """
    certified = values - certified_value >= nu
    if episode_start is not None:
        certified &= ~episode_start
    acts = certified | (uniforms < np.maximum(relax, share))
    return acts, certified, np.where(certified, values, certified_value), np.clip(relax * step_factor, 0.0, 1.0)


def calf_episode_start(values: np.ndarray, relax_init: np.ndarray, episode_factor: float, first: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(V†, λ, λ₀)`` at the start of an episode: ``V† = V(s_0)``, λ₀ grows by ``episode_factor`` after the
    first episode, and λ restarts from it."""
    grown = np.where(first, relax_init, np.clip(relax_init * (1.0 + episode_factor), 0.0, 1.0))
    return values.copy(), grown.copy(), grown


def residual_action(learner: np.ndarray, baseline: np.ndarray, share: float) -> np.ndarray:
    """The executed action of the residual mode: ``a_learner + (1 − p)·a_baseline``."""
    return learner + (1.0 - share) * baseline
