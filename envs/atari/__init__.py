"""Atari 2600 (ALE) envs with the standard DQN/PPO preprocessing, plus true game-score accounting.

:func:`make_atari_env` builds the stack used by the PPO paper, CleanRL's ``ppo_atari.py`` and SB3's
``AtariWrapper``, innermost first::

    ale_py AtariEnv(frameskip=1, obs_type="ram", see AtariFrames)
    StickyActions        each emulator frame repeats the previous action with probability 0.25
    AtariFrames          noop reset, frame skip with a max over the last two frames, 84x84 area resize
    TimeLimit            max_episode_steps *agent* steps per *game* (see below)
    GameStats            info["game_over"]; info["game_return"] / ["game_length"] when a game ends
    EpisodicLife         a lost life terminates the learner's episode, the game goes on
    FireReset            presses FIRE after every reset, for games whose actions include FIRE
    SignReward           reward -> sign(reward); the raw one is kept in info["raw_reward"]
    FrameStackObservation(frame_stack)           uint8 observations of shape (4, 84, 84), newest last;
                                                 a reset (also after a lost life) fills it with its frame

Why the game-score accounting: with episodic life every life is an "episode" for the learner, and
rewards are clipped, so the per-episode sums the collector sees are neither the game's score nor
comparable with published results. CleanRL and SB3 report the raw score of the whole game (all
lives). ``GameStats`` sits below ``EpisodicLife`` and the reward clipping, so it sees every agent
step of the game (also the ones taken inside resets) with the unclipped reward. A game that ends
inside a reset (the time limit falling on the NOOP after a lost life, say) is reported on the
learner's next step, which replays the end without emulating anything; reset infos never carry
``game_return``.

Why our own ``EpisodicLife`` and not ``AtariPreprocessing(terminal_on_life_loss=True)``: gymnasium
1.4's ``AtariPreprocessing.reset`` always calls the inner ``reset()``, so every life loss would
restart the whole game — the agent would only ever play its first life, and game scores would be
wrong. Ours answers a reset after a life loss with one NOOP step instead.

Why our own ``AtariFrames`` and not gymnasium's ``AtariPreprocessing``: that wrapper needs OpenCV
(``cv2.resize``), which neither ale-py nor the ``atari`` extra installs. ``AtariFrames`` does the
same thing with numpy: the same ALE grayscale screens, the same noop reset and max-pooling, and an
area-averaging resize (OpenCV's ``INTER_AREA``). Checked against gymnasium 1.4 + OpenCV 4.14 on the
same seeds and actions: identical on Pong, and off by one grey level on under 0.02% of the pixels
on Breakout and Space Invaders (float rounding); rewards and terminations identical.

Time limit: ``max_episode_steps`` counts agent steps (each ``frame_skip`` emulator frames) of one
game, across lives, not frames: the standard cap of 108,000 frames (30 minutes of play, Machado et
al. 2018; ALE v5's own default) is 27,000 agent steps at ``frame_skip=4``, which is the default
here. ALE's own frame cap is switched off (unless ``max_num_frames_per_episode`` is passed in
``kwargs``) so that one limit applies; noop-reset frames do not count towards it.

Why our own ``StickyActions`` and not the ALE's ``repeat_action_probability``: the ALE keeps the
previous action outside the state ``cloneState`` saves, so a restored game would repeat the wrong
action on its next frames and diverge (measured: 23 of 300 observations differed after a restore on
Breakout). Ours applies the same rule per emulator frame (Machado et al. 2018), draws from the
env's seeded generator and keeps the previous action as wrapper state, so a snapshot restores it.

Fire reset: applied when action 1 is FIRE, the rule the baselines' wrapper uses. That includes
Pong, whose serve does not need FIRE; pressing it there is harmless and keeps the stack identical
to the one published scores were made with.
"""

from __future__ import annotations

from typing import Any, SupportsFloat, cast

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box
from gymnasium.wrappers import FrameStackObservation, TimeLimit

from rlctl.envs.errors import EnvError
from rlctl.envs.ids import check_env_id

DEFAULT_MAX_EPISODE_STEPS = 27_000
"""108,000 emulator frames (30 minutes of play) at the default frame skip of 4."""


