"""Exact save and restore of an environment's state as plain data (arrays, numbers, dicts).

Used to resume a run bit-for-bit and to start episodes from saved states (demonstrations, curricula).

How a state is captured, first match wins:

1. the base env defines ``get_state()`` / ``set_state(state)`` (PyBullet and ALE envs do);
2. MuJoCo envs: ``mj_getState`` with the full integration state (qpos, qvel, act, warm-start,
   controls, time), restored bit-exactly with ``mj_setState``;
3. Atari (ale-py): the emulator state *including its RNG* (``cloneState(include_rng=True)``), kept as
   the serialized bytes in a uint8 array;
4. anything else: the base env's plain attributes (arrays, numbers, strings, ``None`` and lists, tuples
   and dicts of them): this covers gymnasium's classic-control envs, whose whole state is ``self.state``
   and a few counters. An env with any other attribute (a Box2D world, a deque, a generator of its own)
   is *refused* with :class:`IncompleteSnapshotError`: a snapshot that silently drops state would
   resume a different run.

In every case the env's ``np_random`` generator state, the time-limit counter, a frame stack's
frames and the state wrappers expose as ``wrapper_state`` are included, so the continuation is the
same as if the process had never stopped. Other wrappers get the same rule as the base env: gymnasium's
stateless ``transform_*`` wrappers need nothing, any other wrapper's plain attributes are saved, and a
wrapper with other attributes and no ``wrapper_state`` is refused.

Not state, so never saved nor refused: spaces, the spec, metadata and render handles (pygame), functions
(a reward function, a transform), and references to other envs in the chain. A closure that keeps state
in its cells is therefore not saved; give such a wrapper a ``wrapper_state``.
"""

from __future__ import annotations

import copy
import types
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.wrappers import FrameStackObservation, OrderEnforcing, PassiveEnvChecker, TimeLimit

_FRAMES, _PADDING, _STATE, _ATTRS, _TYPE = "__frames__", "__padding__", "__state__", "__attributes__", "__wrapper__"
_PLAIN = (np.ndarray, np.generic, int, float, bool, str, bytes, type(None))
_COUNTERS = ("_elapsed_steps", "_has_reset", "checked_reset", "checked_step")
# Base-env attributes that are not state: configuration gymnasium owns, render handles, the generator
# (saved separately, as ``np_random``) and pickling arguments.
_SKIP = {"spec", "metadata", "render_mode", "reward_range", "action_space", "observation_space", "_np_random",
         "_np_random_seed", "screen", "clock", "viewer", "window", "surf", "isopen", "renderer", "mujoco_renderer",
         "_ezpickle_args", "_ezpickle_kwargs"}
# A wrapper's own bookkeeping (gymnasium.Wrapper and RecordConstructorArgs set these).
_WRAPPER_SKIP = {"env", "_action_space", "_observation_space", "_metadata", "_cached_spec", "_reward_range",
                 "_saved_kwargs", "spec", "metadata", "render_mode"}
# Wrappers whose state the code below saves by name (counters, frames), exact types: a subclass may add state.
_HANDLED_WRAPPERS = (TimeLimit, OrderEnforcing, PassiveEnvChecker, FrameStackObservation)
# Gymnasium's own split: wrappers in these modules transform each step and keep nothing between steps.
_STATELESS_MODULES = {"gymnasium.wrappers.transform_observation", "gymnasium.wrappers.transform_action",
                      "gymnasium.wrappers.transform_reward"}
# rlctl wrappers that keep nothing between steps but hold large arrays (AtariFrames: resize taps, and screen
# buffers it overwrites on every step): named here so that snapshots do not carry them.
_STATELESS_CLASSES = {"rlctl.envs.atari.AtariFrames"}


class IncompleteSnapshotError(ValueError):
    """An env (or a wrapper) holds state that :func:`capture_state` cannot save exactly."""


