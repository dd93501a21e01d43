"""Per-step CPU inference for MLP Gaussian actor-critics in NumPy: the collector's hot path.

At one env step per call, torch's per-op dispatch (several microseconds per op, about twenty ops for
normalize → actor → critic → sample → log-prob) costs more than the arithmetic of a 64-wide MLP.
NumPy runs the same float32 math at about a microsecond per op. The arrays here are *views* of the
torch parameters and buffers, so optimizer steps and ``load_state_dict`` (both in place) are seen
without a copy. The Gaussian noise still comes from torch's generator with the shape
``DiagGaussian.sample`` uses, so seeding and the random stream are those of the torch path; the
results agree with it to float32 rounding (tested).
"""

from __future__ import annotations

import math
from typing import TypeGuard

import numpy as np
import torch
from torch import nn

from rlctl.agents.policy import ActorCritic

_LOG_SQRT_2PI = np.float32(0.5 * math.log(2.0 * math.pi))


def _layers(seq: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray, str | None]]:
    """``(W^T view, bias view, activation after it)`` per Linear layer."""
    out: list[tuple[np.ndarray, np.ndarray, str | None]] = []
    for layer in seq:
        if isinstance(layer, nn.Linear):
            assert layer.bias is not None
            out.append((layer.weight.detach().numpy().T, layer.bias.detach().numpy(), None))
        else:
            name = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.ELU: "elu"}[type(layer)]
            w, b, _ = out[-1]
            out[-1] = (w, b, name)
    return out


def _forward(layers: list[tuple[np.ndarray, np.ndarray, str | None]], x: np.ndarray) -> np.ndarray:
    for w, b, act in layers:
        x = x @ w
        x += b
        if act == "tanh":
            np.tanh(x, out=x)
        elif act == "relu":
            np.maximum(x, 0.0, out=x)
        elif act == "elu":
            x = np.where(x > 0, x, np.expm1(x))
    return x


def supports(agent: nn.Module) -> TypeGuard[ActorCritic]:
    """Whether :class:`NumpyActorCritic` can stand in for ``agent`` (CPU, Gaussian, plain MLPs)."""
    if not isinstance(agent, ActorCritic) or agent.action.kind != "continuous" or agent.action_low.device.type != "cpu":
        return False
    mods = [*agent.actor, *agent.critic]
    return all(type(m) in (nn.Linear, nn.Tanh, nn.ReLU) or (isinstance(m, nn.ELU) and m.alpha == 1.0) for m in mods)


class NumpyActorCritic:
    """Sampling, log-probs and values of an :class:`ActorCritic` for a small batch of raw observations."""

    def __init__(self, agent: ActorCritic) -> None:
        if not supports(agent):
            raise ValueError("NumpyActorCritic needs a CPU ActorCritic with a Gaussian head and Linear/tanh/relu/elu")
        self.agent = agent
        self.actor = _layers(agent.actor)
        self.critic = _layers(agent.critic)
        self.log_std = agent.log_std.detach().numpy()
        self.low, self.high = agent.action_low.numpy(), agent.action_high.numpy()
        self.bounded = bool(agent.action.low)
        self.rms_mean, self.rms_var = agent.obs_rms.mean.numpy(), agent.obs_rms.var.numpy()
        self.actor_obs_dim = agent.actor_obs_dim

    def normalize(self, obs: np.ndarray, eps: float = 1e-8) -> np.ndarray:
        """:meth:`ActorCritic.normalize_obs` for a float32 NumPy batch (the same float32 ops)."""
        if not self.agent.normalize_inputs:
            return obs
        mean = self.rms_mean.astype(np.float32)
        std = np.sqrt(self.rms_var + eps).astype(np.float32)
        clip = self.agent.clip_obs
        return np.clip((obs - mean) / std, -clip, clip)

    def logprobs_dims(self, norm_obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-dimension Gaussian log-probs of given ``actions`` ``[B, D]`` (e.g. a baseline controller's)."""
        mean = _forward(self.actor, norm_obs[:, :self.actor_obs_dim])
        z = (actions - mean) / np.exp(self.log_std)
        return -0.5 * (z * z) - self.log_std - _LOG_SQRT_2PI

    def step(self, norm_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(action, env_action, logprob_dims, value)`` for normalized observations ``[B, obs_dim]``."""
        mean = _forward(self.actor, norm_obs[:, :self.actor_obs_dim])
        noise = torch.randn(mean.shape, dtype=torch.float32).numpy()  # the torch path's random stream
        std = np.exp(self.log_std)
        action = mean + std * noise
        z = (action - mean) / std
        logp_dims = -0.5 * (z * z) - self.log_std - _LOG_SQRT_2PI
        env_action = np.minimum(np.maximum(action, self.low), self.high) if self.bounded else action
        value = _forward(self.critic, norm_obs)[:, 0]
        return action, env_action, logp_dims, value
