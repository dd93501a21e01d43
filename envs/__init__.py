"""The world: gymnasium envs and wrappers, state snapshots, reward hooks. Never imports agents/."""

from __future__ import annotations

from rlctl.envs.errors import EnvError
from rlctl.envs.ids import check_env_id
from rlctl.envs.make import env_factory, make_env, make_vector_env
from rlctl.envs.registration import register_all
from rlctl.envs.reward import RewardHook
from rlctl.envs.snapshot import Snapshot, capture_state, restore_state

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
