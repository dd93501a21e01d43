"""Record demonstrations (:mod:`rlctl.envs.demo` files) by running a controller or a trained policy.

The acting source is a baseline spec (:func:`rlctl.sampling.baseline.make_baseline`): ``controller:NAME``, an
rlctl run directory or checkpoint, or ``sb3:PATH.zip``; or ``random`` (uniform actions from a stream seeded with
the episode's seed: for tests, and for searching action sequences by keeping the successful ones). It need not
have been trained on this env: a policy trained on a dense task can demonstrate its sparse variant. Snapshots are
taken of the env ``make_env`` builds, the same chain :class:`rlctl.envs.demo_start.DemoStarts` restores into.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlctl import __version__
from rlctl.checkpoint import atomic_write_bytes
from rlctl.envs.demo import demo_arrays, episode_arrays
from rlctl.envs.make import make_env
from rlctl.envs.snapshot import capture_state
from rlctl.errors import UserError
from rlctl.sampling.baseline import make_baseline


def save_demo(path: Path, meta: dict[str, Any], episodes: list[dict[str, np.ndarray]]) -> None:
    """Write a demo file (:mod:`rlctl.envs.demo`) atomically: a kill leaves the old file or the new one."""
    arrays = demo_arrays(meta, episodes)
    atomic_write_bytes(Path(path), lambda fh: np.savez_compressed(fh, **arrays))  # type: ignore[arg-type]


class _Random:
    """Uniform random actions, reseeded per episode (``--from random``)."""

    def __init__(self, env: Any) -> None:
        self.space = env.action_space

    def seed(self, seed: int) -> None:
        self.space.seed(seed)

    def reset(self) -> None:
        pass

    def act(self, obs: Any) -> Any:
        return self.space.sample()


@dataclass
class Recorded:
    """What :func:`record_demo` kept and tried."""

    path: Path
    lengths: list[int]
    returns: list[float]
    successes: list[bool]
    attempts: int


def record_demo(env_id: str, source: str, episodes: int, out: Path, seed: int = 0,
                kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None,
                only_successful: bool = False, max_attempts: int | None = None) -> Recorded:
    """Run ``source`` for ``episodes`` episodes (episode ``i`` reset with ``seed + i``) and write ``out``.

    With ``only_successful``, episodes whose env never reported ``is_success`` are dropped and more are run, up
    to ``max_attempts`` (default 10 × ``episodes``); UserError if too few succeed.
    """
    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    env = make_env(env_id, kwargs, max_episode_steps)
    kept: list[dict[str, np.ndarray]] = []
    lengths: list[int] = []
    returns: list[float] = []
    successes: list[bool] = []
    attempts, limit = 0, max_attempts or 10 * episodes
    try:
        controller: Any = _Random(env) if source == "random" else make_baseline(source, env)
        while len(kept) < episodes and attempts < (limit if only_successful else episodes):
            obs, _ = env.reset(seed=seed + attempts)
            attempts += 1
            controller.reset()
            if isinstance(controller, _Random):
                controller.seed(seed + attempts)
            snaps, obs_list, actions, rewards, success = [], [], [], [], []
            terminated = False
            while True:
                snaps.append(capture_state(env))
                obs_list.append(np.array(obs))
                action = controller.act(obs)
                obs, reward, terminated, truncated, info = env.step(action)
                actions.append(np.array(action))
                rewards.append(float(reward))
                success.append(bool(info.get("is_success", False)))
                if terminated or truncated:
                    break
            if only_successful and not any(success):
                continue
            kept.append(episode_arrays(snaps, obs_list, actions, rewards, success, terminated))
            lengths.append(len(actions))
            returns.append(float(np.sum(rewards)))
            successes.append(any(success))
    finally:
        env.close()
    if len(kept) < episodes:
        raise UserError(f"{source} succeeded in {len(kept)} of {attempts} episodes on {env_id}; "
                        f"{episodes} successful ones were asked for")
    meta = {"env_id": env_id, "env_kwargs": dict(kwargs or {}), "max_episode_steps": max_episode_steps,
            "source": source, "seed": seed, "rlctl_version": __version__}
    save_demo(out, meta, kept)
    return Recorded(Path(out), lengths, returns, successes, attempts)
