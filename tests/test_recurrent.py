"""Recurrent policies: the state is carried and reset where it should be, training replays the collected
sequences exactly, a policy with memory learns what a feed-forward one cannot, and runs resume exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from rlctl.agents.distributions import ActionSpec
from rlctl.agents.ppo import recurrent_ppo_update, sequence_values
from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.cli import main
from rlctl.config import Config
from rlctl.envs.make import make_env
from rlctl.runs import build_agent
from rlctl.sampling import make_sampler
from rlctl.spaces import adapter_for_env, rollout_for
from rlctl.train import train
from rlctl.train.advantages import make_advantage_stage
from tests.helpers import assert_same_weights, small_config, stop_after, weights

CUE = "rlctl/MemoryCue-v0"
CPU = torch.device("cpu")


def _cfg(cell: str = "gru", **sections: dict[str, Any]) -> Config:
    kw: dict[str, dict[str, Any]] = {
        "env": {"num_envs": 8},
        "ppo": {"num_steps": 64, "minibatch_size": 128, "update_epochs": 4, "bptt_steps": 16, "learning_rate": 1e-3,
                "total_timesteps": 16384},
        "policy": {"recurrent": cell, "recurrent_size": 32}, "run": {"seed": 1}}
    for key, value in sections.items():
        kw[key] = {**kw.get(key, {}), **value}
    return small_config(CUE, **kw)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_episode_start_zeroes_the_state_before_the_step(cell: str) -> None:
    torch.manual_seed(0)
    agent = RecurrentActorCritic((3,), ActionSpec("discrete", 1, (2,)), cell=cell, size=8, layers=2)
    obs, state = torch.randn(4, 3), torch.randn(4, agent.state_size)
    started, _, after = agent.step(obs, state, torch.ones(4, dtype=torch.bool))
    fresh, _, fresh_after = agent.step(obs, agent.initial_state(4), torch.zeros(4, dtype=torch.bool))
    actions = torch.tensor([[0], [1], [0], [1]])
    torch.testing.assert_close(started.log_prob(actions), fresh.log_prob(actions))
    torch.testing.assert_close(after, fresh_after)
    carried, _, _ = agent.step(obs, state, torch.zeros(4, dtype=torch.bool))
    assert not torch.allclose(carried.log_prob(actions), fresh.log_prob(actions))


@pytest.mark.parametrize("bptt", [0, 16])
def test_training_replays_the_collected_sequences_exactly(bptt: int) -> None:
    cfg = _cfg("lstm", ppo={"bptt_steps": bptt})
    env = make_env(CUE)
    adapter = adapter_for_env(env)
    env.close()
    torch.manual_seed(0)
    agent = build_agent(cfg, adapter, CPU)
    rollout = rollout_for(adapter, cfg.ppo.num_steps, cfg.env.num_envs, CPU, agent.state_size)  # type: ignore[union-attr]
    sampler = make_sampler(cfg, agent, adapter, rollout, CPU)
    try:
        sampler.publish(agent)
        for step in (0, 512):  # the second rollout starts mid-episode, from states carried over
            sampler.launch(step)
            rollout, _ = sampler.wait()
    finally:
        sampler.close()
    assert rollout.starts.any() and not rollout.starts.all() and rollout.rnn_states[0].abs().sum() > 0
    batch = make_advantage_stage(cfg, agent).batch(rollout)
    frozen = torch.optim.SGD(agent.parameters(), lr=0.0)
    assert isinstance(agent, RecurrentActorCritic)
    stats = recurrent_ppo_update(agent, frozen, batch, (64, 8), cfg.ppo, bptt)
    assert abs(stats["approx_kl"]) < 1e-6 and stats["clipfrac"] == 0.0  # new log-probs are the collected ones
    # ppo.recompute_adv replays the same sequences: with the weights unchanged, the values collection saw
    replayed = sequence_values(agent, batch["obs"], batch["rnn_states"], batch["starts"], (64, 8), bptt)
    torch.testing.assert_close(replayed, batch["values"], atol=1e-5, rtol=1e-5)


def test_a_recurrent_policy_learns_a_cue_that_a_feed_forward_one_cannot_use(tmp_path: Path) -> None:
    memory = train(_cfg("gru", run={"eval_episodes": 100}), tmp_path / "gru", progress=False)
    flat = train(_cfg("none", run={"eval_episodes": 100}), tmp_path / "mlp", progress=False)
    assert memory.final_eval is not None and flat.final_eval is not None
    assert memory.final_eval["success_rate"] >= 0.9
    assert flat.final_eval["success_rate"] <= 0.65  # chance is 0.5: the cue is gone by the last step


@pytest.mark.parametrize("sampler", ["inline", "process"])
def test_a_recurrent_run_resumes_exactly(tmp_path: Path, sampler: str) -> None:
    cfg = _cfg("lstm", ppo={"total_timesteps": 2048}, run={"checkpoint_every": 512, "sampler": sampler,
                                                               "num_workers": 2 if sampler == "process" else 1})
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "part", on_update=stop_after(2), progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))
    assert resumed.global_step == full.global_step == 2048


def test_recurrent_policies_with_unsupported_options_are_one_clear_error(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--env", CUE, "--steps", "512", "--run-dir", str(tmp_path / "r"), "--quiet",
            "--set", "policy.recurrent=gru"]
    assert main([*base, "--set", "ppo.bptt_steps=7"]) == 2
    assert "must divide" in capsys.readouterr().err
    assert main([*base, "--set", "run.compile=true"]) == 2
    assert "does not work with run.compile" in capsys.readouterr().err
    assert main([*base, "--set", "ppo.num_steps=64", "--set", "env.num_envs=8", "--set", "ppo.recompute_adv=true",
                 "--set", "ppo.bptt_steps=16", "--force"]) == 0  # advantages recomputed on the sequences
    capsys.readouterr()
    assert main([*base, "--set", "baseline.type=factorized"]) == 2
    assert "does not work with baseline.type=factorized" in capsys.readouterr().err


def test_a_recurrent_cnn_policy_trains_on_atari_frames(tmp_path: Path) -> None:
    cfg = small_config("ALE/Pong-v5", env={"num_envs": 2, "max_episode_steps": 40},
                       ppo={"total_timesteps": 128, "num_steps": 32, "minibatch_size": 64, "update_epochs": 1,
                            "bptt_steps": 16},
                       policy={"recurrent": "gru", "recurrent_size": 64}, run={"eval_episodes": 1})
    result = train(cfg, tmp_path, progress=False)
    assert isinstance(result.agent, RecurrentActorCritic) and result.agent.image
    assert result.final_eval is not None and result.final_eval["episodes"] == 1
    assert all(torch.isfinite(p).all() for p in result.agent.parameters())


def test_sequence_smoothness_pairs_consecutive_steps_within_an_episode_only() -> None:
    from rlctl.agents.ppo import _sequence_smoothness

    torch.manual_seed(0)
    agent = RecurrentActorCritic((3,), ActionSpec("continuous", 2, (), [-1.0, -1.0], [1.0, 1.0]), cell="lstm", size=8)
    obs, state = torch.randn(6, 2, 3), torch.randn(2, agent.state_size)
    starts = torch.zeros(6, 2, dtype=torch.bool)
    starts[3, 1] = True  # env 1 begins a new episode at step 3: the pair (2, 3) of env 1 does not count
    means, carried = [], state
    for t in range(6):  # the step-by-step reference
        dist, _, carried = agent.step(obs[t], carried, starts[t])
        means.append(dist.mode())
    pairs = [(means[t][b] - means[t + 1][b]).pow(2).sum() for t in range(5) for b in range(2)
             if not (t == 2 and b == 1)]
    params = dataclasses.replace(Config().ppo, smooth_temporal=1.0, smooth_spatial=0.0)
    stats: dict[str, torch.Tensor] = {}
    dist, _ = agent.sequence(obs, state, starts)
    penalty = _sequence_smoothness(agent, dist, obs, state, starts, params, stats)
    torch.testing.assert_close(penalty, torch.stack(pairs).mean())
    assert stats["smooth_spatial"] == 0.0
