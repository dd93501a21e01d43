"""A reward hook: replace an env's reward with a user function that returns named components.

The LLM reward-refinement loop and users' own shaping plug in here. The function sees the transition,
whether it ended the episode, and the env's info; the components it returns are put in
``info["reward_components"]`` (logged by the trainer as ``reward/<name>``), the env's own reward in
``info["env_reward"]`` (the trainer's ``charts/episodic_return`` stays the env's own return).

A run names its reward function as ``env.reward=FILE.py:fn``: :func:`load_reward_source` reads the file
once, and the *source text* travels with the run (to sampler processes and Ray nodes, into the
checkpoint with its sha256), so every worker computes the same function and a resume can tell when the
file has changed since.

A reward that is expensive per call but cheap per row (a generated program in its sandbox process, where each
call is a round trip to another process) implements :class:`BatchedReward`; a vector env then computes the
rewards of all its sub-envs in one call per step (:class:`BatchedRewardHook`), with the same results.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import gymnasium as gym
import numpy as np

from rlctl.envs.errors import EnvError

RewardFn = Callable[..., "tuple[float, dict[str, float]]"]
"""``fn(obs, action, next_obs, env_reward, info) -> (reward, {name: value})``; a function that also takes
``terminated`` and ``truncated`` keyword arguments (or ``**kwargs``) is given them."""


def _require_finite(reward: Any) -> None:
    """One reward or an array of them; a NaN or inf would poison the returns and the value targets."""
    finite = np.isfinite(reward)
    if not finite.all():
        bad = np.asarray(reward, dtype=np.float64).reshape(-1)[~np.asarray(finite).reshape(-1)][0]
        raise ValueError(f"reward function returned a non-finite reward {float(bad)!r}")


@runtime_checkable
class BatchedReward(Protocol):
    """A reward computed for many transitions at once: ``pack`` turns one transition into a row (in the env's
    process), ``batch`` computes the rewards and components of stacked rows ``[n, ...]`` (once per vector step)."""

    def pack(self, obs: Any, action: Any, next_obs: Any, env_reward: float, info: dict[str, Any],
             terminated: bool, truncated: bool) -> np.ndarray: ...

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


class RewardHook(gym.Wrapper):
    """Swap the reward for ``reward_fn``'s; keep the env's reward and the components in ``info``.

    ``deferred`` (a :class:`BatchedReward` inside a :class:`BatchedRewardHook`): the step only packs the
    transition into ``info["reward_row"]`` and passes the env's reward on; the vector wrapper replaces it."""

    def __init__(self, env: gym.Env, reward_fn: RewardFn, deferred: bool = False) -> None:
        super().__init__(env)
        self._reward_fn = reward_fn
        self._deferred = deferred
        if deferred and not isinstance(reward_fn, BatchedReward):
            raise TypeError(f"a deferred reward hook needs a BatchedReward, got {type(reward_fn).__name__}")
        self._last_obs: Any = None
        params = inspect.signature(reward_fn).parameters.values()
        self._sees_ends = any(p.kind is p.VAR_KEYWORD for p in params) or \
            {"terminated", "truncated"} <= {p.name for p in params}

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        if self._deferred:
            batched = cast(BatchedReward, self._reward_fn)
            row = batched.pack(self._last_obs, action, obs, float(env_reward), info, bool(terminated), bool(truncated))
            self._last_obs = obs
            return obs, float(env_reward), terminated, truncated, dict(info, reward_row=row)
        ends = {"terminated": bool(terminated), "truncated": bool(truncated)} if self._sees_ends else {}
        reward, components = self._reward_fn(self._last_obs, action, obs, float(env_reward), info, **ends)
        _require_finite(reward)
        info = dict(info, env_reward=float(env_reward), reward_components=dict(components))
        self._last_obs = obs
        return obs, float(reward), terminated, truncated, info

    @property
    def wrapper_state(self) -> dict[str, Any]:
        """The observation the next step's reward is computed from (for exact snapshots)."""
        return {"last_obs": copy.deepcopy(self._last_obs)}

    @wrapper_state.setter
    def wrapper_state(self, state: dict[str, Any]) -> None:
        self._last_obs = copy.deepcopy(state["last_obs"])


