"""Env ids: which module an id needs, its registered spec, and the wrapper-chain search.

A leaf module (it imports nothing else of ``envs``), so that ``make``, ``atari`` and the sim-to-real
wrappers can all use it without importing each other.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import Any, TypeVar

import gymnasium as gym

from rlctl.envs.errors import EnvError

CRITIC_ONLY_OBS = "critic_only_obs"
"""Env ``metadata`` key: how many trailing observation entries are privileged simulator state for the
critic only (an asymmetric actor-critic; e.g. the quadrotor's ``privileged_obs=True``). The learner
keeps them from the actor, and export leaves them out of the deployed model."""


# Which pip extra brings which simulator, keyed by a fragment of the env's entry point.
SIMULATOR_EXTRAS = {"mujoco": "mujoco", "ale_py": "atari", "box2d": "box2d", "pybullet": "bullet",
                    "make_quad": "bullet", "rlctl.envs.robots": "bullet", "reacher_sparse": "mujoco"}


def _import_for(env_id: str) -> None:
    """Import the module a ``module:Env-v0`` or ``ALE/...`` id needs, with a clear error.

    Importing a module runs its code. An id can come from a run directory's ``config.yaml`` (eval,
    resume, export), so a third-party module is named on stderr the first time it is imported.
    """
    module = None
    if ":" in env_id:
        module = env_id.split(":", 1)[0]
    elif env_id.startswith("ALE/"):
        module = "ale_py"
    if module is None:
        return
    if module != "ale_py" and module not in sys.modules:
        print(f"rlctl: importing {module!r} for env id {env_id!r}", file=sys.stderr, flush=True)
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        extra = SIMULATOR_EXTRAS.get(module)
        fix = f"pip install 'rlctl[{extra}]'" if extra else f"install the package that provides {module!r}"
        raise EnvError(f"cannot import {module!r} for env {env_id!r} ({exc}); {fix}") from None
    if module == "ale_py":
        gym.register_envs(mod)


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec for ``env_id``, or an EnvError with close matches."""
    _import_for(env_id)
    bare = env_id.split(":", 1)[1] if ":" in env_id else env_id
    try:
        return gym.spec(bare)
    except gym.error.Error:
        close = difflib.get_close_matches(bare, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see gymnasium.pprint_registry())"
        raise EnvError(f"unknown environment id {env_id!r}{hint}") from None


_W = TypeVar("_W", bound=gym.Wrapper)


def find_wrapper(env: gym.Env, kind: type[_W]) -> _W | None:
    """The outermost wrapper of type ``kind`` in ``env``'s wrapper chain, or None when there is none."""
    node: Any = env
    while isinstance(node, gym.Wrapper):
        if isinstance(node, kind):
            return node
        node = node.env
    return None
