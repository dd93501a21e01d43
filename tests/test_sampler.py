"""The process sampler: same loop, a child process collecting, optionally overlapped with learning."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlctl.logger import read_metrics
from rlctl.trainer import train
from tests.helpers import assert_same_weights, small_config, weights

KW = dict(env={"num_envs": 2}, ppo={"total_timesteps": 2048, "num_steps": 128, "minibatch_size": 64,
                                    "update_epochs": 2, "anneal_lr": True},
          run={"checkpoint_every": 512, "sampler": "process", "log_every": 256})


def _cfg(overlap: bool):  # type: ignore[no-untyped-def]
    cfg = small_config("Hopper-v5", **KW)  # type: ignore[arg-type]
    cfg.run.overlap = overlap
    return cfg


def test_overlapped_run_resumed_mid_flight_matches_uninterrupted_run(tmp_path: Path) -> None:
    full = train(_cfg(True), tmp_path / "full", progress=False)
    calls = {"n": 0}

    def stop_after_three(_: dict) -> bool:  # the sampler is collecting rollout 4 at this point
        calls["n"] += 1
        return calls["n"] == 3

    part = train(_cfg(True), tmp_path / "part", on_update=stop_after_three, progress=False)
    resumed = train(_cfg(True), tmp_path / "part", resume=True, progress=False)
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))
    assert part.episode_returns + resumed.episode_returns == full.episode_returns
    lags = {r["value"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if r["tag"] == "charts/policy_lag"}
    assert lags == {1.0}


def test_process_sampler_without_overlap_is_deterministic_and_lag_free(tmp_path: Path) -> None:
    a = train(_cfg(False), tmp_path / "a", progress=False)
    b = train(_cfg(False), tmp_path / "b", progress=False)
    assert a.episode_returns == b.episode_returns and a.episode_returns
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    lags = {r["value"] for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["tag"] == "charts/policy_lag"}
    assert lags == {0.0}


def test_error_inside_the_sampler_process_is_raised_in_the_learner(tmp_path: Path) -> None:
    def broken(obs, action, next_obs, env_reward, info):  # type: ignore[no-untyped-def]
        raise ValueError("reward code exploded")

    cfg = _cfg(True)
    with pytest.raises(RuntimeError, match="reward code exploded"):
        train(cfg, tmp_path, reward_fn=broken, progress=False)