class BatchedRewardHook(gym.vector.VectorWrapper):
    """One :meth:`BatchedReward.batch` call per vector step for the rows its sub-envs' deferred
    :class:`RewardHook` packed; the rewards and ``info`` entries are those the per-env hooks would give.

    With SAME_STEP autoreset an episode's last step reports its info (and its row) under ``final_info``; the
    env's reward and the components go back where the row came from, with gymnasium's ``_key`` masks.
    """

    def __init__(self, env: gym.vector.VectorEnv, reward_fn: BatchedReward) -> None:
        super().__init__(env)
        self._reward_fn = reward_fn

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(actions)
        sources = [s for s in (info, info.get("final_info", {})) if "reward_row" in s]
        n = self.num_envs
        rows: list[Any] = [None] * n
        for source in sources:
            for i in np.nonzero(source["_reward_row"])[0]:
                rows[i] = source["reward_row"][i]
        if any(r is None for r in rows):
            raise RuntimeError("a sub-env stepped without packing its transition: is its RewardHook deferred?")
        total, components = self._reward_fn.batch(np.stack(rows))
        total = np.asarray(total, dtype=np.float64).reshape(n)
        _require_finite(total)
        for source in sources:
            mask = np.asarray(source.pop("_reward_row"), dtype=bool)
            del source["reward_row"]
            source["env_reward"] = np.where(mask, np.asarray(env_reward, dtype=np.float64), 0.0)
            source["_env_reward"] = mask
            comps: dict[str, Any] = {}
            for name, values in components.items():
                comps[name] = np.where(mask, np.asarray(values, dtype=np.float64).reshape(n), 0.0)
                comps[f"_{name}"] = mask
            source["reward_components"] = comps
            source["_reward_components"] = mask
        return obs, total, terminated, truncated, info

    # the vector env's attribute access, which gymnasium's VectorWrapper does not forward
    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return self.env.call(name, *args, **kwargs)  # type: ignore[attr-defined]

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.env.get_attr(name)  # type: ignore[attr-defined]

    def set_attr(self, name: str, values: Any) -> None:
        self.env.set_attr(name, values)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RewardSource:
    """A reward function's code as text: where it came from, its function name and the text's sha256."""

    spec: str
    source: str
    function: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def load(self) -> RewardFn:
        """Compile the text and return the function (each call compiles afresh: no module is registered)."""
        namespace: dict[str, Any] = {"__name__": f"rlctl_reward_{self.sha256[:12]}"}
        try:
            exec(compile(self.source, self.spec.rsplit(":", 1)[0], "exec"), namespace)
        except Exception as exc:  # any error in the user's module body
            raise EnvError(f"env.reward={self.spec}: the file does not run ({type(exc).__name__}: {exc})") from None
        fn = namespace.get(self.function)
        if not callable(fn):
            names = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_"))
            raise EnvError(f"env.reward={self.spec}: no function {self.function!r} in the file"
                           + (f" (it defines {', '.join(names)})" if names else ""))
        return fn


def load_reward_source(spec: str) -> RewardSource:
    """Read ``FILE.py:fn``; a one-line EnvError when the spec, the file or its syntax is wrong."""
    path_text, sep, function = spec.rpartition(":")
    if not sep or not path_text.endswith(".py") or not function.isidentifier():
        raise EnvError(f"env.reward={spec!r}: expected FILE.py:FUNCTION, e.g. rewards/shaped.py:compute_reward")
    path = Path(path_text)
    if not path.is_file():
        raise EnvError(f"env.reward={spec}: no such file {path}")
    source = path.read_text()
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise EnvError(f"env.reward={spec}: syntax error at line {exc.lineno}: {exc.msg}") from None
    reward = RewardSource(spec, source, function)
    reward.load()  # the function exists and the module body runs
    return reward
