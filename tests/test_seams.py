"""The seams the research techniques plug into, each through the three samplers (inline, process, Ray):

1. an episode starts from a saved state (``sampler.start_from``);
2. a baseline controller acts inside the collector, and the rollout stores what it did;
3. the reward is part of the run (``env.reward=FILE.py:fn``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlctl.agents.rollout import BASELINE_ACTOR, POLICY_ACTOR
from rlctl.checkpoint import load_checkpoint
from rlctl.config import Config, with_overrides
from rlctl.envs.controllers import make_controller
from rlctl.envs.make import make_env
from rlctl.errors import UserError
from rlctl.logger import read_metrics
from rlctl.runs import build_agent
from rlctl.sampling import make_sampler
from rlctl.spaces import adapter_for_env, rollout_for
from rlctl.train import train
from tests.helpers import small_config

CPU = torch.device("cpu")
SAMPLERS = ["inline", "process", "ray"]


def _sampler_cfg(cfg: Config, sampler: str) -> Config:
    if sampler == "ray":
        pytest.importorskip("ray")
    return with_overrides(cfg, {"run": {"sampler": sampler}})


def _workers(sampler: str) -> dict[str, Any]:
    """The run section for a sampler with two workers (one for inline)."""
    if sampler == "ray":
        pytest.importorskip("ray")
    return {"sampler": sampler, "num_workers": 1 if sampler == "inline" else 2}


def _build(cfg: Config) -> tuple[Any, Any, Any]:
    env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
    adapter = adapter_for_env(env)
    env.close()
    torch.manual_seed(0)  # the same initial weights whatever the run's seed
    agent = build_agent(cfg, adapter, CPU)
    sampler = make_sampler(cfg, agent, adapter, rollout_for(adapter, cfg.ppo.num_steps, cfg.env.num_envs, CPU), CPU)
    sampler.publish(agent)
    return agent, adapter, sampler


def _collect(sampler: Any, step: int = 0) -> Any:
    sampler.launch(step)
    rollout, info = sampler.wait()
    return {k: v.clone() for k, v in vars(rollout).items()}, info


def _env_state(state: dict[str, Any], env: int = 0) -> dict[str, Any]:
    collector = state["collector"] if "collector" in state else state["workers"][0]["collector"]
    return collector["env_states"][env]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_an_episode_started_from_a_snapshot_continues_as_the_original_did(sampler: str) -> None:
    # A policy with a negligible spread acts deterministically, so both runs take the same actions.
    base = small_config("HalfCheetah-v5", env={"num_envs": 1},
                        ppo={"num_steps": 32, "minibatch_size": 32, "normalize_reward": False},
                        policy={"normalize_obs": False, "log_std_init": -60.0})
    cfg = _sampler_cfg(base, sampler)
    _, _, original = _build(cfg)
    try:
        _collect(original)
        snapshot = _env_state(original.state_dict())  # mid-episode: HalfCheetah episodes last 1000 steps
        expected, _ = _collect(original, 32)
    finally:
        original.close()
    _, _, other = _build(with_overrides(cfg, {"run": {"seed": 99}}))  # other env seeds, same weights
    try:
        before, _ = _collect(other)
        assert not torch.equal(before["obs"], expected["obs"])
        other.start_from({0: snapshot})
        started, _ = _collect(other, 32)
    finally:
        other.close()
    for key in ("obs", "actions", "rewards", "terminated", "truncated", "values"):
        assert torch.equal(started[key], expected[key]), key


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_a_queued_start_is_taken_by_the_next_autoreset_only(vectorization: str) -> None:
    from rlctl.envs.snapshot import Snapshot

    source = Snapshot(make_env("CartPole-v1"))
    source.reset(seed=5)
    source.step(0)
    snapshot = source.snapshot_state  # an unusual start: the pole already moving
    cfg = small_config("CartPole-v1", env={"num_envs": 2, "vectorization": vectorization},
                       ppo={"num_steps": 64, "minibatch_size": 32}, policy={"normalize_obs": False})
    _, _, sampler = _build(cfg)
    try:
        sampler.start_from({1: snapshot}, now=False)
        rollout, _ = _collect(sampler)
    finally:
        sampler.close()
    want = torch.as_tensor(np.asarray(snapshot["obs"], dtype=np.float32))
    starts = [int(t) + 1 for t in torch.nonzero(rollout["terminated"][:, 1] | rollout["truncated"][:, 1]).flatten()
              if int(t) + 1 < 64]
    assert len(starts) >= 2, "a random CartPole policy ends episodes within a few dozen steps"
    assert torch.equal(rollout["obs"][starts[0], 1], want)  # the next episode started from the snapshot
    assert not any(torch.equal(rollout["obs"][t, 1], want) for t in starts[1:])  # and only that one
    assert not any(torch.equal(rollout["obs"][t, 0], want) for t in range(64))  # in env 1 only


def _quad_cfg(sampler: str, prob: float) -> Config:
    base = small_config("rlctl/QuadHover-v0", env={"num_envs": 2}, ppo={"num_steps": 48, "minibatch_size": 32},
                        arbiter={"baseline": "controller:pid", "mode": "prob", "schedule": "fixed",
                                 "share_start": 1.0 - prob}, run=_workers(sampler))
    return base


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_baseline_flies_and_the_rollout_stores_its_actions(sampler: str) -> None:
    cfg = _quad_cfg(sampler, 1.0)
    _, adapter, built = _build(cfg)
    try:
        rollout, _ = _collect(built)
    finally:
        built.close()
    assert bool((rollout["actor"] == BASELINE_ACTOR).all())
    # Replay env 1 with a PID of its own: the rollout executed exactly the PID's commands.
    env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
    pid = make_controller("pid", env)
    obs, _ = env.reset(seed=cfg.run.seed + 1)
    low, high = adapter.action.low, adapter.action.high
    for t in range(cfg.ppo.num_steps):
        want = np.clip(np.asarray(pid.act(obs), dtype=np.float32), low, high)
        np.testing.assert_array_equal(rollout["executed_actions"][t, 1].numpy(), want)
        np.testing.assert_array_equal(rollout["actions"][t, 1].numpy(), want)
        obs, _, terminated, truncated, _ = env.step(want)
        if terminated or truncated:
            obs, _ = env.reset()
            pid.reset()
    env.close()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_mixed_rollouts_store_who_acted_and_the_policys_logprob_of_the_executed_action(sampler: str) -> None:
    cfg = _quad_cfg(sampler, 0.5)
    agent, _, built = _build(cfg)
    try:
        rollout, _ = _collect(built)
        built.sync_stats(agent)
    finally:
        built.close()
    share = float((rollout["actor"] == BASELINE_ACTOR).float().mean())
    assert 0.3 < share < 0.7 and set(rollout["actor"].unique().tolist()) == {POLICY_ACTOR, BASELINE_ACTOR}
    with torch.no_grad():
        logp = agent.dist(rollout["obs"].flatten(0, 1)).log_prob(rollout["actions"].flatten(0, 1))
    torch.testing.assert_close(logp, rollout["logprobs"].flatten(), rtol=1e-5, atol=1e-4)


def test_a_baseline_that_does_not_fit_is_one_clear_error() -> None:
    with pytest.raises(UserError, match="cannot drive CartPoleEnv"):
        _build(small_config("CartPole-v1", arbiter={"baseline": "controller:pid"}))
    with pytest.raises(UserError, match="unknown controller 'nope'"):
        _build(small_config("CartPole-v1", arbiter={"baseline": "controller:nope"}))
    with pytest.raises(UserError, match="not controller:NAME"):
        _build(small_config("CartPole-v1", arbiter={"baseline": "no/such/run"}))


REWARD = """
def shaped(obs, action, next_obs, env_reward, info, terminated, truncated):
    return env_reward + 1.0 - 5.0 * terminated, {"alive": 1.0, "fell": -5.0 * terminated}
