"""Rollout storage: preallocated ``[T, N, ...]`` tensors on the learner's device.

Besides PPO's usual fields it has room for what the research features need:

* ``executed_actions`` / ``actor`` — what the env actually received and who chose it (0 = the
  learned policy, 1 = a baseline controller, 2 = a demo's replayed warm-up), for agency-transferring
  arbitration and demo curricula;
* ``logprobs_dims`` — the behaviour log-probability of each action factor, for factorized
  action-dependent baselines (Wu et al. 2018), which need per-dimension ratios;
* ``starts`` / ``rnn_states`` — episode starts and a recurrent policy's state before each step, from which
  training replays its sequences (:mod:`rlctl.agents.recurrent`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

POLICY_ACTOR = 0
"""``actor`` value for transitions whose action came from the learned policy."""
BASELINE_ACTOR = 1
"""``actor`` value for transitions whose action came from a baseline controller."""
DEMO_ACTOR = 2
"""``actor`` value for a demonstration's replayed warm-up steps: left out of every loss."""


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are one: ``cuda`` (the current device) and ``cuda:0`` compare unequal in torch, and a
    rollout allocated on one would otherwise be copied to the other on every update."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


@dataclass
class Rollout:
    """One rollout of ``num_steps`` × ``num_envs`` transitions."""

    obs: torch.Tensor  # [T, N, obs_dim] normalized as at collection time; [T, N, C, H, W] uint8 for images
    actions: torch.Tensor  # [T, N, D] the policy's sample (unclipped), float32 or int64
    executed_actions: torch.Tensor  # [T, N, D] what the env received
    actor: torch.Tensor  # [T, N] int8, POLICY_ACTOR unless a controller acted
    logprobs: torch.Tensor  # [T, N] behaviour log π(a|s)
    logprobs_dims: torch.Tensor  # [T, N, D] per-factor behaviour log-probs
    values: torch.Tensor  # [T, N] V(s_t)
    next_values: torch.Tensor  # [T, N] V(s_{t+1}); V(final obs) at truncations
    rewards: torch.Tensor  # [T, N] (scaled) rewards used for learning
    terminated: torch.Tensor  # [T, N] bool
    truncated: torch.Tensor  # [T, N] bool
    starts: torch.Tensor  # [T, N] bool: an episode began before step t (a recurrent state is zeroed there)
    rnn_states: torch.Tensor  # [T, N, S] a recurrent policy's state before step t ([T, N, 0] for feed-forward ones)

    @classmethod
    def allocate(
        cls, num_steps: int, num_envs: int, obs_shape: int | tuple[int, ...], act_dim: int, discrete: bool,
        device: torch.device, obs_dtype: torch.dtype = torch.float32, state_size: int = 0,
    ) -> Rollout:
        """Zeroed storage; ``obs_shape`` is the vector size or an image's ``(C, H, W)`` (then ``obs_dtype=uint8``);
        ``state_size``: a recurrent policy's state per env."""
        shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros((num_steps, num_envs, *shape), dtype=dtype, device=device)

        act_dtype = torch.int64 if discrete else torch.float32
        return cls(
            obs=zeros(*shape, dtype=obs_dtype),
            actions=zeros(act_dim, dtype=act_dtype),
            executed_actions=zeros(act_dim, dtype=act_dtype),
            actor=zeros(dtype=torch.int8),
            logprobs=zeros(),
            logprobs_dims=zeros(act_dim),
            values=zeros(),
            next_values=zeros(),
            rewards=zeros(),
            terminated=zeros(dtype=torch.bool),
            truncated=zeros(dtype=torch.bool),
            starts=zeros(dtype=torch.bool),
            rnn_states=zeros(state_size),
        )

    def to(self, device: torch.device) -> Rollout:
        """This rollout on ``device`` (itself when already there)."""
        if same_device(self.obs.device, device):
            return self
        return Rollout(**{f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)})

    def flat(self) -> dict[str, torch.Tensor]:
        """Every field reshaped to ``[T*N, ...]`` (views, no copies)."""
        return {f.name: getattr(self, f.name).flatten(0, 1) for f in fields(self)}
