"""Agency transfer through the collector and the trainer: who acts under each mode, what the rollout stores,
the learner's share over training, learner-alone evaluations, and exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlctl.agents.rollout import BASELINE_ACTOR, POLICY_ACTOR
from rlctl.checkpoint import load_checkpoint
from rlctl.config import Config
from rlctl.envs.controllers import make_controller
from rlctl.envs.make import make_env
from rlctl.logger import read_metrics
from rlctl.rundir import BEST_LEARNER
from rlctl.runs import build_agent, load_policy
from rlctl.sampling import make_sampler
from rlctl.spaces import adapter_for_env, rollout_for
from rlctl.train import train
from tests.helpers import assert_same_weights, small_config, stop_after, weights

CPU = torch.device("cpu")


def _pendulum(arbiter: dict[str, Any], **sections: dict[str, Any]) -> Config:
    kw: dict[str, Any] = {"env": {"num_envs": 1}, "ppo": {"num_steps": 256, "minibatch_size": 64},
                          "policy": {"normalize_obs": False}}
    for key, value in sections.items():
        kw[key] = {**kw.get(key, {}), **value}
    return small_config("Pendulum-v1", arbiter={"baseline": "controller:energy", **arbiter}, **kw)


def _rollout(cfg: Config) -> tuple[dict[str, torch.Tensor], Any]:
    env = make_env(cfg.env.id)
    adapter = adapter_for_env(env)
    env.close()
    torch.manual_seed(0)
    agent = build_agent(cfg, adapter, CPU)
    sampler = make_sampler(cfg, agent, adapter, rollout_for(adapter, cfg.ppo.num_steps, cfg.env.num_envs, CPU), CPU)
    try:
        sampler.publish(agent)
        sampler.launch(0)
        rollout, info = sampler.wait()
        return {k: v.clone() for k, v in vars(rollout).items()}, info
    finally:
        sampler.close()


def test_jsrl_lets_the_guide_fly_the_first_steps_of_every_episode() -> None:
    rollout, _ = _rollout(_pendulum({"mode": "jsrl", "schedule": "fixed", "share_start": 0.5}))
    actor = rollout["actor"][:, 0].tolist()  # Pendulum: 200-step episodes, the guide takes ⌈200 · 0.5⌉ = 100
    assert actor == [BASELINE_ACTOR] * 100 + [POLICY_ACTOR] * 100 + [BASELINE_ACTOR] * 56


def test_calf_hands_over_exactly_the_certified_steps_when_it_never_relaxes() -> None:
    rollout, info = _rollout(_pendulum({"mode": "calf", "schedule": "fixed", "share_start": 0.0,
                                        "relax_init": 0.0, "nu": 0.0}))
    learner = float((rollout["actor"] == POLICY_ACTOR).float().mean())
    assert 0.0 < learner < 1.0
    assert info.arbiter["learner_share"] == pytest.approx(learner) == pytest.approx(info.arbiter["certified"])


def test_residual_sends_the_learner_plus_the_faded_baseline() -> None:
    cfg = _pendulum({"mode": "residual", "schedule": "fixed", "share_start": 0.25})
    rollout, _ = _rollout(cfg)
    env = make_env("Pendulum-v1")
    energy = make_controller("energy", env)
    obs = rollout["obs"][:, 0].numpy()
    added = np.stack([energy.act(o) for o in obs])
    want = np.clip(rollout["actions"][:, 0].numpy() + 0.75 * added, -2.0, 2.0)
    np.testing.assert_allclose(rollout["executed_actions"][:, 0].numpy(), want, rtol=1e-6, atol=1e-6)
    assert bool((rollout["actor"] == POLICY_ACTOR).all())


@pytest.mark.parametrize("sampler", ["inline", "process"])
def test_transfer_logs_the_share_and_learner_alone_evaluations_and_resumes_exactly(sampler: str,
                                                                                   tmp_path: Path) -> None:
    workers = {"sampler": sampler, "num_workers": 2 if sampler == "process" else 1}
    cfg = _pendulum({"mode": "calf", "schedule": "linear", "transfer_end": 0.75, "eval_every": 512,
                     "eval_episodes": 2},
                    env={"num_envs": 2}, ppo={"total_timesteps": 2048, "num_steps": 128},
                    run={"checkpoint_every": 512, "log_every": 256, **workers})
    straight = train(cfg, tmp_path / "straight", progress=False)
    rows = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    shares = [r["value"] for r in rows if r["tag"] == "arbiter/share"]
    assert shares == sorted(shares) and shares[0] < 0.5 and shares[-1] == 1.0
    assert len([r for r in rows if r["tag"] == "eval/learner_return"]) == 4
    learner_share = [r["value"] for r in rows if r["tag"] == "arbiter/learner_share"]
    assert learner_share[0] < 1.0 and learner_share[-1] == 1.0  # the baseline is disconnected at the end
    train(cfg, tmp_path / "resumed", progress=False, on_update=stop_after(3))
    train(cfg, tmp_path / "resumed", resume=True, progress=False)
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))
    assert straight.episode_returns
    # best_learner.pt: the learner alone at its best evaluation (here the highest return), the same after a resume
    evals = [(r["value"], r["step"]) for r in rows if r["tag"] == "eval/learner_return"]
    best = load_checkpoint(tmp_path / "straight" / BEST_LEARNER)
    assert best["global_step"] == max(evals)[1] and best["evaluation"]["mean_return"] == max(evals)[0]
    assert_same_weights(best["agent"], weights(tmp_path / "resumed" / BEST_LEARNER))
    loaded = load_policy(tmp_path / "straight" / BEST_LEARNER)  # what rlctl eval / export take in place of RUN
    assert_same_weights(loaded.agent.state_dict(), best["agent"])


def _policy_grad(step: Any, agent: Any, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    core = len(step.KEYS)
    loss, _ = step._loss_eager(*(batch[k] for k in step.keys[:core]), **{k: batch[k] for k in step.keys[core:]})
    agent.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in agent.actor.parameters()]


def test_masking_leaves_the_policy_gradient_of_the_learners_steps_as_it_is_without_the_baseline_steps() -> None:
    from rlctl.agents.distributions import ActionSpec
    from rlctl.agents.policy import ActorCritic
    from rlctl.agents.ppo import MinibatchStep
    from rlctl.config import PPOConfig

    torch.manual_seed(0)
    agent = ActorCritic(3, ActionSpec("continuous", 1, low=(-2.0,), high=(2.0,)), [16, 16], "tanh", True, 0.0,
                        False, 10.0)
    optimizer = torch.optim.Adam(agent.parameters())
    ppo = PPOConfig(vf_coef=0.0, ent_coef=0.0)
    n, learner = 96, torch.rand(96) < 0.6
    batch = {"obs": torch.randn(n, 3), "actions": torch.randn(n, 1), "logprobs": torch.randn(n) * 0.1 - 1.0,
             "advantages": torch.randn(n) * 3 + 1, "values": torch.randn(n), "returns": torch.randn(n)}
    masked = MinibatchStep(agent, optimizer, ppo, weighted=True)
    weighted = dict(batch, policy_weight=learner.float(), imitation_weight=(~learner).float())
    alone = MinibatchStep(agent, optimizer, ppo)
    only_learner = {k: v[learner] for k, v in batch.items()}
    for a, b in zip(_policy_grad(masked, agent, weighted), _policy_grad(alone, agent, only_learner), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # off_policy (no weights) trains on the baseline's steps too: a different gradient
    off = _policy_grad(alone, agent, batch)
    assert any(not torch.allclose(a, b) for a, b in zip(off, _policy_grad(alone, agent, only_learner), strict=True))
    # bc adds −coef·mean log π(a_baseline|s) over the baseline's steps
    bc = MinibatchStep(agent, optimizer, ppo, weighted=True, imitation_coef=0.5)
    core = len(bc.KEYS)
    loss_bc, stats = bc._loss_eager(*(weighted[k] for k in bc.keys[:core]), **{k: weighted[k] for k in bc.keys[core:]})
    loss_mask, _ = masked._loss_eager(*(weighted[k] for k in masked.keys[:core]),
                                      **{k: weighted[k] for k in masked.keys[core:]})
    with torch.no_grad():
        nll = -agent.dist(batch["obs"][~learner]).log_prob(batch["actions"][~learner]).mean()
    torch.testing.assert_close(stats["imitation"], nll)
    torch.testing.assert_close(loss_bc - loss_mask, 0.5 * nll, rtol=1e-5, atol=1e-5)


def test_bad_agency_transfer_input_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlctl.cli import main

    cases = [
        (["--env", "Pendulum-v1", "--arbiter", "calf"], "give --baseline-policy"),
        (["--env", "CartPole-v1", "--baseline-policy", "controller:energy"], "cannot drive CartPoleEnv"),
        (["--env", "CartPole-v1", "--baseline-policy", "controller:nope"], "unknown controller 'nope'"),
        (["--env", "Pendulum-v1", "--baseline-policy", "controller:energy", "--set", "arbiter.mode=calm"],
         "arbiter.mode: 'calm' is not one of"),
        (["--env", "Pendulum-v1", "--baseline-policy", "controller:energy", "--set", "arbiter.schedule=success_gated"],
         "needs arbiter.eval_every > 0"),
        (["--env", "Pendulum-v1", "--baseline-policy", "controller:energy", "--set", "arbiter.schedule=success_gated",
          "--set", "arbiter.eval_every=1", "--set", "arbiter.eval_episodes=1"], "reports no success"),
        (["--env", "CartPole-v1", "--baseline-policy", "controller:energy", "--arbiter", "residual"],
         "needs continuous actions"),
    ]
    for i, (args, message) in enumerate(cases):
        code = main(["train", *args, "--steps", "512", "--run-dir", str(tmp_path / str(i)), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (args, err)


def test_the_mixture_is_evaluated_at_a_chosen_share_and_reports_who_acted() -> None:
    from rlctl.train.transfer import evaluate_mixture

    cfg = _pendulum({"mode": "prob"}, policy={"normalize_obs": True})
    env = make_env(cfg.env.id)
    adapter = adapter_for_env(env)
    env.close()
    torch.manual_seed(0)
    agent = build_agent(cfg, adapter, CPU)  # untrained: the learner alone cannot swing the pendulum up
    baseline = evaluate_mixture(cfg, agent, adapter, episodes=3, share=0.0, seed=7)
    learner = evaluate_mixture(cfg, agent, adapter, episodes=3, share=1.0, seed=7)
    assert baseline["learner_share"] == 0.0 and learner["learner_share"] == 1.0
    assert baseline["mean_return"] > -400 > -700 > learner["mean_return"]
    assert float(agent.obs_rms.count) == float(build_agent(cfg, adapter, CPU).obs_rms.count)  # the agent untouched


def test_a_controllers_integrators_are_part_of_the_checkpoint() -> None:
    from rlctl.envs.make import make_vector_env
    from rlctl.sampling.baseline import Baseline

    cfg = small_config("rlctl/QuadWaypoint-v0", arbiter={"baseline": "controller:pid"})
    envs = make_vector_env(cfg.env.id, 1, "sync")
    obs, _ = envs.reset(seed=0)
    baseline = Baseline(cfg.arbiter, envs, 0)
    baseline.reset(np.arange(1))
    everyone = np.arange(1)

    def fly(steps: int) -> list[np.ndarray]:
        nonlocal obs
        actions = []
        for _ in range(steps):
            action = baseline.act(everyone, obs)
            actions.append(np.array(action))
            obs, *_ = envs.step(action)
        return actions

    fly(20)  # the integrators are no longer zero
    saved, saved_env, saved_obs = baseline.state_dict(), envs.get_attr("snapshot_state"), obs
    first = fly(10)
    baseline.reset(everyone)  # a fresh controller, as after a restart
    baseline.load_state_dict(saved)
    envs.set_attr("snapshot_state", saved_env)
    obs = saved_obs
    again = fly(10)
    envs.close()
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
