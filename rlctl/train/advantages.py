"""The advantage stage: turn a collected rollout into the learner's batch (advantages, returns, and what
else the loss reads).

A stage is chosen by config and is the one place a new baseline plugs in: :class:`GAEStage` is GAE on the
values stored at collection, optionally recomputed with the current critic before every epoch
(``ppo.recompute_adv``); :class:`FactorizedStage` (``baseline.type=factorized``) gives ``[B, D]``
per-dimension advantages with learned per-factor baselines.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from rlctl.agents.baselines import (
    ActionCoder,
    FactorizedBaseline,
    baseline_loss,
    episode_folds,
    episode_steps,
    factorized_advantages,
    fit_minibatches,
    predict_baselines,
)
from rlctl.agents.gae import compute_gae
from rlctl.agents.policies import Policy
from rlctl.agents.policy import ActorCritic
from rlctl.agents.ppo import sequence_values
from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.agents.rollout import Rollout
from rlctl.config import Config, PPOConfig
from rlctl.envs.ids import check_env_id
from rlctl.errors import UserError

Batch = dict[str, torch.Tensor]


class AdvantageStage(Protocol):
    """Builds the flat ``[T*N, ...]`` batch of a rollout; may refresh it between epochs."""

    def batch(self, rollout: Rollout) -> Batch:
        """Every rollout field flattened, plus ``advantages`` and ``returns``."""
        ...

    def refresh(self, rollout: Rollout, batch: Batch) -> None:
        """Called before every epoch after the first (a no-op for stages that do not refresh)."""
        ...

    @property
    def refreshes(self) -> bool:
        """Whether :meth:`refresh` does anything (the update skips the call otherwise)."""
        ...

    @property
    def per_dim(self) -> bool:
        """Whether ``advantages`` are ``[B, D]`` (per action factor, for per-dimension ratios)."""
        ...

    def stats(self) -> dict[str, float]:
        """Scalars about the last :meth:`batch` (logged as ``losses/<name>``)."""
        ...

    def set_learning_rate(self, lr: float) -> None:
        """Follow the run's learning-rate schedule (stages with optimizers of their own)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What exact resume needs beyond the policy (learned baselines, their optimizers, counters)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def next_step_pairs(rollout: Rollout) -> dict[str, torch.Tensor]:
    """``next_obs`` (the observation after each transition, flattened like ``obs``) and ``next_valid``
    (1.0 where that observation continues the same episode) for temporal smoothness."""
    valid = ~(rollout.terminated | rollout.truncated)
    valid[-1] = False  # the rollout's last observation pairs with one the next rollout holds
    return {"next_obs": torch.roll(rollout.obs, -1, 0).flatten(0, 1), "next_valid": valid.flatten().float()}



@torch.no_grad()
def recompute_advantages(agent: Policy, rollout: Rollout, ppo: PPOConfig, batch: dict[str, torch.Tensor]) -> None:
    """Values, GAE advantages and returns of ``rollout`` under the critic as it is now, into ``batch``.

    V(s_{t+1}) is the fresh value of the next row within an episode; where step t hit a time limit, and
    for the rollout's last row, it stays the value computed at collection (their observations are not
    kept), so those bootstraps are one update stale.
    """
    num_steps, num_envs = rollout.values.shape
    if isinstance(agent, RecurrentActorCritic):  # replayed as the update replays it, from the stored states
        values = sequence_values(agent, rollout.obs.flatten(0, 1), rollout.rnn_states.flatten(0, 1),
                                 rollout.starts.flatten(0, 1), (num_steps, num_envs), ppo.bptt_steps
                                 ).reshape(num_steps, num_envs)
    else:
        values = agent.value(rollout.obs.flatten(0, 1)).reshape(num_steps, num_envs)
    next_values = rollout.next_values.clone()
    fresh = ~rollout.truncated[:-1]
    next_values[:-1] = torch.where(fresh, values[1:], rollout.next_values[:-1])
    advantages, returns = compute_gae(rollout.rewards, values, next_values, rollout.terminated, rollout.truncated,
                                      ppo.gamma, ppo.gae_lambda)
    batch["values"], batch["advantages"], batch["returns"] = values.flatten(), advantages.flatten(), returns.flatten()


