"""Learning: pure torch networks, distributions, GAE and the PPO update. No env code, no I/O."""

from __future__ import annotations

from rlctl.agents.distributions import ActionSpec
from rlctl.agents.gae import compute_gae
from rlctl.agents.policy import ActorCritic
from rlctl.agents.ppo import ppo_loss, ppo_update
from rlctl.agents.rollout import Rollout

__all__ = ["ActionSpec", "ActorCritic", "Rollout", "compute_gae", "ppo_loss", "ppo_update"]