"""


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_reward_file_is_part_of_the_run(sampler: str, tmp_path: Path) -> None:
    reward = tmp_path / "reward.py"
    reward.write_text(REWARD)
    base = small_config("CartPole-v1", env={"num_envs": 2, "reward": f"{reward}:shaped"},
                        ppo={"total_timesteps": 512, "num_steps": 128, "minibatch_size": 64},
                        run={"log_every": 128, "checkpoint_every": 256, "eval_episodes": 2,
                             **_workers(sampler)})
    cfg = base
    run = tmp_path / "run"
    result = train(cfg, run, progress=False)
    rows = read_metrics(run / "metrics.jsonl")
    env_returns = [r["value"] for r in rows if r["tag"] == "charts/episodic_return"]
    shaped = [r["value"] for r in rows if r["tag"] == "charts/shaped_return"]
    lengths = [r["value"] for r in rows if r["tag"] == "charts/episodic_length"]
    assert env_returns == lengths  # CartPole pays 1 per step: the env's own return
    # +1 per step, −5 on a fall (a time limit is not a fall): shaped = 2·length − 5·fell
    assert len(shaped) == len(env_returns)
    assert all(s in (2 * n, 2 * n - 5) for s, n in zip(shaped, lengths, strict=True))
    assert result.final_eval is not None and "mean_shaped_return" in result.final_eval
    saved = load_checkpoint(run / "checkpoint.pt")["reward"]
    assert saved["source"] == REWARD and len(saved["sha256"]) == 64
    assert json.loads((run / "final_eval.json").read_text())["mean_shaped_return"] >= 0


def test_resume_refuses_a_changed_reward_file_unless_forced(tmp_path: Path) -> None:
    reward = tmp_path / "reward.py"
    reward.write_text(REWARD)
    cfg = small_config("CartPole-v1", env={"num_envs": 2, "reward": f"{reward}:shaped"},
                       ppo={"total_timesteps": 512, "num_steps": 128, "minibatch_size": 64},
                       run={"checkpoint_every": 128})
    run = tmp_path / "run"
    train(cfg, run, progress=False, on_update=lambda s: s["global_step"] >= 256)
    reward.write_text(REWARD.replace("+ 1.0", "+ 2.0"))
    with pytest.raises(UserError, match="changed since this run started"):
        train(cfg, run, resume=True, progress=False)
    assert train(cfg, run, resume=True, progress=False, force=True).global_step == 512