def is_plain(value: Any) -> bool:
    """Data that deep-copies and survives the checkpoint encoding (:func:`rlctl.checkpoint.to_safe`)."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biufc"  # what torch stores: not strings, not objects
    if isinstance(value, _PLAIN):
        return True
    if type(value) in (list, tuple):
        return all(is_plain(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, (str, int)) and is_plain(v) for k, v in value.items())
    return False


def _is_not_state(value: Any) -> bool:
    """Code and references, not data: spaces, specs, functions, other envs of the chain (their state is
    saved where they sit), bound methods of envs, render handles (pygame windows, images), and tuples or
    lists of these."""
    if isinstance(value, (gym.Env, gym.spaces.Space, EnvSpec, types.FunctionType, types.BuiltinFunctionType)):
        return True
    if type(value).__module__.split(".")[0] == "pygame":
        return True
    if isinstance(value, types.MethodType):
        return isinstance(value.__self__, (gym.Env, type))
    if type(value) in (list, tuple) and value:
        return all(v is None or _is_not_state(v) for v in value)
    return False


def _attribute_state(obj: Any, skip: set[str], fix: str) -> dict[str, Any]:
    """``obj``'s plain attributes (deep copies), or :class:`IncompleteSnapshotError` naming the others."""
    attrs: dict[str, Any] = {}
    refused: list[str] = []
    for key, value in vars(obj).items():
        if key in skip or _is_not_state(value):
            continue
        if is_plain(value):
            attrs[key] = copy.deepcopy(value)
        else:
            refused.append(key)
    if refused:
        names = ", ".join(f"{k} ({_describe(vars(obj)[k])})" for k in refused)
        noun = "attributes" if len(refused) > 1 else "attribute"
        verb = "are" if len(refused) > 1 else "is"
        raise IncompleteSnapshotError(f"cannot snapshot {type(obj).__name__} exactly: {noun} {names} {verb} not "
                                      f"plain data; {fix}")
    return attrs


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray of {value.dtype}"
    return type(value).__name__


def _mujoco_state(env: Any) -> tuple[Any, Any] | None:
    model, data = getattr(env, "model", None), getattr(env, "data", None)
    if model is None or data is None or type(model).__module__.split(".")[0] != "mujoco":
        return None
    return model, data


def _is_ale(env: Any) -> bool:
    ale = getattr(env, "ale", None)
    return ale is not None and type(ale).__module__.split(".")[0] == "ale_py"


def capture_state(env: gym.Env) -> dict[str, Any]:
    """Everything needed to continue ``env`` exactly, as a dict of plain data.

    Raises :class:`IncompleteSnapshotError` (a ``ValueError``) when some of that state cannot be saved.
    """
    base: Any = env.unwrapped
    state: dict[str, Any] = {"wrappers": _wrapper_counters(env)}
    rng = getattr(base, "_np_random", None)
    state["np_random"] = copy.deepcopy(rng.bit_generator.state) if rng is not None else None
    if callable(getattr(base, "get_state", None)):
        state["kind"], state["sim"] = "custom", base.get_state()
    elif _is_ale(base):
        raw = base.ale.cloneState(include_rng=True).serialize()
        state["kind"], state["sim"] = "ale", np.frombuffer(raw, dtype=np.uint8).copy()
    elif (md := _mujoco_state(base)) is not None:
        import mujoco

        model, data = md
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
        mujoco.mj_getState(model, data, buf, spec)
        state["kind"], state["sim"] = "mujoco", buf
    else:
        attrs = _attribute_state(base, _SKIP, "give it get_state()/set_state()")
        state["kind"], state["sim"] = "attributes", attrs
    return state


