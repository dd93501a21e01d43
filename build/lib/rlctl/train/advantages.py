"""The advantage stage: turn a collected rollout into the learner's batch (advantages, returns, and what
else the loss reads).

A stage is chosen by config and is the one place a new baseline plugs in: :class:`GAEStage` is GAE on the
values stored at collection, optionally recomputed with the current critic before every epoch
(``ppo.recompute_adv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from rlctl.agents.cnn import Policy
from rlctl.agents.gae import compute_gae
from rlctl.agents.rollout import Rollout
from rlctl.config import Config, PPOConfig

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

    def batch(self, rollout: Rollout) -> Batch:
        advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated,
                                          rollout.truncated, self.ppo.gamma, self.ppo.gae_lambda)
        batch = rollout.flat()
        batch["advantages"], batch["returns"] = advantages.flatten(), returns.flatten()
        if self.ppo.smooth_temporal > 0:
            batch.update(next_step_pairs(rollout))
        return batch

    def refresh(self, rollout: Rollout, batch: Batch) -> None:
        if self.recompute:
            recompute_advantages(self.agent, rollout, self.ppo, batch)

    @property
    def refreshes(self) -> bool:
        return self.recompute


def make_advantage_stage(cfg: Config, agent: Policy) -> AdvantageStage:
    """The advantage stage a config asks for."""
    return GAEStage(agent, cfg.ppo, recompute=cfg.ppo.recompute_adv)
