"""Generalized advantage estimation with termination and truncation kept apart.

Schulman et al. 2016, eq. 16: A_t = Σ_l (γλ)^l δ_{t+l},  δ_t = r_t + γ V(s_{t+1}) − V(s_t).

Two flags, two jobs (the distinction CleanRL #198 and PureJaxRL #20 get wrong):

* ``terminated[t]`` — s_{t+1} is absorbing, so its value is 0: it stops the *bootstrap*.
* ``terminated[t] or truncated[t]`` — the episode ended, the next row belongs to a new episode:
  it stops the *trace*. At a time limit the bootstrap still uses V of the true final observation,
  which the caller passes in ``next_values[t]``.
"""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(advantages, returns)``, both ``[T, N]``.

    Args:
        rewards: ``[T, N]`` reward of step t.
        values: ``[T, N]`` V(s_t).
        next_values: ``[T, N]`` V(s_{t+1}) where s_{t+1} is the observation step t produced; at a
            truncation this is V of the *final* observation (not of the reset observation).
        terminated: ``[T, N]`` bool, as returned by step t.
        truncated: ``[T, N]`` bool, as returned by step t.
    """
    shape = rewards.shape
    for name, tensor in (("values", values), ("next_values", next_values), ("terminated", terminated),
                         ("truncated", truncated)):
        if tensor.shape != shape:
            raise ValueError(f"compute_gae: {name} has shape {tuple(tensor.shape)}, rewards {tuple(shape)}")
    if rewards.dim() != 2:
        raise ValueError(f"compute_gae expects [T, N] tensors, got shape {tuple(shape)}")

    not_terminal = 1.0 - terminated.to(rewards.dtype)
    not_done = 1.0 - (terminated | truncated).to(rewards.dtype)
    deltas = rewards + gamma * next_values * not_terminal - values
    decay = gamma * gae_lambda * not_done
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(shape[0] - 1, -1, -1):
        running = deltas[t] + decay[t] * running
        advantages[t] = running
    return advantages, advantages + values
