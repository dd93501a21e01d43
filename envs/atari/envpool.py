"""Atari on EnvPool (C++ threads stepping the ALE), behind the vector-env interface the learner uses.

``make_vector_env(..., vectorization="envpool")`` returns :class:`EnvPoolAtari` for ``ALE/*`` ids. It takes
the same options as :func:`rlctl.envs.atari.make_atari_env` and maps them onto EnvPool's, so both backends run
the same preprocessing: with the same ALE seed, one no-op frame, no sticky actions, no FIRE presses and
no life-loss resets they step through identical emulator states, clipped rewards, terminations, time
limits and game scores, and their frames differ by at most one grey level (the resize's rounding); a test
checks this over 450 steps of Breakout and of Pong.

Two details differ, both inside resets. FIRE reset: the gymnasium stack presses FIRE and then action 2,
one agent step each (the baselines' wrapper, which published scores used); EnvPool presses FIRE for one
frame. After a lost life: the gymnasium stack takes one NOOP agent step and refills the frame stack with
the new frame; EnvPool takes its random no-op frames and the FIRE frame, and keeps the stacked frames.
Sticky actions and no-op counts draw from different generators, so runs are alike in distribution, not
frame for frame.

What the adapter adds on top of EnvPool, to match the gymnasium backend exactly in *semantics*:

* ``SAME_STEP`` autoreset. EnvPool resets an env on the step *after* it ends (ignoring that step's
  action). The adapter takes that reset step at once for the envs that ended, so every step the
  learner sees is a real transition, and it puts the true last observation in ``info["final_obs"]``.
  (An explicit ``reset(env_id)`` would restart the whole game even after a lost life; the autoreset
  step continues it, as :class:`rlctl.envs.atari.EpisodicLife` does.)
* Whole-game accounting: ``info["game_over"]`` on every step, and ``game_return`` / ``game_length``
  (raw score, agent steps) in ``info["final_info"]`` when a game ends — what the collector logs.

Not supported: reward hooks (the rewards are computed in C++) and exact snapshots (EnvPool cannot save an
env's state), so a resumed run starts new games; the gymnasium backend resumes bit-exactly.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from rlctl.envs.atari import DEFAULT_MAX_EPISODE_STEPS
from rlctl.envs.errors import EnvError

# make_atari_env option -> EnvPool option (the same meaning; EnvPool's frame counts are agent steps too)
_OPTIONS = {
    "noop_max": "noop_max",
    "frame_skip": "frame_skip",
    "terminal_on_life_loss": "episodic_life",
    "clip_rewards": "reward_clip",
    "frame_stack": "stack_num",
    "fire_reset": "use_fire_reset",
    "repeat_action_probability": "repeat_action_probability",
    "full_action_space": "full_action_space",
    "mode": "mode",
    "difficulty": "difficulty",
    "num_threads": "num_threads",
}
_DEFAULTS = {"noop_max": 30, "frame_skip": 4, "terminal_on_life_loss": True, "clip_rewards": True, "frame_stack": 4,
             "fire_reset": True, "repeat_action_probability": 0.25, "full_action_space": False}


def envpool_task(env_id: str) -> str:
    """``"ALE/Pong-v5"`` → EnvPool's ``"Pong-v5"``, with a clear error for anything else."""
    if not env_id.startswith("ALE/") or not env_id.endswith("-v5"):
        raise EnvError(f"the envpool backend runs ALE/<Game>-v5 ids, got {env_id!r}")
    return env_id[len("ALE/"):]


