"""The process sampler: same loop, a child process collecting, optionally overlapped with learning."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from rlctl.config import with_overrides
from rlctl.logger import read_metrics
from rlctl.train.loop import train
from tests.helpers import assert_same_weights, small_config, stop_after, weights

KW = dict(env={"num_envs": 2}, ppo={"total_timesteps": 2048, "num_steps": 128, "minibatch_size": 64,
                                    "update_epochs": 2, "anneal_lr": True},
          run={"checkpoint_every": 512, "sampler": "process", "log_every": 256})


def _cfg(overlap: bool):  # type: ignore[no-untyped-def]
    return with_overrides(small_config("Hopper-v5", **KW), {"run": {"overlap": overlap}})  # type: ignore[arg-type]


def test_overlapped_run_resumed_mid_flight_matches_uninterrupted_run(tmp_path: Path) -> None:
    full = train(_cfg(True), tmp_path / "full", progress=False)
    # stopped after update 3, while the sampler is collecting rollout 4
    part = train(_cfg(True), tmp_path / "part", on_update=stop_after(3), progress=False)
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

    cfg = with_overrides(_cfg(True), {"run": {"max_worker_restarts": 1}})
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

    cfg = with_overrides(_cfg(False), {"run": {"worker_timeout": 3.0}})
    t0 = time.perf_counter()
    result = train(cfg, tmp_path / "run", reward_fn=hang_once, progress=False)
    assert result.global_step == 2048
    assert _restarts(tmp_path / "run")[-1] == 1.0
    assert time.perf_counter() - t0 < 120


def test_unmerge_recovers_the_increment_and_merge_rebuilds_the_whole() -> None:
    import torch

    from rlctl.sampling.worker import merge_moments, unmerge_moments

    def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return x.mean(0), x.var(0, unbiased=False), torch.tensor(float(x.shape[0]), dtype=torch.float64)

    gen = torch.Generator().manual_seed(0)
    old = torch.randn(5000, 3, generator=gen, dtype=torch.float64) * 3 + 1
    new_a = torch.randn(700, 3, generator=gen, dtype=torch.float64) * 0.5 - 2
    new_b = torch.randn(300, 3, generator=gen, dtype=torch.float64) * 2
    base = moments(old)
    inc = unmerge_moments(moments(torch.cat([old, new_a])), base)
    for got, want in zip(inc, moments(new_a), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    merged = merge_moments(merge_moments(base, inc), unmerge_moments(moments(torch.cat([old, new_b])), base))
    for got, want in zip(merged, moments(torch.cat([old, new_a, new_b])), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_two_workers_are_deterministic_resume_exactly_and_count_every_observation(tmp_path: Path) -> None:
    def cfg():  # type: ignore[no-untyped-def]
        return with_overrides(_cfg(True), {"run": {"num_workers": 2}})

    full = train(cfg(), tmp_path / "full", progress=False)
    again = train(cfg(), tmp_path / "again", progress=False)
    assert full.episode_returns == again.episode_returns
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "again"))

    train(cfg(), tmp_path / "part", on_update=stop_after(3), progress=False)
    train(cfg(), tmp_path / "part", resume=True, progress=False)
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))
    # every observation of every worker was folded into the global statistics exactly once
    count = weights(tmp_path / "full")["obs_rms.count"].item()
    assert count == pytest.approx(2048 + 1e-4, abs=1e-6)


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc, no psutil needed)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sampler_workers_exit_when_the_learner_is_sigkilled(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "rlctl.cli", "train", "--env", "Pendulum-v1", "--steps", "400000",
                             "--backend", "process", "--set", "run.overlap=true", "--quiet",
                             "--run-dir", str(tmp_path / "run")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "run" / "metrics.jsonl").exists():
        time.sleep(0.1)
    children = _children(proc.pid)
    assert children, "the process sampler should have started worker processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.2)
    alive = [c for c in children if Path(f"/proc/{c}").exists()
             and Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"orphaned sampler processes {alive}"


def test_overlapped_atari_run_shares_uint8_frames_and_resumes_exactly(tmp_path: Path) -> None:
    pytest.importorskip("ale_py")
    cfg = small_config("ALE/Breakout-v5", env={"num_envs": 2, "max_episode_steps": 40},
                       ppo={"total_timesteps": 192, "num_steps": 16, "minibatch_size": 16, "update_epochs": 1},
                       run={"checkpoint_every": 32, "sampler": "process", "overlap": True, "log_every": 32})
    full = train(cfg, tmp_path / "full", progress=False)
    part = train(cfg, tmp_path / "part", on_update=stop_after(2), progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))
    assert part.episode_returns + resumed.episode_returns == full.episode_returns and full.episode_returns
