"""Latency on the control loop: observation and action delays drawn per episode, and the command history a
policy can use to allow for what is already in flight. Part of the sim-to-real kit (:mod:`rlctl.envs.uav.sim2real`).
"""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rlctl.envs.uav.streams import record, rng_for, rng_restored, rng_state


class _EpisodeDelay(gym.Wrapper):
    """A delay of ``d`` control steps, drawn per episode from ``steps`` (inclusive) with the wrapper's own stream.

    ``reset(options={OPTION: d})`` sets the episode's delay instead (it must lie in ``steps``): that is how
    :class:`LatencyPriority` chooses it. The stream draws either way, so forcing one episode does not shift
    the delays of the next. With ``strength`` < 1 the delay shrinks by that factor (rounded half up; 0 is the
    nominal loop's, none): the randomization curriculum's knob (:mod:`rlctl.envs.uav.sim2real`).
    """

    SALT = 0
    OPTION = ""

    def __init__(self, env: gym.Env, steps: tuple[int, int]) -> None:
        super().__init__(env)
        if steps[0] < 0 or steps[1] < steps[0]:
            raise ValueError(f"steps must be 0 <= low <= high, got {steps}")
        self.steps = steps
        self.strength = 1.0
        self._rng: np.random.Generator | None = None
        self.delay = 0

    @property
    def wrapper_state(self) -> dict[str, Any]:
        """The stream, this episode's delay and what is in the delay line."""
        return {"rng": rng_state(self._rng), "delay": self.delay, **self._line_state()}

    @wrapper_state.setter
    def wrapper_state(self, state: dict[str, Any]) -> None:
        self._rng = rng_restored(state["rng"])
        self.delay = int(state["delay"])
        self._set_line_state(state)

    def _line_state(self) -> dict[str, Any]:
        """The subclass's delay line as plain data."""
        raise NotImplementedError

    def _set_line_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _draw(self, seed: int | None, options: dict[str, Any] | None) -> None:
        self._rng = rng_for(seed, self.SALT, self._rng)
        self.delay = int(self._rng.integers(self.steps[0], self.steps[1] + 1))
        forced = (options or {}).get(self.OPTION)
        if forced is not None:
            if not self.steps[0] <= forced <= self.steps[1]:
                raise ValueError(f"{self.OPTION}={forced} is outside this wrapper's range {self.steps}")
            self.delay = int(forced)
        self.delay = math.floor(self.strength * self.delay + 0.5)


class ObservationDelay(_EpisodeDelay):
    """The policy sees the observation from ``d`` control steps ago, ``d`` drawn per episode in ``steps``."""

    SALT = 3
    OPTION = "obs_delay"

    def __init__(self, env: gym.Env, steps: tuple[int, int] = (0, 2)) -> None:
        super().__init__(env, steps)
        self._buffer: deque[Any] = deque()

    def _line_state(self) -> dict[str, Any]:
        return {"buffer": copy.deepcopy(list(self._buffer)), "buffer_maxlen": self._buffer.maxlen}

    def _set_line_state(self, state: dict[str, Any]) -> None:
        maxlen = state["buffer_maxlen"]
        self._buffer = deque(copy.deepcopy(list(state["buffer"])), maxlen=None if maxlen is None else int(maxlen))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self._draw(seed, options)
        obs, info = self.env.reset(seed=seed, options=options)
        self._buffer = deque([obs] * (self.delay + 1), maxlen=self.delay + 1)
        return obs, record(info, "obs_delay", self.delay)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._buffer.append(obs)
        return self._buffer[0], reward, terminated, truncated, info


class ActionDelay(_EpisodeDelay):
    """The env executes the action from ``d`` steps ago; until then, the base env's ``neutral_action``."""

    SALT = 4
    OPTION = "action_delay"

    def __init__(self, env: gym.Env, steps: tuple[int, int] = (0, 1)) -> None:
        super().__init__(env, steps)
        self._queue: deque[Any] = deque()

    def _line_state(self) -> dict[str, Any]:
        return {"queue": copy.deepcopy(list(self._queue))}

    def _set_line_state(self, state: dict[str, Any]) -> None:
        self._queue = deque(copy.deepcopy(list(state["queue"])))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self._draw(seed, options)
        self._queue = deque([neutral_action(self.env)] * self.delay)
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, record(info, "action_delay", self.delay)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        self._queue.append(np.array(action))
        return self.env.step(self._queue.popleft())


def neutral_action(env: gym.Env) -> np.ndarray:
    """The base env's ``neutral_action`` (the quadrotor's hover command), or zeros: what a delay line holds
    before the policy's first command arrives."""
    neutral = getattr(env.unwrapped, "neutral_action", None)
    if neutral is None:
        return np.zeros(env.action_space.shape or (), dtype=np.float32)
    return np.array(neutral, dtype=np.float32)


class CommandHistory(gym.ObservationWrapper):
    """Append the policy's own last ``steps`` commands to the observation, oldest first (a delay line's order).

    Under latency the policy sees the vehicle as it was ``d_obs`` steps ago, and what it commands takes
    effect ``d_act`` steps later; the commands of the last ``d_obs + d_act`` steps have not shown in what it
    sees yet. The base env's action history cannot tell it: that records the *executed* actions, and it
    reaches the policy through the observation delay. The commands themselves are known exactly on board
    (the controller wrote them), so this costs the real vehicle nothing, and a feed-forward policy can then
    allow for what is already in flight (what a Smith predictor does for a PID). ``steps`` should cover the
    longest total latency.

    Wrap it outside the delay wrappers, so it records commands as the policy issues them. The values are the
    actions passed to ``step``, clipped to the action space; at episode start, the base env's neutral action.
    """

    def __init__(self, env: gym.Env, steps: int) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"CommandHistory needs a Box action space, got {space}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps, self.width = steps, int(np.prod(space.shape))
        self._low, self._high = space.low.reshape(-1), space.high.reshape(-1)
        self._obs_dim = int(np.prod(env.observation_space.shape or (0,)))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self._obs_dim + steps * self.width,), np.float32)
        self.commands = np.tile(neutral_action(env).reshape(-1), (steps, 1))

    @property
    def wrapper_state(self) -> dict[str, Any]:
        """The commands in the observation (for :mod:`rlctl.envs.snapshot`)."""
        return {"commands": self.commands.copy()}

    @wrapper_state.setter
    def wrapper_state(self, state: dict[str, Any]) -> None:
        self.commands = np.array(state["commands"])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self.commands = np.tile(neutral_action(self.env).reshape(-1), (self.steps, 1))
        obs, info = self.env.reset(seed=seed, options=options)
        return self.observation(obs), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        self.commands = np.roll(self.commands, -1, axis=0)
        self.commands[-1] = np.clip(np.asarray(action, dtype=np.float32).reshape(-1), self._low, self._high)
        return super().step(action)

    def observation(self, observation: Any) -> np.ndarray:
        return np.concatenate([np.asarray(observation, dtype=np.float32).reshape(-1), self.commands.reshape(-1)])

    def describe(self) -> dict[str, Any]:
        """What on-board code must reproduce (the export writes it next to the model)."""
        return {"obs": [self._obs_dim, self._obs_dim + self.steps * self.width], "steps": self.steps,
                "width": self.width, "neutral": neutral_action(self.env).reshape(-1).tolist(),
                "rule": "the last `steps` actions the policy output, clipped to the action bounds, oldest first; "
                        "all `neutral` at episode start"}