@dataclass
class GAEStage:
    """GAE(γ, λ) with the state-value critic; with ``recompute`` the values, advantages and returns are
    recomputed with the critic as it is before each later epoch."""

    agent: Policy
    ppo: PPOConfig
    recompute: bool = False
    per_dim: bool = False
    """``[B, D]`` advantages, every column the state advantage (``ppo.per_dim_ratio`` with the state baseline)"""

    def batch(self, rollout: Rollout) -> Batch:
        advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated,
                                          rollout.truncated, self.ppo.gamma, self.ppo.gae_lambda)
        batch = rollout.flat()
        batch["advantages"], batch["returns"] = advantages.flatten(), returns.flatten()
        self._broadcast(batch)
        if self.ppo.smooth_temporal > 0:
            batch.update(next_step_pairs(rollout))
        return batch

    def _broadcast(self, batch: Batch) -> None:
        if self.per_dim:
            batch["advantages"] = batch["advantages"][:, None].expand_as(batch["logprobs_dims"])

    def refresh(self, rollout: Rollout, batch: Batch) -> None:
        if self.recompute:
            recompute_advantages(self.agent, rollout, self.ppo, batch)
            self._broadcast(batch)

    @property
    def refreshes(self) -> bool:
        return self.recompute

    def stats(self) -> dict[str, float]:
        return {}

    def set_learning_rate(self, lr: float) -> None:
        """Nothing to do: the critic is trained by the PPO update's optimizer."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


class FactorizedStage:
    """Per-dimension advantages ``A^i = R^λ − b_i(s, a^{-i})`` with learned factorized baselines (Wu et al. 2018).

    R^λ is GAE's λ-return with the state critic (``A^GAE + V``), so the estimator's expectation is GAE's for every
    λ and the baselines only remove variance (the "GAE plus offset" form of algorithms.md §1.4; see
    :func:`~rlctl.agents.baselines.factorized_advantages`). The baselines are fit to R^λ, the critic's own target,
    with the critic's budget (``update_epochs`` passes of ``minibatch_size`` Adam steps at the run's learning rate
    and schedule, gradient-norm clip ``max_grad_norm``), either on earlier batches only (``fit=previous``: predict,
    then fit) or cross-fitted (two networks, each fit on one fold of whole episodes and predicting the other):
    never on the rows they are subtracted from, whose noise they would absorb (§1.9-1.10).

    The rollout has no episode clock, so the stage keeps one per env for the ``t/H`` input (checkpointed with the
    networks); an episode cut by ``start_from(now=True)`` keeps counting, which misstates only an input.
    """

    per_dim = True
    refreshes = False

    def __init__(self, agent: Policy, cfg: Config) -> None:
        if not isinstance(agent, ActorCritic):
            raise UserError("baseline.type=factorized needs vector observations (an MLP policy)")
        if agent.action.dim < 2:
            raise UserError(f"baseline.type=factorized needs an action of >= 2 factors (Box or MultiDiscrete); "
                            f"{cfg.env.id} has {agent.action.dim}, for which it is the state baseline")
        self.agent, self.ppo, self.cfg = agent, cfg.ppo, cfg.baseline
        self.refreshes = cfg.ppo.recompute_adv
        device = agent.action_low.device
        self.coder = ActionCoder(agent.action)
        p = cfg.policy
        self.nets = [FactorizedBaseline(agent.obs_dim, self.coder, p.hidden_sizes, p.activation, p.ortho_init)
                     .to(device) for _ in range(2 if cfg.baseline.fit == "crossfit" else 1)]
        self.optimizers = [torch.optim.Adam(net.parameters(), lr=cfg.ppo.learning_rate, eps=cfg.ppo.adam_eps)
                           for net in self.nets]
        self.horizon = float(cfg.env.max_episode_steps or check_env_id(cfg.env.id).max_episode_steps or 1000)
        self.clock = torch.zeros(cfg.env.num_envs, device=device)
        self.episodes = torch.zeros(cfg.env.num_envs, dtype=torch.long, device=device)
        self._stats: dict[str, float] = {}

    def baselines(self, net: FactorizedBaseline, batch: Batch,
                  rows: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """``[B, D]`` b_i of ``batch``'s ``rows`` (``obs``, ``time``, ``actions``) from ``net``."""
        obs = batch["obs"][rows]
        with torch.no_grad():
            dist = None if self.cfg.mode == "regress" else self.agent.dist(obs)
            return predict_baselines(net, self.cfg.mode, obs, batch["time"][rows], batch["actions"][rows], dist,
                                     self.cfg.mc_samples)

    def fit(self, k: int, batch: Batch, rows: torch.Tensor | slice = slice(None)) -> float:
        """Fit network ``k`` to the λ-returns of ``rows`` with the critic's budget; the mean minibatch loss."""
        net, mode, fit_dims = self.nets[k], self.cfg.mode, self.cfg.fit_dims
        obs, tm, acts, y = (batch[key][rows] for key in ("obs", "time", "actions", "returns"))
        if obs.shape[0] == 0:
            return float("nan")
        return fit_minibatches(lambda i: baseline_loss(net, mode, obs[i], tm[i], acts[i], y[i], fit_dims),
                               obs.shape[0], list(net.parameters()), self.optimizers[k], self.ppo.update_epochs,
                               self.ppo.minibatch_size, self.ppo.max_grad_norm)

    def batch(self, rollout: Rollout) -> Batch:
        start = time.perf_counter()
        _, returns = compute_gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated,
                                 rollout.truncated, self.ppo.gamma, self.ppo.gae_lambda)
        steps, self.clock = episode_steps(rollout.terminated, rollout.truncated, self.clock)
        folds, self.episodes = episode_folds(rollout.terminated, rollout.truncated, self.episodes)
        batch = rollout.flat()
        batch["returns"], batch["time"] = returns.flatten(), (steps / self.horizon).flatten()
        if len(self.nets) == 1:  # previous: predict with what earlier batches taught, then learn this one
            b = self.baselines(self.nets[0], batch)
            losses = [self.fit(0, batch)]
        else:  # crossfit: fold k's rows get the network fit on the other fold
            fold = folds.flatten()
            losses = [self.fit(k, batch, fold == k) for k in (0, 1)]
            b = torch.empty_like(batch["logprobs_dims"])
            for k in (0, 1):
                b[fold == k] = self.baselines(self.nets[1 - k], batch, fold == k)
        batch["baselines"] = b
        batch["advantages"] = factorized_advantages(batch["returns"], b)
        if self.ppo.smooth_temporal > 0:
            batch.update(next_step_pairs(rollout))
        var_r = batch["returns"].var()
        fitted = [loss for loss in losses if not math.isnan(loss)]  # a crossfit fold may hold no episode
        self._stats = {
            "baseline_loss": sum(fitted) / len(fitted) if fitted else float("nan"),
            # 1 − mean_i Var(R − b_i) / Var(R): how much of the return's variance the factors' baselines explain
            "baseline_explained_variance": float(1.0 - (batch["advantages"].var(0).mean() / var_r))
            if var_r > 0 else float("nan"),
            "baseline_s": time.perf_counter() - start,
        }
        return batch

    def refresh(self, rollout: Rollout, batch: Batch) -> None:
        """``ppo.recompute_adv``: λ-returns with the critic as it is now; the baselines stay as predicted."""
        recompute_advantages(self.agent, rollout, self.ppo, batch)
        batch["advantages"] = factorized_advantages(batch["returns"], batch["baselines"])

    def stats(self) -> dict[str, float]:
        return dict(self._stats)

    def set_learning_rate(self, lr: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return {"nets": [net.state_dict() for net in self.nets],
                "optimizers": [opt.state_dict() for opt in self.optimizers],
                "clock": self.clock.clone(), "episodes": self.episodes.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state.get("nets", ())) != len(self.nets):
            raise UserError(f"the checkpoint holds {len(state.get('nets', ()))} factorized baseline networks, "
                            f"this config ({self.cfg.fit}) has {len(self.nets)}")
        for net, opt, net_state, opt_state in zip(self.nets, self.optimizers, state["nets"], state["optimizers"],
                                                  strict=True):
            net.load_state_dict(net_state)
            opt.load_state_dict(opt_state)
        self.clock.copy_(state["clock"])
        self.episodes.copy_(state["episodes"])


def make_advantage_stage(cfg: Config, agent: Policy) -> AdvantageStage:
    """The advantage stage a config asks for."""
    if cfg.baseline.type == "factorized":
        return FactorizedStage(agent, cfg)
    return GAEStage(agent, cfg.ppo, recompute=cfg.ppo.recompute_adv, per_dim=cfg.ppo.per_dim_ratio)
