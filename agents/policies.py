"""The policy types the trainer, collector and evaluators drive (same method names and meanings)."""

from __future__ import annotations

from rlctl.agents.cnn import CnnActorCritic
from rlctl.agents.policy import ActorCritic
from rlctl.agents.recurrent import RecurrentActorCritic

Policy = ActorCritic | CnnActorCritic | RecurrentActorCritic
"""Any actor-critic: feed-forward MLP or CNN, or recurrent (which acts through ``step``/``sequence`` with a state)."""


def state_size(agent: Policy) -> int:
    """Length of one env's recurrent state (0 for a feed-forward policy): the rollout's ``rnn_states`` width."""
    return agent.state_size if isinstance(agent, RecurrentActorCritic) else 0
