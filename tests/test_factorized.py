"""Factorized action-dependent baselines: the math (agents/baselines.py, the per-dimension PPO loss) and the stage."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlctl.agents.baselines import (
    ActionCoder,
    FactorizedBaseline,
    episode_folds,
    episode_steps,
    factorized_advantages,
    predict_baselines,
)
from rlctl.agents.distributions import ActionSpec, DiagGaussian, MultiCategorical
from rlctl.agents.gae import compute_gae
from rlctl.agents.ppo import ppo_loss
from rlctl.agents.rollout import Rollout

GAUSS = ActionSpec("continuous", 3)
MULTI = ActionSpec("multidiscrete", 3, nvec=(3, 2, 4))


def _net(action: ActionSpec, obs_dim: int = 2, seed: int = 0) -> FactorizedBaseline:
    torch.manual_seed(seed)
    net = FactorizedBaseline(obs_dim, ActionCoder(action), [16, 16], "tanh")
    with torch.no_grad():  # biases away from zero so that every input matters
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net


def _actions(action: ActionSpec, n: int) -> torch.Tensor:
    if action.kind == "continuous":
        return torch.randn(n, action.dim)
    return torch.stack([torch.randint(k, (n,)) for k in action.nvec], dim=-1)


def _dist(action: ActionSpec, n: int) -> DiagGaussian | MultiCategorical:
    if action.kind == "continuous":
        return DiagGaussian(torch.randn(n, action.dim), torch.full((action.dim,), -0.5))
    return MultiCategorical(torch.randn(n, sum(action.nvec)), action.nvec)


@pytest.mark.parametrize("action", [GAUSS, MULTI], ids=["gaussian", "multidiscrete"])
@pytest.mark.parametrize("mode", ["regress", "q_mean", "q_mc"])
def test_a_factors_baseline_does_not_depend_on_its_own_action(action: ActionSpec, mode: str) -> None:
    net, n = _net(action), 5
    obs, t = torch.randn(n, 2), torch.rand(n)
    acts = _actions(action, n)
    dist = _dist(action, n)
    torch.manual_seed(1)
    before = predict_baselines(net, mode, obs, t, acts, dist, mc_samples=3)
    changed = acts.clone()
    changed[:, 1] = (changed[:, 1] + 1.7) if action.kind == "continuous" else (changed[:, 1] + 1) % action.nvec[1]
    torch.manual_seed(1)
    after = predict_baselines(net, mode, obs, t, changed, dist, mc_samples=3)
    assert before.shape == (n, action.dim)
    torch.testing.assert_close(after[:, 1], before[:, 1])  # b_1 never sees a_1
    assert (after[:, [0, 2]] - before[:, [0, 2]]).abs().min() > 1e-6  # the other factors' baselines do


@pytest.mark.parametrize("action", [GAUSS, MULTI], ids=["gaussian", "multidiscrete"])
def test_batched_network_equals_explicitly_masked_and_replaced_inputs(action: ActionSpec) -> None:
    net, n = _net(action), 4
    coder = net.coder
    obs, t, acts = torch.randn(n, 2), torch.rand(n), _actions(action, n)
    enc = coder.encode(acts)

    def explicit(x: torch.Tensor) -> torch.Tensor:
        return net.rest(net.first(x)).squeeze(-1)

    repl = coder.encode(_actions(action, n))
    for i in range(action.dim):
        in_block = coder.block == i
        masked = enc.clone()
        masked[:, in_block] = 0.0
        onehot = torch.zeros(n, action.dim)
        onehot[:, i] = 1.0
        want = explicit(torch.cat([obs, t[:, None], masked, onehot], -1))
        torch.testing.assert_close(net.regress(obs, t, enc)[:, i], want)
        replaced = enc.clone()
        replaced[:, in_block] = repl[:, in_block]
        want_q = explicit(torch.cat([obs, t[:, None], replaced, torch.zeros(n, action.dim)], -1))
        torch.testing.assert_close(net.q_replaced(obs, t, enc, repl[:, None])[:, 0, i], want_q)
    dims = torch.tensor([[2, 0], [1, 1], [0, 2], [2, 2]])
    torch.testing.assert_close(net.regress(obs, t, enc, dims), net.regress(obs, t, enc).gather(1, dims))


def _per_sample_gradient(mu: torch.Tensor, log_std: torch.Tensor, acts: torch.Tensor,
                         adv: torch.Tensor) -> torch.Tensor:
    """Per-sample gradient of E[r] w.r.t. μ for the per-factor estimator: (a_i − μ_i)/σ_i² · A_i (Gaussian score)."""
    return (acts - mu) / torch.exp(2 * log_std) * adv


@pytest.mark.parametrize("mode", ["none", "regress", "q_mean", "q_mc", "own_action"])
def test_per_dimension_baselines_leave_the_mean_gradient_unbiased(mode: str) -> None:
    # r = −‖a − c‖², a ~ N(μ, σ²): ∇_μ E[r] = −2(μ − c) exactly.
    torch.manual_seed(0)
    n, c = 200_000, torch.tensor([0.5, -1.0, 0.25])
    mu, log_std = torch.tensor([0.0, 0.3, -0.2]), torch.tensor([0.0, -0.3, 0.2])
    acts = mu + log_std.exp() * torch.randn(n, 3)
    r = -(acts - c).pow(2).sum(-1)
    obs, t = torch.zeros(n, 1), torch.zeros(n)
    dist = DiagGaussian(mu.expand(n, 3), log_std)
    if mode == "none":
        b = torch.zeros(n, 3)
    elif mode == "own_action":  # a "baseline" that sees a_i: must show up as biased (the test can fail)
        b = r[:, None].expand(n, 3) * 0.5
    else:
        net = _net(GAUSS, obs_dim=1)
        with torch.no_grad():
            net.rest[-1].weight.mul_(10.0)  # a baseline of the returns' scale, far from optimal
        b = predict_baselines(net, mode, obs, t, acts, dist, mc_samples=2)
    grads = _per_sample_gradient(mu, log_std, acts, factorized_advantages(r, b))
    mean, se = grads.mean(0), grads.std(0) / math.sqrt(n)
    z = ((mean - (-2.0 * (mu - c))) / se).abs()
    if mode == "own_action":
        assert z.max() > 10
    else:
        assert z.max() < 4.5, (mean, se)

    # the PPO loss's per-dimension path takes exactly this gradient at θ = θ_old
    mu_p = mu.clone().requires_grad_(True)
    new = DiagGaussian(mu_p.expand(1000, 3), log_std).log_prob_dims(acts[:1000])
    adv = factorized_advantages(r[:1000], b[:1000])
    loss, _ = ppo_loss(new, new.detach(), adv, torch.zeros(1000), torch.zeros(1000), torch.zeros(1000),
                       torch.zeros(1000), 0.2, False, 0.0, 0.0)
    (grad,) = torch.autograd.grad(loss, mu_p)
    torch.testing.assert_close(-grad, grads[:1000].mean(0), rtol=1e-4, atol=1e-4)


def test_factorized_baseline_lowers_the_variance_where_other_factors_dominate() -> None:
    torch.manual_seed(0)
    n, dim = 20_000, 50
    acts = torch.randn(n, dim)
    r = -acts.pow(2).sum(-1)
    state = _per_sample_gradient(torch.zeros(dim), torch.zeros(dim), acts, (r + dim)[:, None].expand(n, dim))
    exact = r[:, None] + acts.pow(2) - 1.0  # b_i = E[r | a^{-i}]: the other factors' share
    fact = _per_sample_gradient(torch.zeros(dim), torch.zeros(dim), acts, factorized_advantages(r, exact))
    assert fact.var(0).mean() < state.var(0).mean() / 10


def test_per_dimension_ratios_match_a_hand_computation() -> None:
    new = torch.log(torch.tensor([[1.5, 0.9], [1.0, 0.5]]))
    adv = torch.tensor([[1.0, -2.0], [0.5, 1.0]])
    _, stats = ppo_loss(new, torch.zeros(2, 2), adv, torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2),
                        0.2, False, 0.0, 0.5)
    # per factor: min(r·A, clip(r, 0.8, 1.2)·A); row 0: min(1.5, 1.2)·1 + min(0.9·−2, 0.9·−2); row 1: 0.5 + min(.5, .8)
    rows = [1.2 * 1.0 + 0.9 * -2.0, 1.0 * 0.5 + 0.5 * 1.0]
    assert math.isclose(stats["policy_loss"].item(), -sum(rows) / 2, rel_tol=1e-6)
    assert math.isclose(stats["clipfrac"].item(), 0.5)  # 1.5 and 0.5 lie outside [0.8, 1.2]
    joint = torch.tensor([1.5 * 0.9, 0.5])  # the KL diagnostic uses the joint ratio
    assert math.isclose(stats["approx_kl"].item(), ((joint - 1) - joint.log()).mean().item(), rel_tol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        ppo_loss(new, torch.zeros(2, 2), adv[:, 0], torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2),
                 0.2, False, 0.0, 0.5)


def test_episode_clock_and_folds_follow_episode_boundaries() -> None:
    term = torch.tensor([[0, 0], [1, 0], [0, 0], [0, 0]], dtype=torch.bool)
    trunc = torch.tensor([[0, 0], [0, 0], [0, 1], [0, 0]], dtype=torch.bool)
    steps, carry = episode_steps(term, trunc, torch.tensor([5.0, 0.0]))
    assert steps.tolist() == [[5, 0], [6, 1], [0, 2], [1, 0]] and carry.tolist() == [2, 1]
    folds, seen = episode_folds(term, trunc, torch.tensor([0, 3]))
    # env 0: episodes 0 (rows 0-1) then 1; env 1: episodes 3 (rows 0-2) then 4; fold = (episode + env) % 2
    assert folds.tolist() == [[0, 0], [0, 0], [1, 0], [1, 1]] and seen.tolist() == [1, 4]
    folds2, _ = episode_folds(torch.zeros(2, 1, dtype=torch.bool), torch.zeros(2, 1, dtype=torch.bool),
                              torch.tensor([1]))
    assert folds2.tolist() == [[1], [1]]  # a rollout holding one episode gets the next fold, not always fold 0


def _rollout(num_steps: int = 4, num_envs: int = 2, dim: int = 3) -> Rollout:
    torch.manual_seed(3)
    r = Rollout.allocate(num_steps, num_envs, 2, dim, False, torch.device("cpu"))
    r.obs.normal_()
    r.actions.normal_()
    r.rewards.normal_()
    r.values.normal_()
    r.next_values.normal_()
    r.terminated[1, 0] = True
    r.truncated[2, 1] = True
    return r


@pytest.mark.parametrize("fit", ["previous", "crossfit"])
def test_stage_subtracts_never_fitted_baselines_from_bootstrapped_lambda_returns(fit: str) -> None:
    import copy

    from rlctl.agents.policy import ActorCritic
    from rlctl.config import Config, with_overrides
    from rlctl.train.advantages import FactorizedStage

    cfg = with_overrides(Config(), {"env": {"id": "rlctl/TargetMatching-v0", "num_envs": 2},
                                    "ppo": {"num_steps": 4, "minibatch_size": 4, "update_epochs": 2},
                                    "baseline": {"type": "factorized", "fit": fit}})
    agent = ActorCritic(2, GAUSS, [8])
    stage = FactorizedStage(agent, cfg)
    roll = _rollout()
    nets_before = copy.deepcopy(stage.nets)
    batch = stage.batch(roll)
    _, ret = compute_gae(roll.rewards, roll.values, roll.next_values, roll.terminated, roll.truncated, 0.99, 0.95)
    torch.testing.assert_close(batch["returns"], ret.flatten())  # bootstrap at the truncation, none at termination
    torch.testing.assert_close(batch["advantages"], ret.flatten()[:, None] - batch["baselines"])
    assert batch["advantages"].shape == (8, 3)
    if fit == "previous":  # predicted by the networks as they were before this batch
        torch.testing.assert_close(batch["baselines"], stage.baselines(nets_before[0], batch))
    else:  # fold k's rows by the network fitted on the other fold only
        folds, _ = episode_folds(roll.terminated, roll.truncated, torch.zeros(2, dtype=torch.long))
        fold = folds.flatten()
        for k in (0, 1):
            other = stage.baselines(stage.nets[1 - k], batch)
            torch.testing.assert_close(batch["baselines"][fold == k], other[fold == k])
    assert stage.stats()["baseline_loss"] > 0 and "baseline_explained_variance" in stage.stats()


def test_target_matching_env_passes_the_checker_and_scores_the_target() -> None:
    from gymnasium.utils.env_checker import check_env

    import rlctl.envs  # noqa: F401 - registers the rlctl/* ids

    env = gym.make("rlctl/TargetMatching-v0", dim=2000)
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    target = env.unwrapped.target  # type: ignore[attr-defined]
    _, reward, terminated, truncated, info = env.step(target.astype(np.float32))
    assert reward == pytest.approx(0.0, abs=1e-6) and terminated and not truncated and info["per_dim_error"] < 1e-9
    _, reward, *_ = env.step(np.zeros(2000, np.float32))
    assert reward == pytest.approx(-float(np.square(target).sum()), rel=1e-6)
    with pytest.raises(ValueError, match="dim"):
        gym.make("rlctl/TargetMatching-v0", dim=2001)


def test_recomputed_advantages_keep_the_baselines_and_refresh_the_lambda_returns() -> None:
    from rlctl.agents.policy import ActorCritic
    from rlctl.config import Config, with_overrides
    from rlctl.train.advantages import FactorizedStage

    cfg = with_overrides(Config(), {"env": {"id": "rlctl/TargetMatching-v0", "num_envs": 2},
                                    "ppo": {"num_steps": 4, "minibatch_size": 4, "update_epochs": 1,
                                            "recompute_adv": True},
                                    "baseline": {"type": "factorized"}})
    agent = ActorCritic(2, GAUSS, [8])
    stage = FactorizedStage(agent, cfg)
    roll = _rollout()
    batch = stage.batch(roll)
    baselines, returns = batch["baselines"].clone(), batch["returns"].clone()
    with torch.no_grad():
        agent.critic[-1].bias.add_(1.0)  # the critic moved during the epoch
    assert stage.refreshes
    stage.refresh(roll, batch)
    assert not torch.allclose(batch["returns"], returns)
    torch.testing.assert_close(batch["baselines"], baselines)
    torch.testing.assert_close(batch["advantages"], batch["returns"][:, None] - baselines)


def test_per_dimension_ratios_with_the_state_baseline_take_the_joint_first_step() -> None:
    from rlctl.agents.policy import ActorCritic
    from rlctl.agents.ppo import MinibatchStep
    from rlctl.config import Config, with_overrides
    from rlctl.train.advantages import make_advantage_stage

    cfg = with_overrides(Config(), {"env": {"id": "rlctl/TargetMatching-v0", "num_envs": 2},
                                    "ppo": {"num_steps": 4, "minibatch_size": 8, "per_dim_ratio": True,
                                            "norm_adv": False}})  # (normalized, the std's n − 1 differs: B vs B·D)
    stage = make_advantage_stage(cfg, ActorCritic(2, GAUSS, [8]))
    roll = _rollout()
    batch = stage.batch(roll)
    assert stage.per_dim and batch["advantages"].shape == (8, 3)
    assert torch.equal(batch["advantages"], batch["advantages"][:, :1].expand(8, 3))  # every column is A^GAE
    grads = []
    for per_dim in (False, True):  # at θ_old, Σ_i ∇log π_i · A = ∇log π · A: the same gradient
        torch.manual_seed(0)
        agent = ActorCritic(2, GAUSS, [8])
        with torch.no_grad():
            roll.logprobs_dims.copy_(agent.dist(roll.obs).log_prob_dims(roll.actions))
            roll.logprobs.copy_(roll.logprobs_dims.sum(-1))
        b = make_advantage_stage(with_overrides(cfg, {"ppo": {"per_dim_ratio": per_dim}}), agent).batch(roll)
        step = MinibatchStep(agent, torch.optim.SGD(agent.parameters(), lr=0.0), cfg.ppo, per_dim=per_dim)
        step(b, slice(0, 8))
        grads.append(torch.cat([p.grad.reshape(-1) for p in agent.actor.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])
