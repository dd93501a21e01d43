"""Synthetic tasks with known answers, for studying gradient estimators and memory.

:class:`TargetMatchingEnv` is Wu et al.'s (ICLR 2018, §5) high-dimensional target matching: one state, one step,
reward ``−‖a − c‖²`` for a fixed target ``c``. With a Gaussian policy of ``m`` dimensions every factor's score is
multiplied by the squared errors of all the others, so the noise a state-only baseline leaves grows with m,
while a per-factor baseline b_i(a^{-i}) can remove the other factors' share: the regime where action-dependent
baselines should pay, and where trajectory noise (Tucker et al. 2018's Σ_τ) is zero.

:class:`MemoryCueEnv` needs memory: a cue seen once must be named several steps later (recurrent policies).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MAX_DIM = 2000


class TargetMatchingEnv(gym.Env[np.ndarray, np.ndarray]):
    """One-step episodes: observe a constant, act ``a ∈ [−bound, bound]^dim``, get ``−‖a − c‖²``, terminate.

    ``c`` is drawn once from ``U(−1, 1)^dim`` with ``target_seed`` (fixed across episodes and seeds of the run),
    so an optimal policy's return is 0 and a policy at ``N(0, I)`` earns about ``−dim·(1 + 1/3)``. The info
    carries ``per_dim_error``, the mean squared error per dimension (the scale-free quantity to threshold).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - an Env instance var

    def __init__(self, dim: int = 10, target_seed: int = 0, bound: float = 10.0) -> None:
        if not 1 <= int(dim) <= MAX_DIM:
            raise ValueError(f"dim must be in [1, {MAX_DIM}], got {dim}")
        if bound <= 0:
            raise ValueError(f"bound must be positive, got {bound}")
        self.dim, self.target_seed, self.bound = int(dim), int(target_seed), float(bound)
        self.target = np.random.default_rng(self.target_seed).uniform(-1.0, 1.0, self.dim)
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-self.bound, self.bound, (self.dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64), -self.bound, self.bound)
        error = float(np.square(a - self.target).sum())
        return np.zeros(1, np.float32), -error, True, False, {"per_dim_error": error / self.dim}


class MemoryCueEnv(gym.Env[np.ndarray, np.int64]):
    """Remember a cue: the first observation shows one of ``cues`` one-hot, the next ``length − 1`` show nothing
    (zeros, and the time ``t/length``); the last step's action is rewarded 1 if it names the cue, else 0, and
    ends the episode (``info["is_success"]``). Only a policy with memory beats chance (1/cues); every action but
    the last is free."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - an Env instance var

    def __init__(self, length: int = 8, cues: int = 2) -> None:
        if length < 2 or cues < 2:
            raise ValueError(f"length and cues must be >= 2, got {length} and {cues}")
        self.length, self.cues = int(length), int(cues)
        self.observation_space = spaces.Box(0.0, 1.0, (self.cues + 1,), np.float32)
        self.action_space = spaces.Discrete(self.cues)
        self.cue, self.t = 0, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.cues + 1, np.float32)
        if self.t == 0:
            obs[self.cue] = 1.0
        obs[-1] = self.t / self.length
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(self.cues)), 0
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        if self.t < self.length:
            return self._obs(), 0.0, False, False, {}
        success = int(action) == self.cue
        return self._obs(), float(success), True, False, {"is_success": success}
