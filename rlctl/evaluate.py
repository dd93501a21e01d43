"""Evaluate and watch a trained policy: ``rlctl eval`` and ``rlctl enjoy``.

The policy module carries its own observation normalizer, so evaluation builds a *plain* env: what
the agent sees at evaluation is exactly what it saw in training, with the statistics frozen.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlctl.agents.policies import Policy
from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.config import Config
from rlctl.envs.make import make_env
from rlctl.envs.reward import RewardFn, RewardHook
from rlctl.spaces import SpaceAdapter


@torch.no_grad()
def act(agent: Policy, adapter: SpaceAdapter, obs: Any, deterministic: bool) -> Any:
    """One env action for a single (unbatched) observation (feed-forward policies; see :class:`Chooser`)."""
    device = next(agent.parameters()).device
    x = torch.from_numpy(adapter.obs(np.asarray(obs)[None])).to(device)
    dist = agent.dist(agent.normalize_obs(x))
    action = dist.mode() if deterministic else dist.sample()
    return adapter.to_env(agent.to_env_action(action).cpu().numpy())[0]


class Chooser:
    """A policy's env action for each observation of one episode at a time: what :func:`play_episode` calls.

    A recurrent policy keeps its state from step to step; :meth:`reset` (called by :func:`play_episode` at every
    episode or life start) zeroes it. A feed-forward policy is :func:`act` each step."""

    def __init__(self, agent: Policy, adapter: SpaceAdapter, deterministic: bool) -> None:
        self.agent, self.adapter, self.deterministic = agent, adapter, deterministic
        self.state: torch.Tensor | None = None

    def reset(self) -> None:
        self.state = None

    @torch.no_grad()
    def __call__(self, obs: Any) -> Any:
        agent = self.agent
        if not isinstance(agent, RecurrentActorCritic):
            return act(agent, self.adapter, obs, self.deterministic)
        x = torch.from_numpy(self.adapter.obs(np.asarray(obs)[None])).to(agent.action_low.device)
        starts = torch.tensor([self.state is None])
        state = agent.initial_state(1) if self.state is None else self.state
        action, self.state = agent.act(x, state, starts.to(x.device), self.deterministic)
        return self.adapter.to_env(action.cpu().numpy())[0]


def play_episode(env: Any, choose: Callable[[Any], Any], seed: int | None,
                 before_step: Callable[[], None] | None = None,
                 record: dict[str, list[Any]] | None = None) -> tuple[float, int]:
    """Play one episode from ``env.reset(seed=seed)``; its raw return and length.

    The return is the env's own, also under a reward hook (:mod:`rlctl.envs.reward`). With ``record``, the
    hook's return is appended to ``record["shaped"]``, the env's last ``info["is_success"]`` (None where
    it reports none) to ``record["success"]`` and the time to the goal (:func:`time_to_goal`) to
    ``record["time_to_goal"]``.

    Envs that report games (Atari, see :mod:`rlctl.envs.atari`) are played to the end of the game, through
    every lost life, and scored with the game's raw score and length (``info["game_return"]``).
    ``before_step`` runs before each step (e.g. to render a frame). A ``choose`` with a ``reset()`` method (a
    :class:`Chooser`) is reset at the episode's start and at every life's.
    """
    reset = getattr(choose, "reset", None)
    obs, _ = env.reset(seed=seed)
    if reset is not None:
        reset()
    total, shaped_total, length = 0.0, 0.0, 0
    while True:
        if before_step is not None:
            before_step()
        obs, reward, terminated, truncated, info = env.step(choose(obs))
        total += float(info.get("env_reward", reward))
        shaped_total += float(reward)
        length += 1
        if not (terminated or truncated):
            continue
        if info.get("game_over", True):
            break
        obs, _ = env.reset()  # a lost life: the game goes on
        if reset is not None:
            reset()
    if record is not None:
        record.setdefault("shaped", []).append(shaped_total)
        record.setdefault("success", []).append(bool(info["is_success"]) if "is_success" in info else None)
        record.setdefault("time_to_goal", []).append(time_to_goal(env, info, length))
    if "game_return" in info:
        return float(info["game_return"]), int(info["game_length"])
    return total, length


def time_to_goal(env: Any, info: dict[str, Any], length: int) -> float | None:
    """Seconds from the reset to the goal of an episode that ended in success: the env's own
    ``info["time_to_goal"]`` where it reports one (the quadrotor flies on after its goal), else the episode's
    length at the env's control rate ``ctrl_hz`` (envs that end at their goal); None without success or rate."""
    if not info.get("is_success"):
        return None
    if "time_to_goal" in info:
        return float(info["time_to_goal"])
    rate = getattr(getattr(env, "unwrapped", env), "ctrl_hz", None)
    return length / float(rate) if rate else None