def _ale(env: gym.Env) -> Any:
    """The ALE interface of the base AtariEnv (lives, screens, action meanings)."""
    return cast(Any, env.unwrapped).ale


def _meanings(env: gym.Env) -> list[str]:
    return list(cast(Any, env.unwrapped).get_action_meanings())


def _area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-resize taps along one axis: input indices and weights, both ``[taps, n_out]``.

    Output pixel ``i`` averages the input pixels it covers, weighted by the covered fraction
    (OpenCV's ``INTER_AREA``). Gathers of a few taps instead of a dense matmul: BLAS would be
    slower here and spawns threads that fight the other envs for the cores.
    """
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    j = np.arange(n_in)[None, :]
    weights = np.clip(np.minimum(lo + scale, j + 1) - np.maximum(lo, j), 0.0, None) / scale  # [n_out, n_in]
    taps = int((weights > 0).sum(1).max())
    idx = np.zeros((taps, n_out), dtype=np.intp)
    w = np.zeros((taps, n_out), dtype=np.float32)
    for i in range(n_out):
        cols = np.flatnonzero(weights[i])
        idx[: len(cols), i] = cols
        w[: len(cols), i] = weights[i, cols]
    return idx, w


class AtariFrames(gym.Wrapper):
    """Noop reset, frame skip with a max over the last two frames, grayscale, square area resize.

    The max over two frames removes the flicker of sprites drawn on alternate frames. Screens come
    straight from ALE, whatever the base env's ``obs_type``, so :func:`make_atari_env` asks the base
    env for its cheapest per-frame observation, the 128-byte RAM (~15% more steps/s than grayscale).
    Observations are ``uint8 [size, size]``.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30, frame_skip: int = 4, screen_size: int = 84) -> None:
        super().__init__(env)
        if frame_skip < 1 or noop_max < 0 or screen_size < 1:
            raise ValueError(f"need frame_skip >= 1, noop_max >= 0, screen_size >= 1; got {frame_skip}, "
                             f"{noop_max}, {screen_size}")
        if frame_skip > 1 and getattr(env.unwrapped, "_frameskip", None) != 1:
            raise ValueError("the base env skips frames itself; make it with frameskip=1")
        if noop_max > 0 and _meanings(env)[0] != "NOOP":
            raise ValueError("noop reset needs action 0 to be NOOP")
        self.noop_max = noop_max
        self.frame_skip = frame_skip
        self.screen_size = screen_size
        height, width = _ale(env).getScreenDims()
        self._screens = np.zeros((2, height, width), dtype=np.uint8)  # the last two frames of a step
        self._row_idx, row_w = _area_taps(height, screen_size)
        self._row_w = row_w[:, :, None]
        self._col_idx, self._col_w = _area_taps(width, screen_size)
        self.observation_space = Box(0, 255, (screen_size, screen_size), np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        _, info = self.env.reset(seed=seed, options=options)
        noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            _, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                _, info = self.env.reset()
        ale = _ale(self.env)
        ale.getScreenGrayscale(self._screens[0])
        self._screens[1] = self._screens[0]
        return self._observe(), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        ale = _ale(self.env)
        total = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        for t in range(self.frame_skip):
            _, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:  # a terminal frame is shown as is (nothing comes after it)
                ale.getScreenGrayscale(self._screens[0])
                self._screens[1] = self._screens[0]
                break
            if t >= self.frame_skip - 2:
                ale.getScreenGrayscale(self._screens[t - self.frame_skip + 2])
        return self._observe(), total, terminated, truncated, info

    def _observe(self) -> np.ndarray:
        frame = np.maximum(self._screens[0], self._screens[1]) if self.frame_skip > 1 else self._screens[-1]
        pixels = frame.astype(np.float32)
        rows = pixels[self._row_idx[0]] * self._row_w[0]
        for k in range(1, len(self._row_idx)):
            rows += pixels[self._row_idx[k]] * self._row_w[k]
        out = rows[:, self._col_idx[0]] * self._col_w[0]
        for k in range(1, len(self._col_idx)):
            out += rows[:, self._col_idx[k]] * self._col_w[k]
        return np.rint(out, out=out).astype(np.uint8)


class StickyActions(gym.Wrapper):
    """On every emulator frame, repeat the previous frame's action with probability ``p`` (ALE v5's rule).

    Sits directly on the frameskip-1 ALE env, so each frame of a skipped step draws on its own, as in
    the ALE. The draws come from the base env's ``np_random`` (seeded by ``reset``, saved by
    :mod:`rlctl.envs.snapshot`); a new game starts from NOOP.
    """

    def __init__(self, env: gym.Env, p: float) -> None:
        super().__init__(env)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"repeat_action_probability must lie in [0, 1), got {p}")
        self.p = p
        self.last_action = 0

    @property
    def wrapper_state(self) -> dict[str, Any]:
        return {"last_action": self.last_action}

    @wrapper_state.setter
    def wrapper_state(self, state: dict[str, Any]) -> None:
        self.last_action = int(state["last_action"])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        self.last_action = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        if self.np_random.random() >= self.p:
            self.last_action = int(action)
        return self.env.step(self.last_action)


