"""Turn a gymnasium id into a vector env with the autoreset semantics the learner relies on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from rlctl.envs.demo_start import StartSettings, with_demo_starts
from rlctl.envs.errors import EnvError
from rlctl.envs.ids import SIMULATOR_EXTRAS, check_env_id
from rlctl.envs.reward import BatchedReward, BatchedRewardHook, RewardFn, RewardHook
from rlctl.envs.snapshot import Snapshot

_seen_mujoco_warnings: set[str] = set()


def _route_mujoco_warnings() -> None:
    """Send MuJoCo's C-level warnings to Python's logging, once each.

    By default MuJoCo prints them on stderr *and* appends them to ``MUJOCO_LOG.TXT`` in the working
    directory, for every env it builds (Hopper and Walker2d trigger a deprecation warning each time).
    """
    try:
        import mujoco
    except ImportError:
        return

    def on_warning(message: str) -> None:
        if message not in _seen_mujoco_warnings:
            _seen_mujoco_warnings.add(message)
            logging.getLogger("mujoco").info("MuJoCo: %s", message.strip())

    mujoco.set_mju_user_warning(on_warning)


def env_factory(
    env_id: str,
    kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
    reward_fn: RewardFn | None = None,
    starts: StartSettings | None = None,
    deferred_reward: bool = False,
) -> Callable[[], gym.Env]:
    """A picklable thunk that builds one env: gymnasium.make + demo starts + reward hook + snapshot support.

    Demo starts sit right on ``make_env``'s env: a demo's snapshots are of that chain (``rlctl demo record``).
    ``deferred_reward``: the hook only packs each transition, for a :class:`BatchedRewardHook` around the
    vector env."""

    def thunk() -> gym.Env:
        env = make_env(env_id, kwargs, max_episode_steps, render_mode)
        if starts is not None and starts.demos:
            env = with_demo_starts(env, starts, env_id, kwargs, max_episode_steps)
        if reward_fn is not None:
            env = RewardHook(env, reward_fn, deferred=deferred_reward)
        return Snapshot(env)

    return thunk


def make_env(
    env_id: str,
    kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """``gymnasium.make`` with rlctl's errors (unknown id, missing simulator extra, bad kwargs).

    ``ALE/*`` ids are built by :func:`rlctl.envs.atari.make_atari_env` (standard DQN/PPO preprocessing, uint8
    ``[4, 84, 84]`` frames); ``kwargs`` then set its options (``frame_skip``, ``terminal_on_life_loss``...)
    and the ALE's (``mode``, ``difficulty``...), and ``max_episode_steps`` counts agent steps per game.
    """
    spec = check_env_id(env_id)
    if "mujoco" in str(spec.entry_point):
        _route_mujoco_warnings()
    if "ale_py" in str(spec.entry_point):  # Atari always gets the standard preprocessing stack
        from rlctl.envs.atari import DEFAULT_MAX_EPISODE_STEPS, make_atari_env

        try:
            return make_atari_env(env_id, max_episode_steps=max_episode_steps or DEFAULT_MAX_EPISODE_STEPS,
                                  render_mode=render_mode, **dict(kwargs or {}))
        except TypeError as exc:
            raise EnvError(f"cannot make {env_id} with kwargs {kwargs}: {exc}") from None
    extra_kwargs = dict(kwargs or {})
    if render_mode is not None:
        extra_kwargs["render_mode"] = render_mode
    try:
        return gym.make(spec.id, max_episode_steps=max_episode_steps, **extra_kwargs)
    except gym.error.DependencyNotInstalled as exc:
        entry = str(spec.entry_point)
        extra = next((name for key, name in SIMULATOR_EXTRAS.items() if key in entry), None)
        fix = f"; install it with: pip install 'rlctl[{extra}]'" if extra else ""
        raise EnvError(f"{env_id} needs a simulator that is not installed ({exc}){fix}") from None
    except (TypeError, ValueError) as exc:  # unknown or invalid keyword arguments
        raise EnvError(f"cannot make {env_id} with kwargs {extra_kwargs}: {exc}") from None


def make_vector_env(
    env_id: str,
    num_envs: int,
    vectorization: str = "sync",
    kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    reward_fn: RewardFn | None = None,
    starts: StartSettings | None = None,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies as one vector env in SAME_STEP autoreset mode.

    SAME_STEP means a step that ends an episode returns the *reset* observation and puts the true
    final observation in ``info["final_obs"]`` — what the learner needs to bootstrap at time limits
    without a dead transition per episode (gymnasium's default NEXT_STEP mode inserts one).
    ``vectorization="envpool"`` steps ``ALE/*`` games with EnvPool instead (:mod:`rlctl.envs.atari.envpool`).
    ``starts`` starts episodes from demonstration states (:mod:`rlctl.envs.demo_start`). A ``reward_fn`` that
    is a :class:`~rlctl.envs.reward.BatchedReward` is computed once per vector step for all sub-envs.
    """
    if vectorization == "envpool":
        if reward_fn is not None:
            raise EnvError("reward hooks need vectorization sync or async (EnvPool computes rewards in C++)")
        if starts is not None and starts.demos:
            raise EnvError("demo starts need vectorization sync or async (EnvPool cannot restore saved states)")
        from rlctl.envs.atari.envpool import EnvPoolAtari

        return EnvPoolAtari(env_id, num_envs, kwargs, max_episode_steps)
    if vectorization == "async":  # fail fast here with a clear error, not inside a subprocess
        make_env(env_id, kwargs, max_episode_steps).close()
    batched = isinstance(reward_fn, BatchedReward)
    fns = [env_factory(env_id, kwargs, max_episode_steps, reward_fn=reward_fn, starts=starts, deferred_reward=batched)
           for _ in range(num_envs)]
    mode = AutoresetMode.SAME_STEP
    if vectorization == "sync":
        envs: gym.vector.VectorEnv = gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    elif vectorization == "async":
        envs = gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=mode)
    else:
        raise EnvError(f"vectorization must be 'sync', 'async' or 'envpool', got {vectorization!r}")
    if envs.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:  # asserted once, here
        raise EnvError(f"vector env reports autoreset mode {envs.metadata.get('autoreset_mode')}, need SAME_STEP")
    if batched:
        envs = BatchedRewardHook(envs, cast(BatchedReward, reward_fn))
    return envs