def restore_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Put ``env`` back into a state returned by :func:`capture_state`."""
    base: Any = env.unwrapped
    kind = state["kind"]
    if kind == "custom":
        base.set_state(state["sim"])
    elif kind == "mujoco":
        import mujoco

        md = _mujoco_state(base)
        if md is None:
            raise ValueError("snapshot is of a MuJoCo env but this env has no MuJoCo model")
        model, data = md
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        sim = np.asarray(state["sim"], dtype=np.float64)
        if sim.size != mujoco.mj_stateSize(model, spec):
            raise ValueError("MuJoCo snapshot does not match this model's state size")
        mujoco.mj_setState(model, data, sim, spec)
        mujoco.mj_forward(model, data)
    elif kind == "ale":
        import ale_py

        if not _is_ale(base):
            raise ValueError("snapshot is of an Atari env but this env has no ALE emulator")
        base.ale.restoreState(ale_py.ALEState(np.asarray(state["sim"], dtype=np.uint8).tobytes()))
    elif kind == "attributes":
        for key, value in state["sim"].items():
            setattr(base, key, copy.deepcopy(value))
    else:
        raise ValueError(f"unknown snapshot kind {kind!r}")
    if state["np_random"] is not None:
        base.np_random.bit_generator.state = copy.deepcopy(state["np_random"])
    _set_wrapper_counters(env, state["wrappers"])


def _wrapper_counters(env: gym.Env) -> list[dict[str, Any]]:
    """Per-wrapper state that affects the future, outermost first: counters (time limit steps, reset
    flags), a frame stack's frames, whatever a wrapper exposes as a ``wrapper_state`` property (the
    Atari wrappers' lives and game scores, the sim-to-real wrappers' streams and delay lines), and for
    any other wrapper its plain attributes (see the module docstring)."""
    out: list[dict[str, Any]] = []
    node: Any = env
    while isinstance(node, gym.Wrapper):
        wrapper: Any = node
        kind = type(wrapper)
        values = {k: v for k, v in vars(node).items() if k in _COUNTERS}
        values[_TYPE] = kind.__name__
        if isinstance(wrapper, FrameStackObservation):
            values[_FRAMES] = np.stack(list(wrapper.obs_queue))
            values[_PADDING] = copy.deepcopy(wrapper.padding_value)
        if isinstance(getattr(kind, "wrapper_state", None), property):
            values[_STATE] = copy.deepcopy(wrapper.wrapper_state)
        elif not (kind in _HANDLED_WRAPPERS or kind.__module__ in _STATELESS_MODULES
                  or f"{kind.__module__}.{kind.__qualname__}" in _STATELESS_CLASSES):
            fix = "give it a wrapper_state property (getter and setter) that returns all of its state"
            attrs = _attribute_state(wrapper, _WRAPPER_SKIP, fix)
            if attrs:
                values[_ATTRS] = attrs
        out.append(values)
        node = node.env
    return out


def _set_wrapper_counters(env: gym.Env, counters: list[dict[str, Any]]) -> None:
    node: Any = env
    for values in counters:
        if not isinstance(node, gym.Wrapper):
            raise ValueError("snapshot was taken with a different wrapper stack")
        wrapper: Any = node
        taken = values.get(_TYPE)  # absent in snapshots from before it was recorded
        if taken is not None and taken != type(wrapper).__name__:
            raise ValueError(f"snapshot was taken with a different wrapper stack: {taken} where this env has "
                             f"{type(wrapper).__name__}")
        for key, value in values.items():
            if key == _TYPE:
                continue
            if key == _FRAMES:
                wrapper.obs_queue.clear()
                wrapper.obs_queue.extend(np.array(frame) for frame in value)
            elif key == _PADDING:
                wrapper.padding_value = copy.deepcopy(value)
            elif key == _STATE:
                wrapper.wrapper_state = copy.deepcopy(value)
            elif key == _ATTRS:
                for name, attr in value.items():
                    setattr(wrapper, name, copy.deepcopy(attr))
            else:
                setattr(wrapper, key, value)
        if hasattr(node, "checked_data_reuse"):
            # PassiveEnvChecker's one-off diagnostics compare with data we do not snapshot: skip them.
            setattr(node, "checked_data_reuse", True)  # noqa: B010
            setattr(node, "_previous_data", None)  # noqa: B010
            setattr(node, "checked_step", True)  # noqa: B010  (a snapshot from before the first step has none)
        node = node.env


class Snapshot(gym.Wrapper):
    """The outermost wrapper of every env rlctl builds: exact save and restore, and episodes that start
    from a saved state.

    * ``snapshot_state`` (get and set): :func:`capture_state` plus the last observation, so that a state
      can also be *started from*. A property, so ``envs.get_attr`` / ``envs.set_attr`` reach every copy
      of both sync and subprocess vector envs.
    * ``reset(options={"snapshot": s})`` starts the episode from ``s`` and returns its observation.
    * ``pending_start``: a snapshot the *next* reset starts from, then cleared. Vector envs reset an
      ended episode by themselves (autoreset), without options; this is how such a reset, or a masked
      ``envs.reset(options={"reset_mask": m})``, starts from a chosen state.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._last_obs: Any = None
        self.pending_start: dict[str, Any] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        options = dict(options or {})
        start = options.pop("snapshot", None) or self.pending_start
        self.pending_start = None
        obs, info = self.env.reset(seed=seed, options=options or None)
        if start is not None:
            if start.get("obs") is None:
                raise ValueError("this snapshot holds no observation (taken before the first reset?); "
                                 "an episode cannot start from it")
            restore_state(self.env, start)
            obs, info = _copy(start["obs"]), {"from_snapshot": True}
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    @property
    def snapshot_state(self) -> dict[str, Any]:
        return {**capture_state(self.env), "obs": _copy(self._last_obs), "pending_start": self.pending_start}

    @snapshot_state.setter
    def snapshot_state(self, state: dict[str, Any]) -> None:
        restore_state(self.env, state)
        self._last_obs = _copy(state.get("obs"))
        self.pending_start = state.get("pending_start")


def _copy(obs: Any) -> Any:
    return copy.deepcopy(obs)
