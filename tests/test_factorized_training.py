"""``baseline.type=factorized`` end to end: training with every sampler, exact resume, export, config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlctl.checkpoint import load_checkpoint
from rlctl.errors import UserError
from rlctl.resolve import resolve_config
from rlctl.train.loop import train
from tests.helpers import assert_same_weights, small_config, stop_after, weights

TINY = {"ppo": {"total_timesteps": 512, "num_steps": 32, "minibatch_size": 32, "update_epochs": 2},
        "run": {"checkpoint_every": 128}}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    # multi-step episodes with time limits (the stage's episode clock crosses rollouts), regress fit on earlier batches
    "hopper-regress-previous": ("Hopper-v5", {"env": {"num_envs": 2, "max_episode_steps": 40},
                                              "baseline": {"type": "factorized", "mode": "regress"}}),
    # a MultiDiscrete policy, Q averaged over draws (the stage uses the RNG), cross-fitted
    "multidiscrete-qmc-crossfit": ("rlctl-test/Target-v0", {"env": {"num_envs": 2},
                                                            "baseline": {"type": "factorized", "mode": "q_mc",
                                                                         "fit": "crossfit"}}),
}


def _cfg(name: str, **extra: dict[str, Any]) -> Any:
    env_id, sections = CASES[name]
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in TINY.items()}
    for source in (sections, extra):
        for key, values in source.items():
            merged.setdefault(key, {}).update(values)
    return small_config(env_id, **merged)


@pytest.mark.parametrize("name", sorted(CASES))
def test_interrupted_and_resumed_factorized_run_matches_uninterrupted_run(tmp_path: Path, name: str) -> None:
    cfg = _cfg(name)
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "part", on_update=stop_after(3), progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed.global_step == full.global_step
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))
    a, b = (load_checkpoint(tmp_path / run / "checkpoint.pt")["advantage_stage"] for run in ("full", "part"))
    for net_a, net_b in zip(a["nets"], b["nets"], strict=True):
        assert_same_weights(net_a, net_b)  # the baselines (and their optimizers' effect) continue exactly
    assert torch.equal(a["clock"], b["clock"]) and torch.equal(a["episodes"], b["episodes"])


@pytest.mark.parametrize("sampler", ["process", "ray"])
def test_factorized_baselines_train_with_the_parallel_samplers(tmp_path: Path, sampler: str) -> None:
    if sampler == "ray":
        pytest.importorskip("ray")
    cfg = _cfg("hopper-regress-previous", run={"sampler": sampler, "num_workers": 2},
               ppo={"total_timesteps": 128})
    result = train(cfg, tmp_path / sampler, progress=False)
    assert result.global_step == 128
    stage = load_checkpoint(tmp_path / sampler / "checkpoint.pt")["advantage_stage"]
    assert len(stage["nets"]) == 1 and stage["episodes"].shape == (2,)


def test_a_factorized_run_logs_baseline_scalars_and_exports_the_actor_alone(tmp_path: Path) -> None:
    from rlctl.export import export_policy
    from rlctl.logger import read_metrics
    from rlctl.runs import load_policy

    cfg = _cfg("hopper-regress-previous", ppo={"total_timesteps": 128}, run={"log_every": 64})
    train(cfg, tmp_path / "run", progress=False)
    tags = {r["tag"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")}
    assert {"losses/baseline_loss", "losses/baseline_explained_variance", "losses/baseline_s"} <= tags
    loaded = load_policy(tmp_path / "run")
    meta = export_policy(loaded.agent, loaded.adapter, loaded.cfg, tmp_path / "export", "numpy", loaded.checkpoint)
    assert meta["verification"]["max_abs_diff"] < 1e-4
    exported = np.load(tmp_path / "export" / "policy.npz")
    assert exported.files and not any("baseline" in key or "first" in key for key in exported.files)


@pytest.mark.parametrize(("env_id", "items", "message"), [
    ("CartPole-v1", ["baseline.type=factorized"], "needs an action of >= 2 factors"),
    ("Hopper-v5", ["baseline.type=learned"], "baseline.type: 'learned' is not one of state, factorized"),
    ("Hopper-v5", ["baseline.mode=q_max"], "baseline.mode"),
    ("Hopper-v5", ["baseline.mc_samples=0"], "baseline.mc_samples must be >= 1"),
])
def test_bad_baseline_settings_are_one_clear_error(tmp_path: Path, env_id: str, items: list[str],
                                                   message: str) -> None:
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(")):
        cfg, _ = resolve_config(env_id, None, {"ppo": {"total_timesteps": 64, "num_steps": 32,
                                                       "minibatch_size": 32}}, items)
        train(cfg, tmp_path / "run", progress=False)