class GameStats(gym.Wrapper):
    """Marks real game ends and reports the game's raw score and length (agent steps) on them.

    Every step's info gets ``game_over``; the step that ends the game (all lives lost, or the time
    limit) also gets ``game_return`` and ``game_length``. Must sit below :class:`EpisodicLife` and
    any reward clipping. Reset infos carry ``game_over=False`` so vector-env infos stay uniform.

    Stepping a game that has ended repeats its last transition (reward 0, nothing emulated, not
    counted). That is how a game that ends inside a reset — during the NOOP after a lost life or
    the FIRE presses, e.g. when the time limit falls there — still reaches the learner: the reset
    returns, and the learner's next step reports the end.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.game_return = 0.0
        self.game_length = 0
        self._end: tuple[Any, bool, bool, dict] | None = None  # the transition that ended the game

    @property
    def wrapper_state(self) -> dict[str, Any]:
        """Score so far and the game's last transition, as plain data (for :mod:`rlctl.envs.snapshot`)."""
        end = None
        if self._end is not None:
            obs, terminated, truncated, info = self._end
            end = {"obs": obs, "terminated": terminated, "truncated": truncated,
                   "info": {k: v.item() if isinstance(v, np.generic) else v for k, v in info.items()}}
        return {"game_return": self.game_return, "game_length": self.game_length, "end": end}

    @wrapper_state.setter
    def wrapper_state(self, state: dict[str, Any]) -> None:
        self.game_return, self.game_length = float(state["game_return"]), int(state["game_length"])
        end = state["end"]
        self._end = None if end is None else (end["obs"], bool(end["terminated"]), bool(end["truncated"]),
                                              dict(end["info"]))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.game_return, self.game_length, self._end = 0.0, 0, None
        return obs, {**info, "game_over": False}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        if self._end is not None:
            obs, terminated, truncated, info = self._end
            return obs, 0.0, terminated, truncated, dict(info)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_return += float(reward)
        self.game_length += 1
        info = {**info, "game_over": bool(terminated or truncated)}
        if info["game_over"]:
            info["game_return"] = self.game_return
            info["game_length"] = self.game_length
            self._end = (obs, bool(terminated), bool(truncated), info)
        return obs, reward, terminated, truncated, info


def _as_reset_info(info: dict) -> dict:
    """A step's info handed out by ``reset``: it never reports a game end (the next step does)."""
    out = {k: v for k, v in info.items() if k not in ("game_return", "game_length")}
    if "game_over" in out:
        out["game_over"] = False
    return out