def goal_summary(record: dict[str, list[Any]]) -> dict[str, Any]:
    """What :func:`play_episode` recorded about the goal, over its episodes: each one's ``successes``, their
    ``success_rate`` and the ``mean_time_to_goal_s`` of those that succeeded; only the keys the env gives data for
    (none for envs without ``info["is_success"]``)."""
    successes = [s for s in record.get("success", []) if s is not None]
    times = [t for t in record.get("time_to_goal", []) if t is not None]
    return {**({"successes": successes, "success_rate": float(np.mean(successes))} if successes else {}),
            **({"mean_time_to_goal_s": float(np.mean(times))} if times else {})}


def evaluate_policy(
    agent: Policy, adapter: SpaceAdapter, cfg: Config, episodes: int, deterministic: bool, seed: int,
    reward_fn: RewardFn | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` full episodes (episode i reset with ``seed + i``, Atari games through every
    life, see :func:`play_episode`); raw returns, not scaled. With the run's ``reward_fn`` the shaped
    returns are reported too (``mean_shaped_return``), and for envs that report ``info["is_success"]`` the
    :func:`goal_summary`."""
    env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
    if reward_fn is not None:
        env = RewardHook(env, reward_fn)
    returns: list[float] = []
    lengths: list[int] = []
    record: dict[str, list[Any]] = {}
    try:
        for i in range(episodes):
            total, length = play_episode(env, Chooser(agent, adapter, deterministic), seed + i,
                                         record=record)
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    return {
        "env": cfg.env.id,
        "episodes": episodes,
        "deterministic": deterministic,
        "seed": seed,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
        "returns": returns,
        "lengths": lengths,
        **({"mean_shaped_return": float(np.mean(record["shaped"])), "shaped_returns": record["shaped"]}
           if reward_fn else {}),
        **goal_summary(record),
    }


def ensure_headless_gl() -> None:
    """Pick an off-screen OpenGL backend for MuJoCo when there is no display (EGL, as on servers)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def record_video(
    agent: Policy, adapter: SpaceAdapter, cfg: Config, out: Path, episodes: int, seed: int,
    deterministic: bool = True, fps: int | None = None,
) -> dict[str, Any]:
    """Render ``episodes`` episodes headlessly (rgb_array) into an MP4 at ``out``."""
    import imageio.v2 as imageio

    ensure_headless_gl()
    env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps, render_mode="rgb_array")
    fps = fps or int(env.metadata.get("render_fps", 30))
    frames = 0
    returns: list[float] = []
    tmp = out.with_name(f".{out.name}.partial{out.suffix}")
    try:
        writer: Any
        with imageio.get_writer(tmp, fps=fps, macro_block_size=1) as writer:
            def frame() -> None:
                nonlocal frames
                writer.append_data(env.render())
                frames += 1

            for i in range(episodes):
                total, _ = play_episode(env, Chooser(agent, adapter, deterministic), seed + i, frame)
                returns.append(total)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        env.close()
    return {"video": str(out), "frames": frames, "fps": fps, "returns": returns}
