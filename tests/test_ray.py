"""The Ray backend on a private local cluster bound to 127.0.0.1 (no network beyond loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlctl.config import with_overrides
from rlctl.logger import read_metrics
from rlctl.train.loop import train
from tests.helpers import assert_same_weights, small_config, weights

ray = pytest.importorskip("ray")

KW = dict(env={"num_envs": 2}, ppo={"total_timesteps": 2048, "num_steps": 128, "minibatch_size": 64,
                                    "update_epochs": 2},
          run={"checkpoint_every": 512, "num_workers": 2, "overlap": True, "log_every": 256})


def _cfg(sampler: str):  # type: ignore[no-untyped-def]
    kw = dict(KW, run={**KW["run"], "sampler": sampler})
    return small_config("Hopper-v5", **kw)  # type: ignore[arg-type]


def test_local_cluster_stays_on_loopback(tmp_path: Path) -> None:
    from rlctl.sampling.ray_actors import RaySampler

    seen = {}
    original = RaySampler.launch

    def record(self, global_step):  # type: ignore[no-untyped-def]
        seen["nodes"] = [n["NodeManagerAddress"] for n in ray.nodes()]
        original(self, global_step)

    RaySampler.launch = record  # type: ignore[method-assign]
    try:
        cfg = with_overrides(_cfg("ray"), {"ppo": {"total_timesteps": 256}})
        train(cfg, tmp_path, progress=False)
    finally:
        RaySampler.launch = original  # type: ignore[method-assign]
    assert seen["nodes"] and all(addr.startswith("127.") for addr in seen["nodes"])


def test_a_private_local_cluster_ignores_a_cluster_address_left_on_the_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `ray start` leaves its address behind (RAY_ADDRESS, /tmp/ray/ray_current_cluster), and a bare ray.init()
    # would join that cluster, or hang on a dead one; without --ray-address rlctl starts its own
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # nothing listens there
    cfg = with_overrides(_cfg("ray"), {"ppo": {"total_timesteps": 256}})
    assert train(cfg, tmp_path, progress=False).global_step == 256


def test_ray_actors_give_exactly_the_process_samplers_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._private import ray_constants

    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    via_ray = train(_cfg("ray"), tmp_path / "ray", progress=False)
    via_processes = train(_cfg("process"), tmp_path / "proc", progress=False)
    assert via_ray.episode_returns == via_processes.episode_returns and via_ray.episode_returns
    assert_same_weights(weights(tmp_path / "ray"), weights(tmp_path / "proc"))
    assert not ray.is_initialized()  # the local cluster rlctl started is shut down again
    # ...and its single-machine settings with it: a later `ray start` or cluster join from this process is not
    # held to one machine
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ
    assert ray_constants.ENABLE_RAY_CLUSTER is cluster_mode


def test_killed_ray_actor_is_restarted_and_training_completes(tmp_path: Path) -> None:
    from rlctl.sampling import ray_actors as ray_sampler

    killed = {"done": False}
    original = ray_sampler.RaySampler.launch

    def launch_then_kill(self, global_step):  # type: ignore[no-untyped-def]
        original(self, global_step)
        if global_step >= 512 and not killed["done"]:
            killed["done"] = True
            ray.kill(self.workers[1], no_restart=False)  # like a node or process dying mid-rollout

    ray_sampler.RaySampler.launch = launch_then_kill  # type: ignore[method-assign]
    try:
        result = train(_cfg("ray"), tmp_path, progress=False)
    finally:
        ray_sampler.RaySampler.launch = original  # type: ignore[method-assign]
    assert result.global_step == 2048
    restarts = [r["value"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["tag"] == "charts/worker_restarts"]
    assert restarts[-1] == 1.0  # one kill, one restart (waiting for the restart is not a new failure)


def test_ray_backend_without_ray_installed_names_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None; from rlctl.cli import main; "
            f"sys.exit(main(['train', '--env', 'CartPole-v1', '--backend', 'ray', '--run-dir', r'{tmp_path / 'r'}']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "rlctl[ray]" in proc.stderr and "Traceback" not in proc.stderr