class EpisodicLife(gym.Wrapper):
    """A lost life ends the learner's episode (``terminated``); the next ``reset`` continues the game.

    Losing a life is a strong, immediate signal of failure, which speeds up learning (DQN's trick).
    ``reset`` restarts the game only when it really ended (or when given a seed or options); after
    a life loss it takes one NOOP step and returns that observation — also when that step ended the
    game, which :class:`GameStats` then reports on the learner's next step.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    @property
    def wrapper_state(self) -> dict[str, Any]:
        """Lives and whether the game is over (for :mod:`rlctl.envs.snapshot`)."""
        return {"lives": self.lives, "game_over": self.game_over}

    @wrapper_state.setter
    def wrapper_state(self, state: dict[str, Any]) -> None:
        self.lives, self.game_over = int(state["lives"]), bool(state["game_over"])

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = _ale(self.env).lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if self.game_over or seed is not None or options is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            self.game_over = bool(terminated or truncated)
            self.lives = _ale(self.env).lives()
            return obs, _as_reset_info(info)
        self.game_over = False
        self.lives = _ale(self.env).lives()
        return obs, info


class FireReset(gym.Wrapper):
    """After every reset press FIRE, then action 2: games such as Breakout wait for FIRE to serve.

    Above :class:`EpisodicLife` this also happens after each lost life (the next ball needs FIRE too).
    The same two actions as the baselines' wrapper, so scores stay comparable. If a press ends the
    episode the reset stops there and the learner's next step reports it (see :class:`GameStats`).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        if not has_fire(env):
            raise ValueError(f"fire reset needs action 1 to be FIRE, got {_meanings(env)}")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                break
        return obs, _as_reset_info(info)


class SignReward(gym.Wrapper):
    """Rewards become -1, 0 or +1 so one set of hyperparameters fits every game's score scale."""

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        raw = float(reward)
        return obs, float(np.sign(raw)), terminated, truncated, {**info, "raw_reward": raw}


def has_fire(env: gym.Env) -> bool:
    """Whether the game's action 1 is FIRE (the rule for applying :class:`FireReset`)."""
    meanings = _meanings(env)
    return len(meanings) >= 3 and meanings[1] == "FIRE"


def _check_atari_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The spec of an ALE env id, or an EnvError saying what is wrong."""
    try:
        import ale_py
    except ImportError as exc:
        raise EnvError(f"Atari env {env_id!r} needs ale-py ({exc}); install it with: "
                       "pip install 'rlctl[atari]'") from None
    gym.register_envs(ale_py)
    spec = check_env_id(env_id)
    if "ale_py" not in str(spec.entry_point):
        raise EnvError(f"{env_id!r} is not an Atari (ALE) env id; use one like 'ALE/Pong-v5'")
    return spec


def make_atari_env(
    env_id: str,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    terminal_on_life_loss: bool = True,
    clip_rewards: bool = True,
    frame_stack: int = 4,
    fire_reset: bool = True,
    repeat_action_probability: float = 0.25,
    full_action_space: bool = False,
    max_episode_steps: int | None = DEFAULT_MAX_EPISODE_STEPS,
    render_mode: str | None = None,
    **kwargs: Any,
) -> gym.Env:
    """An ALE game (``"ALE/Pong-v5"``) with the standard preprocessing; see the module docstring.

    Observations are ``uint8 [frame_stack, screen_size, screen_size]``. ``max_episode_steps`` is in
    agent steps per game (None: no limit). ``kwargs`` go to the ALE env (``mode``, ``difficulty``...).
    """
    spec = _check_atari_id(env_id)
    ale_kwargs: dict[str, Any] = {"obs_type": "ram", "max_num_frames_per_episode": 0, **kwargs}
    try:
        env: gym.Env = gym.make(spec.id, frameskip=1, repeat_action_probability=0.0,
                                full_action_space=full_action_space, render_mode=render_mode, **ale_kwargs)
    except (TypeError, ValueError, gym.error.Error) as exc:
        raise EnvError(f"cannot make {env_id} with {ale_kwargs}: {exc}") from None
    try:
        if repeat_action_probability > 0.0:
            env = StickyActions(env, repeat_action_probability)
        env = AtariFrames(env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size)
        if max_episode_steps is not None:
            env = TimeLimit(env, max_episode_steps)
        env = GameStats(env)
        if terminal_on_life_loss:
            env = EpisodicLife(env)
        if fire_reset and has_fire(env):
            env = FireReset(env)
        if clip_rewards:
            env = SignReward(env)
        env = FrameStackObservation(env, stack_size=frame_stack)
    except ValueError as exc:
        env.close()
        raise EnvError(f"cannot preprocess {env_id}: {exc}") from None
    return env
