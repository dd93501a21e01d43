"""A run whose update produces non-finite weights stops with a clear error and keeps its last good checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rlctl.checkpoint import load_checkpoint
from rlctl.errors import UserError
from rlctl.train.loop import train
from tests.helpers import small_config


def test_a_diverged_update_stops_the_run_before_it_replaces_the_last_checkpoint(tmp_path: Path) -> None:
    cfg = small_config("CartPole-v1", env={"num_envs": 2},
                       ppo={"total_timesteps": 2048, "num_steps": 128, "minibatch_size": 64, "update_epochs": 2,
                            "normalize_reward": False},
                       run={"checkpoint_every": 512, "sampler": "inline", "overlap": False})
    calls = {"n": 0}

    def blows_up(obs: Any, action: Any, next_obs: Any, env_reward: float, info: Any) -> tuple[float, dict]:
        calls["n"] += 1  # the 4th rollout (steps 768-1023) has returns of 1e30: its value loss overflows float32
        return (1e30 if calls["n"] > 3 * cfg.batch_size else env_reward), {}

    with pytest.raises(UserError, match=r"training diverged.*value_loss inf.*checkpoint is the one from before"):
        train(cfg, tmp_path / "run", reward_fn=blows_up, progress=False)
    kept = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert kept["global_step"] == 512  # written after update 2; update 4 would have written the next one
    assert all(bool(torch.isfinite(w).all()) for w in kept["agent"].values())
