"""Exact save and restore of an environment's state as plain data (arrays, numbers, dicts).

Used to resume a run bit-for-bit and, later, to start episodes from demonstration states.

How a state is captured, first match wins:

1. the base env defines ``get_state()`` / ``set_state(state)`` (PyBullet and ALE envs do);
2. MuJoCo envs: ``mj_getState`` with the full integration state (qpos, qvel, act, warm-start,
   controls, time), restored bit-exactly with ``mj_setState``;
3. Atari (ale-py): the emulator state *including its RNG* (``cloneState(include_rng=True)``), kept as
   the serialized bytes in a uint8 array;
4. anything else: the base env's plain attributes (arrays, numbers, ``None``): this covers
   gymnasium's classic-control envs, whose whole state is ``self.state`` and a few counters.

In every case the env's ``np_random`` generator state, the time-limit counter, a frame stack's
frames and the state wrappers expose as ``wrapper_state`` are included, so the continuation is the
same as if the process had never stopped.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FrameStackObservation

_FRAMES, _PADDING, _STATE = "__frames__", "__padding__", "__state__"
_PLAIN = (np.ndarray, np.generic, int, float, bool, type(None))
_COUNTERS = ("_elapsed_steps", "_has_reset", "checked_reset", "checked_step")
_SKIP = {"spec", "metadata", "render_mode", "_np_random", "_np_random_seed", "screen", "clock", "viewer"}


def _mujoco_state(env: Any) -> tuple[Any, Any] | None:
    model, data = getattr(env, "model", None), getattr(env, "data", None)
    if model is None or data is None or type(model).__module__.split(".")[0] != "mujoco":
        return None
    return model, data


def _is_ale(env: Any) -> bool:
    ale = getattr(env, "ale", None)
    return ale is not None and type(ale).__module__.split(".")[0] == "ale_py"


def capture_state(env: gym.Env) -> dict[str, Any]:
    """Everything needed to continue ``env`` exactly, as a dict of plain data."""
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
        attrs = {k: copy.deepcopy(v) for k, v in vars(base).items() if k not in _SKIP and isinstance(v, _PLAIN)}
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
    flags), a frame stack's frames, and whatever a wrapper exposes as a ``wrapper_state`` property
    (the Atari wrappers' lives and game scores, see :mod:`envs.atari`)."""
    out: list[dict[str, Any]] = []
    node: Any = env
    while isinstance(node, gym.Wrapper):
        values = {k: v for k, v in vars(node).items() if k in _COUNTERS}
        wrapper: Any = node
        if isinstance(wrapper, FrameStackObservation):
            values[_FRAMES] = np.stack(list(wrapper.obs_queue))
            values[_PADDING] = copy.deepcopy(wrapper.padding_value)
        if isinstance(getattr(type(wrapper), "wrapper_state", None), property):
            values[_STATE] = copy.deepcopy(wrapper.wrapper_state)
        out.append(values)
        node = node.env
    return out


def _set_wrapper_counters(env: gym.Env, counters: list[dict[str, Any]]) -> None:
    node: Any = env
    for values in counters:
        if not isinstance(node, gym.Wrapper):
            raise ValueError("snapshot was taken with a different wrapper stack")
        wrapper: Any = node
        for key, value in values.items():
            if key == _FRAMES:
                wrapper.obs_queue.clear()
                wrapper.obs_queue.extend(np.array(frame) for frame in value)
            elif key == _PADDING:
                wrapper.padding_value = copy.deepcopy(value)
            elif key == _STATE:
                wrapper.wrapper_state = copy.deepcopy(value)
            else:
                setattr(wrapper, key, value)
        if hasattr(node, "checked_data_reuse"):
            # PassiveEnvChecker's one-off diagnostics compare with data we do not snapshot: skip them.
            setattr(node, "checked_data_reuse", True)  # noqa: B010
            setattr(node, "_previous_data", None)  # noqa: B010
        node = node.env


class Snapshot(gym.Wrapper):
    """Exposes ``snapshot_state`` (get and set) so vector envs can save and restore every copy.

    ``envs.get_attr("snapshot_state")`` and ``envs.set_attr("snapshot_state", states)`` work for
    both sync and subprocess vector envs, which is why this is a property and not a method.
    """

    @property
    def snapshot_state(self) -> dict[str, Any]:
        return capture_state(self.env)

    @snapshot_state.setter
    def snapshot_state(self, state: dict[str, Any]) -> None:
        restore_state(self.env, state)
