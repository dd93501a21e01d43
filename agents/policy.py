"""Actor-critic MLP with the observation normalizer inside the module.

Separate actor and critic networks (the PPO paper's and SB3's MuJoCo setting). Everything a saved
policy needs to act — normalizer statistics included — is in ``state_dict()``.

Asymmetric actor-critic: with ``actor_obs_dim < obs_dim`` the last ``obs_dim - actor_obs_dim``
observation entries are *critic-only* (privileged simulator state: the randomized vehicle parameters,
motor speeds, noise-free state). The critic uses them to tell a heavy vehicle's return from a light one's,
so advantages carry less of the randomization's variance; the actor never sees them, so the deployed
policy needs only what the robot measures (:meth:`ActorCritic.deployable`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import nn

from rlctl.agents.distributions import ActionSpec, DiagGaussian, Distribution, MultiCategorical
from rlctl.agents.normalize import RewardScaler, RunningMeanStd

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def _mlp(sizes: list[int], activation: str, out_size: int, out_gain: float, ortho: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [_init(nn.Linear(fan_in, fan_out), math.sqrt(2.0), ortho), _ACTIVATIONS[activation]()]
    layers.append(_init(nn.Linear(sizes[-1], out_size), out_gain, ortho))
    return nn.Sequential(*layers)


def _run(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``seq(x)`` without ``nn.Module.__call__``'s hook machinery: the same ops, ~40% less overhead
    per call, which matters at one call per env step."""
    for layer in seq:
        x = layer.forward(x)
    return x


def _init(layer: nn.Linear, gain: float, ortho: bool) -> nn.Linear:
    if ortho:
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """``obs [B, obs_dim]`` (raw) → action distribution and value.

    The learner works on *normalized* observations: the rollout stores them as they were normalized
    at collection time, so the PPO ratio's old log-probs and the new ones see the same inputs.
    Use :meth:`normalize_obs` on raw env observations, then :meth:`dist` / :meth:`value`.
    """

    action_low: torch.Tensor
    action_high: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        action: ActionSpec,
        hidden_sizes: list[int],
        activation: str = "tanh",
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        normalize_obs: bool = True,
        clip_obs: float = 10.0,
        actor_obs_dim: int | None = None,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        actor_obs_dim = obs_dim if actor_obs_dim is None else actor_obs_dim
        if not 0 < actor_obs_dim <= obs_dim:
            raise ValueError(f"actor_obs_dim must be in [1, {obs_dim}], got {actor_obs_dim}")
        self.obs_dim = obs_dim
        self.actor_obs_dim = actor_obs_dim
        self._config: dict[str, Any] = {  # to build the actor-only copy (deployable)
            "hidden_sizes": list(hidden_sizes), "activation": activation, "ortho_init": ortho_init,
            "log_std_init": log_std_init, "normalize_obs": normalize_obs, "clip_obs": clip_obs}
        self.action = action
        self.clip_obs = clip_obs
        self.normalize_inputs = normalize_obs
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.reward_scaler = RewardScaler()
        self.actor = _mlp([actor_obs_dim, *hidden_sizes], activation, action.head_size, 0.01, ortho_init)
        self.critic = _mlp([obs_dim, *hidden_sizes], activation, 1, 1.0, ortho_init)
        if action.kind == "continuous":
            self.log_std = nn.Parameter(torch.full((action.dim,), float(log_std_init)))
        low = torch.tensor(action.low or [0.0] * action.dim, dtype=torch.float32)
        high = torch.tensor(action.high or [0.0] * action.dim, dtype=torch.float32)
        self.register_buffer("action_low", low)
        self.register_buffer("action_high", high)

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw ``[B, obs_dim]`` → what the networks see (identity when normalization is off)."""
        if not self.normalize_inputs:
            return obs
        return self.obs_rms.normalize(obs, self.clip_obs)

    @property
    def critic_only_obs(self) -> int:
        """How many trailing observation entries only the critic sees (0 for a symmetric actor-critic)."""
        return self.obs_dim - self.actor_obs_dim

    def dist(self, norm_obs: torch.Tensor) -> Distribution:
        """The action distribution; takes full or actor-only normalized observations."""
        out = _run(self.actor, norm_obs[..., :self.actor_obs_dim] if self.critic_only_obs else norm_obs)
        if self.action.kind == "continuous":
            return DiagGaussian(out, self.log_std)
        return MultiCategorical(out, self.action.nvec)

    def value(self, norm_obs: torch.Tensor) -> torch.Tensor:
        """``[B]`` state values."""
        return _run(self.critic, norm_obs).squeeze(-1)

    def dist_and_value(self, norm_obs: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """Both heads (what the PPO loss needs); separate networks here, a shared encoder in the CNN."""
        return self.dist(norm_obs), self.value(norm_obs)

    def to_env_action(self, actions: torch.Tensor) -> torch.Tensor:
        """Clip Gaussian samples into the env's bounds; pass discrete actions through."""
        if self.action.kind != "continuous" or not self.action.low:
            return actions
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low)

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic env action for raw observations (the exported graph)."""
        return self.to_env_action(self.dist(self.normalize_obs(obs)).mode())

    def deployable(self) -> ActorCritic:
        """What runs on the robot: this module itself, or for an asymmetric one a copy that takes only the
        actor's observations, with the normalizer cut to them (its critic is fresh and unused: export and
        evaluation run the actor alone)."""
        if not self.critic_only_obs:
            return self
        k = self.actor_obs_dim
        actor = ActorCritic(k, self.action, **self._config).to(self.action_low.device)
        mine = self.state_dict()
        with torch.no_grad():
            for key, value in actor.state_dict().items():
                if key.startswith("critic."):
                    continue
                source = mine[key]
                value.copy_(source[:k] if key in ("obs_rms.mean", "obs_rms.var") else source)
        return actor.eval()
