"""The process sampler: same loop, a child process collecting, optionally overlapped with learning."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
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


def test_an_error_that_survives_restarts_stops_training_with_its_message(tmp_path: Path) -> None:
    def broken(obs, action, next_obs, env_reward, info):  # type: ignore[no-untyped-def]
        raise ValueError("reward code exploded")

    cfg = _cfg(True)
    cfg.run.max_worker_restarts = 1
    with pytest.raises(RuntimeError, match=r"(?s)failed 2 times.*reward code exploded"):
        train(cfg, tmp_path, reward_fn=broken, progress=False)


def _restarts(run: Path) -> list[float]:
    return [r["value"] for r in read_metrics(run / "metrics.jsonl") if r["tag"] == "charts/worker_restarts"]


def test_sigkilled_sampler_is_restarted_and_no_update_is_lost(tmp_path: Path) -> None:
    def kill_sampler_at_update_3(scalars: dict) -> bool:
        if scalars["global_step"] == 3 * 256:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        return False

    result = train(_cfg(True), tmp_path, on_update=kill_sampler_at_update_3, progress=False)
    assert result.global_step == 2048  # all 8 updates ran
    assert _restarts(tmp_path)[-1] == 1.0
    assert len(result.episode_returns) > 0


def test_hung_sampler_is_restarted_after_the_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "hung-once"

    def hang_once(obs, action, next_obs, env_reward, info):  # type: ignore[no-untyped-def]
        if info.get("x_position", 0.0) > -1e9 and not marker.exists():
            marker.write_text("x")
            time.sleep(600)
        return env_reward, {}

    cfg = _cfg(False)
    cfg.run.worker_timeout = 3.0
    t0 = time.perf_counter()
    result = train(cfg, tmp_path / "run", reward_fn=hang_once, progress=False)
    assert result.global_step == 2048
    assert _restarts(tmp_path / "run")[-1] == 1.0
    assert time.perf_counter() - t0 < 120
