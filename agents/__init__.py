"""Learning: pure torch networks, distributions, GAE and the PPO update. No env code, no I/O."""

from __future__ import annotations

from agents.distributions import ActionSpec
from agents.gae import compute_gae
from agents.policy import ActorCritic
from agents.ppo import ppo_loss, ppo_update
from agents.rollout import Rollout

__all__ = ["ActionSpec", "ActorCritic", "Rollout", "compute_gae", "ppo_loss", "ppo_update"]
