"""The world: gymnasium envs and wrappers, state snapshots, reward hooks. Never imports agents/."""

from __future__ import annotations

from envs.errors import EnvError
from envs.make import check_env_id, env_factory, make_env, make_vector_env
from envs.registration import register_all
from envs.reward import RewardHook
from envs.snapshot import Snapshot, capture_state, restore_state

register_all()

__all__ = [
    "EnvError",
    "RewardHook",
    "Snapshot",
    "capture_state",
    "check_env_id",
    "env_factory",
    "make_env",
    "make_vector_env",
    "restore_state",
]
