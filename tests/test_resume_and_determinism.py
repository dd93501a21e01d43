from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlctl.config import with_overrides
from rlctl.logger import read_metrics
from rlctl.sampling import make_sampler
from rlctl.train.loop import train
from tests.helpers import assert_same_weights, small_config, stop_after, weights

CASES = {
    "CartPole-v1": dict(env={"num_envs": 2}, ppo={"total_timesteps": 2048, "num_steps": 128, "minibatch_size": 64,
                                                  "update_epochs": 2, "anneal_lr": True, "normalize_reward": True},
                        policy={"normalize_obs": True}, run={"checkpoint_every": 512}),
    "Hopper-v5": dict(env={"num_envs": 2}, ppo={"total_timesteps": 2048, "num_steps": 128, "minibatch_size": 64,
                                                "update_epochs": 2, "anneal_lr": True},
                      run={"checkpoint_every": 512}),
    # CNN policy, uint8 frames, ALE emulator state, Atari wrapper state (lives, game score, frame stack)
    "ALE/Breakout-v5": dict(env={"num_envs": 2, "max_episode_steps": 40},
                            ppo={"total_timesteps": 256, "num_steps": 16, "minibatch_size": 16, "update_epochs": 2},
                            run={"checkpoint_every": 32, "sampler": "inline", "overlap": False}),
    # sim-to-real wrapper streams and delay lines, and a randomization ramp set through the sampler processes
    "rlctl/QuadHover-v0": dict(env={"num_envs": 2, "kwargs": {"sim2real": "randomized"}, "randomization_ramp": 0.75},
                               ppo={"total_timesteps": 2048, "num_steps": 128, "minibatch_size": 64,
                                    "update_epochs": 2},
                               run={"checkpoint_every": 512, "sampler": "process", "overlap": True}),
}


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_interrupted_and_resumed_run_matches_uninterrupted_run(tmp_path: Path, env_id: str) -> None:
    cfg = small_config(env_id, **CASES[env_id])  # type: ignore[arg-type]
    full = train(cfg, tmp_path / "full", progress=False)

    # Stop after the 3rd of 8 updates (a checkpoint is written on stop), then resume in a fresh call.
    part = train(cfg, tmp_path / "part", on_update=stop_after(3), progress=False)
    assert part.global_step == 3 * cfg.batch_size
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)

    assert resumed.global_step == full.global_step
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))
    assert part.episode_returns + resumed.episode_returns == full.episode_returns

    def scalars(run: Path) -> list[tuple[int, str]]:
        return [(r["step"], r["tag"]) for r in read_metrics(run / "metrics.jsonl")]

    assert scalars(tmp_path / "part") == scalars(tmp_path / "full")  # no duplicated or missing rows


def test_same_seed_same_run_different_seed_different_run(tmp_path: Path) -> None:
    kw = CASES["Hopper-v5"]
    a = train(small_config("Hopper-v5", **kw), tmp_path / "a", progress=False)  # type: ignore[arg-type]
    b = train(small_config("Hopper-v5", **kw), tmp_path / "b", progress=False)  # type: ignore[arg-type]
    other = dict(kw, run={**kw["run"], "seed": 2})
    c = train(small_config("Hopper-v5", **other), tmp_path / "c", progress=False)  # type: ignore[arg-type]
    assert a.episode_returns == b.episode_returns
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert a.episode_returns != c.episode_returns


def test_run_directory_holds_config_events_metrics_and_checkpoint(tmp_path: Path) -> None:
    cfg = small_config("Hopper-v5", **CASES["Hopper-v5"])  # type: ignore[arg-type]
    cfg = with_overrides(cfg, {"run": {"eval_episodes": 2, "log_every": 256}})
    train(cfg, tmp_path, progress=False)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.yaml", "checkpoint.pt", "metrics.jsonl", "final_eval.json"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    final = json.loads((tmp_path / "final_eval.json").read_text())
    assert final["episodes"] == 2 and final["deterministic"] is True

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    expected = {"charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
                "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
                "losses/clipfrac", "losses/explained_variance", "eval/episodic_return"}
    assert expected <= tags
    lr = [e.value for e in acc.Scalars("charts/learning_rate")]
    assert lr == sorted(lr, reverse=True) and lr[0] > lr[-1]  # annealed
    jsonl_tags = {r["tag"] for r in read_metrics(tmp_path / "metrics.jsonl")}
    assert expected <= jsonl_tags


def test_kept_checkpoints_are_the_run_at_each_checkpoint_step(tmp_path: Path) -> None:
    kw = CASES["CartPole-v1"]  # 8 updates of 256 steps, a checkpoint every 512 steps
    cfg = small_config("CartPole-v1", **dict(kw, run={**kw["run"], "keep_checkpoints": True}))  # type: ignore[arg-type]
    train(cfg, tmp_path / "kept", progress=False)
    kept = sorted(p.name for p in (tmp_path / "kept" / "checkpoints").iterdir())
    assert kept == [f"step_{s:09d}.pt" for s in (512, 1024, 1536, 2048)]
    assert_same_weights(weights(tmp_path / "kept" / "checkpoints" / kept[-1]), weights(tmp_path / "kept"))
    # The copy at 1,024 steps is the run as it stood then: a run of the same seed stopped there has those weights.
    train(small_config("CartPole-v1", **kw), tmp_path / "stopped", on_update=stop_after(4),  # type: ignore[arg-type]
          progress=False)
    assert_same_weights(weights(tmp_path / "kept" / "checkpoints" / kept[1]), weights(tmp_path / "stopped"))
    assert not (tmp_path / "stopped" / "checkpoints").exists()  # off by default


def test_a_randomization_ramp_reaches_the_envs_and_logs_the_strength_each_rollout_was_collected_at(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rlctl.train.loop as loop

    samplers: list[Any] = []

    def keep(*args: Any, **kwargs: Any) -> Any:
        samplers.append(make_sampler(*args, **kwargs))
        return samplers[-1]

    def look(_: dict[str, Any]) -> None:  # after each update: the strength the next rollout's resets will use
        seen.append([env.get_wrapper_attr("sim2real_strength") for env in samplers[0].collector.envs.envs])

    monkeypatch.setattr(loop, "make_sampler", keep)
    seen: list[list[float]] = []
    kw = dict(CASES["rlctl/QuadHover-v0"], run={"sampler": "inline", "overlap": False, "log_every": 256})
    cfg = small_config("rlctl/QuadHover-v0", **kw)  # type: ignore[arg-type]
    train(cfg, tmp_path / "run", on_update=look, progress=False)

    share = cfg.batch_size / cfg.ppo.total_timesteps  # of the budget, per rollout
    launched = [min(1.0, u * share / 0.75) for u in range(cfg.num_updates)]
    assert [s[0] for s in seen[:-1]] == pytest.approx(launched[1:])  # the last update launches nothing
    assert all(a == b for a, b in seen)  # every env
    logged = [r["value"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")
              if r["tag"] == "charts/sim2real_strength"]
    assert logged == pytest.approx(launched)
