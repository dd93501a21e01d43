"""Each sim-to-real wrapper's own random stream, kept as plain data, and what the wrapper drew for ``info``.

A wrapper reseeds its generator from the episode's reset seed and a salt of its own, so the same seed gives
the same vehicle, noise and delays, and no wrapper shifts another's stream; a snapshot stores each generator's
position so a restored run draws what the original would have.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np


def rng_for(seed: int | None, salt: int, current: np.random.Generator | None) -> np.random.Generator:
    """A generator for this wrapper: reseeded from the reset seed, else carried on (or fresh entropy)."""
    if seed is not None:
        return np.random.default_rng([seed, salt])
    return current if current is not None else np.random.default_rng()


def rng_state(rng: np.random.Generator | None) -> dict[str, Any] | None:
    """A generator's exact position as plain data, for ``wrapper_state`` (None before the first reset)."""
    return copy.deepcopy(dict(rng.bit_generator.state)) if rng is not None else None


def rng_restored(state: dict[str, Any] | None) -> np.random.Generator | None:
    """A generator at the position :func:`rng_state` recorded."""
    if state is None:
        return None
    kind = getattr(np.random, str(state.get("bit_generator")), None)
    if not (isinstance(kind, type) and issubclass(kind, np.random.BitGenerator)):
        raise ValueError(f"not a NumPy bit generator state: {state.get('bit_generator')!r}")
    bit_generator = kind()
    bit_generator.state = copy.deepcopy(state)
    return np.random.Generator(bit_generator)


def record(info: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``info`` with ``info["sim2real"][key] = value`` (what this wrapper drew for the episode)."""
    info = dict(info)
    info["sim2real"] = {**info.get("sim2real", {}), key: value}
    return info
