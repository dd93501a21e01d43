"""Action distributions with per-dimension log-probabilities.

Written out by hand instead of ``torch.distributions`` for two reasons: the per-step inference path
is hot (argument validation and broadcasting cost tens of microseconds per call), and the
factorized-baseline work needs ``log_prob_dims`` — one log-probability per action factor — which
the stock classes only give for some shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class ActionSpec:
    """What the policy must output, without any dependency on gymnasium.

    ``kind`` is ``continuous`` (diagonal Gaussian over ``dim`` reals), ``discrete`` (one categorical
    with ``nvec[0]`` choices, ``dim == 1``) or ``multidiscrete`` (``dim`` independent categoricals).
    ``low``/``high`` are the env's bounds, used only to clip on the way to the env.
    """

    kind: str
    dim: int
    nvec: tuple[int, ...] = ()
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @property
    def head_size(self) -> int:
        """Width of the actor's output layer."""
        return self.dim if self.kind == "continuous" else sum(self.nvec)


class DiagGaussian:
    """Independent normals; the log-prob is of the unclipped sample (clipping happens env-side)."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor) -> None:
        self.mean = mean
        self.log_std = log_std.expand_as(mean)
        self.std = self.log_std.exp()

    def sample(self) -> torch.Tensor:
        return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob_dims(self, actions: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` log-density of each coordinate."""
        z = (actions - self.mean) / self.std
        return -0.5 * z.pow(2) - self.log_std - _LOG_SQRT_2PI

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.log_prob_dims(actions).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + _LOG_SQRT_2PI + self.log_std).sum(-1)

    def imitation_log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """``[B]`` log-density of ``actions`` whose gradient moves the mean alone (the std is held as it is).

        Maximizing the full log-density of a deterministic teacher's actions also shrinks the std toward the
        mean's residual error, without bound: exploration collapses and the PPO ratios of the policy's own
        steps overflow (seen on the quadrotor waypoint task with ``arbiter.baseline_steps=bc``). Imitation
        should say where to act; how widely to explore stays PPO's and the entropy term's business.
        """
        z = (actions - self.mean) / self.std.detach()
        return (-0.5 * z.pow(2) - self.log_std.detach() - _LOG_SQRT_2PI).sum(-1)


class MultiCategorical:
    """One or more independent categoricals over split logits; actions are ``[B, dim]`` int64."""

    def __init__(self, logits: torch.Tensor, nvec: tuple[int, ...]) -> None:
        self.logits = [F.log_softmax(chunk, dim=-1) for chunk in torch.split(logits, list(nvec), dim=-1)]

    def sample(self) -> torch.Tensor:
        # Gumbel-max: one fused op per factor, no Python loop over the batch.
        draws = [
            torch.argmax(lp - torch.log(-torch.log(torch.rand_like(lp).clamp_(1e-20, 1.0))), dim=-1)
            for lp in self.logits
        ]
        return torch.stack(draws, dim=-1)

    def mode(self) -> torch.Tensor:
        return torch.stack([torch.argmax(lp, dim=-1) for lp in self.logits], dim=-1)

    def log_prob_dims(self, actions: torch.Tensor) -> torch.Tensor:
        actions = actions.long()
        cols = [lp.gather(-1, actions[..., i : i + 1]).squeeze(-1) for i, lp in enumerate(self.logits)]
        return torch.stack(cols, dim=-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.log_prob_dims(actions).sum(-1)

    def entropy(self) -> torch.Tensor:
        return torch.stack([-(lp.exp() * lp).sum(-1) for lp in self.logits], dim=-1).sum(-1)

    def imitation_log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """``[B]`` log-probability of a teacher's ``actions`` (the cross-entropy is bounded: no scale to guard)."""
        return self.log_prob(actions)


Distribution = DiagGaussian | MultiCategorical