class EnvPoolAtari(gym.vector.VectorEnv):
    """``num_envs`` Atari games stepped by EnvPool, with SAME_STEP autoreset and game-score infos."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012

    def __init__(self, env_id: str, num_envs: int, kwargs: dict[str, Any] | None = None,
                 max_episode_steps: int | None = None) -> None:
        try:
            import envpool
        except ImportError as exc:
            raise EnvError(f"the envpool backend needs EnvPool ({exc}); install it with: "
                           "pip install 'rlctl[envpool]'") from None
        self._envpool = envpool
        self.task = envpool_task(env_id)
        if self.task not in envpool.list_all_envs():
            raise EnvError(f"EnvPool has no Atari game {self.task!r} (see envpool.list_all_envs())")
        options = dict(_DEFAULTS)
        unknown = sorted(set(kwargs or {}) - set(_OPTIONS) - {"screen_size"})
        if unknown:
            raise EnvError(f"the envpool backend does not take {unknown}; options: "
                           f"{', '.join(sorted([*_OPTIONS, 'screen_size']))}")
        options.update(kwargs or {})
        self._config = {_OPTIONS[k]: v for k, v in options.items() if k in _OPTIONS}
        size = int(options.get("screen_size", 84))
        self._config.update(img_height=size, img_width=size, gray_scale=True, use_inter_area_resize=True,
                            max_episode_steps=int(max_episode_steps or DEFAULT_MAX_EPISODE_STEPS))
        self.num_envs = int(num_envs)
        self._ids = np.arange(self.num_envs)
        self._pool = self._make(seed=0)
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = self._pool.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._game_return = np.zeros(self.num_envs)
        self._game_length = np.zeros(self.num_envs, dtype=np.int64)

    def _make(self, seed: int) -> Any:
        try:
            return self._envpool.make(self.task, env_type="gymnasium", num_envs=self.num_envs, seed=int(seed),
                                      **self._config)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise EnvError(f"cannot make {self.task} on EnvPool with {self._config}: {exc}") from None

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """New games in every env; env i is seeded with ``seed + i`` (EnvPool's rule, also rlctl's)."""
        if isinstance(seed, list):
            seed = seed[0]
        if seed is not None:
            self._pool.close()
            self._pool = self._make(seed)
        obs, _ = self._pool.reset(self._ids)
        self._game_return[:] = 0.0
        self._game_length[:] = 0
        return obs, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions).reshape(self.num_envs)
        obs, reward, terminated, truncated, raw = self._pool.step(actions, self._ids)
        order = np.argsort(raw["env_id"])  # rows come back in env-id order when all envs step; be sure
        obs, reward, terminated, truncated = obs[order], reward[order], terminated[order], truncated[order]
        self._game_return += np.asarray(raw["reward"])[order]  # the unclipped reward
        self._game_length += 1
        game_over = np.logical_or(np.asarray(raw["terminated"])[order].astype(bool), truncated)
        info: dict[str, Any] = {"game_over": game_over, "_game_over": np.ones(self.num_envs, dtype=bool)}
        done = np.logical_or(terminated, truncated)
        if done.any():
            ended = np.nonzero(done)[0]
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in ended:
                final_obs[i] = obs[i].copy()
            final_info: dict[str, Any] = {
                "game_over": game_over.copy(), "_game_over": done.copy(),
                "game_return": np.where(game_over, self._game_return, 0.0), "_game_return": game_over & done,
                "game_length": np.where(game_over, self._game_length, 0), "_game_length": game_over & done,
            }
            # EnvPool's autoreset step: continues the game after a lost life, starts a new one after a game
            # over; its action is ignored and its reward is 0.
            new_obs, _, _, _, reset_raw = self._pool.step(np.zeros(len(ended), dtype=actions.dtype), ended)
            obs = obs.copy()
            obs[np.asarray(reset_raw["env_id"])] = new_obs
            self._game_return[game_over] = 0.0
            self._game_length[game_over] = 0
            info["game_over"] = np.where(done, False, game_over)
            info.update(final_obs=final_obs, _final_obs=done.copy(), final_info=final_info,
                        _final_info=done.copy())
        return obs, reward.astype(np.float64), terminated, truncated, info

    def get_attr(self, name: str) -> tuple[Any, ...]:
        if name == "snapshot_state":  # EnvPool cannot save an env; the collector then starts new games
            return (None,) * self.num_envs
        raise AttributeError(f"EnvPoolAtari envs have no attribute {name!r}")

    def set_attr(self, name: str, values: Any) -> None:
        raise AttributeError(f"EnvPoolAtari envs cannot set {name!r}")

    def close_extras(self, **kwargs: Any) -> None:
        self._pool.close()
