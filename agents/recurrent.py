"""Recurrent actor-critic: an encoder (MLP or CNN), one LSTM or GRU core shared by both heads, the heads.

A policy with memory can act on what it no longer observes (a cue shown once, a lag it identifies from the
last steps' response). Its state is carried per env through collection and reset where an episode starts;
training replays whole sequences from the states stored at collection (:func:`rlctl.agents.ppo`'s recurrent
update), so the new log-probs are computed exactly as the old ones were.

The state of one env is a flat vector (:attr:`RecurrentActorCritic.state_size`): for an LSTM the hidden and cell
states of every layer, for a GRU the hidden states. ``starts[t]`` marks the steps where an episode began *before*
the step: the state is zeroed there, before the core sees the observation.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import nn

from rlctl.agents.cnn import ImpalaCNN, NatureCNN
from rlctl.agents.distributions import ActionSpec, DiagGaussian, Distribution, MultiCategorical
from rlctl.agents.normalize import RewardScaler, RunningMeanStd
from rlctl.agents.policy import _ACTIVATIONS, _init

CELLS = ("lstm", "gru")


class RecurrentActorCritic(nn.Module):
    """``obs`` → encoder → LSTM/GRU → actor and critic heads; see the module docstring.

    Vector observations go through an MLP (``hidden_sizes``, the observation normalizer inside the module as in
    :class:`~rlctl.agents.policy.ActorCritic`); uint8 frames ``[C, H, W]`` through the Nature or IMPALA CNN.
    """

    action_low: torch.Tensor
    action_high: torch.Tensor

    def __init__(self, obs_shape: tuple[int, ...], action: ActionSpec, cell: str = "lstm", size: int = 128,
                 layers: int = 1, hidden_sizes: list[int] | None = None, activation: str = "tanh",
                 encoder: str = "mlp", normalize_obs: bool = True, clip_obs: float = 10.0,
                 log_std_init: float = 0.0, ortho_init: bool = True) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
        self.cell, self.size, self.layers, self.action = cell, size, layers, action
        self.image = len(obs_shape) == 3
        self.clip_obs = clip_obs
        self.normalize_inputs = normalize_obs and not self.image
        self.obs_rms = RunningMeanStd(obs_shape if not self.image else (1,))
        self.reward_scaler = RewardScaler()
        if self.image:
            channels, height, _ = obs_shape
            net = ImpalaCNN(channels, screen_size=height) if encoder == "impala" else \
                NatureCNN(channels, screen_size=height)
            self.encoder: nn.Module = net
            features = net.features
        else:
            sizes = [obs_shape[0], *(hidden_sizes or [64])]
            mods: list[nn.Module] = []
            for fan_in, fan_out in itertools.pairwise(sizes):
                mods += [_init(nn.Linear(fan_in, fan_out), math.sqrt(2.0), ortho_init), _ACTIVATIONS[activation]()]
            self.encoder = nn.Sequential(*mods)
            features = sizes[-1]
        core = nn.LSTM if cell == "lstm" else nn.GRU
        self.core = core(features, size, layers)
        for name, param in self.core.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            elif ortho_init:
                nn.init.orthogonal_(param, 1.0)
        self.actor = _init(nn.Linear(size, action.head_size), 0.01, True)
        self.critic = _init(nn.Linear(size, 1), 1.0, True)
        if action.kind == "continuous":
            self.log_std = nn.Parameter(torch.full((action.dim,), float(log_std_init)))
        self.register_buffer("action_low", torch.tensor(action.low or [0.0] * action.dim, dtype=torch.float32))
        self.register_buffer("action_high", torch.tensor(action.high or [0.0] * action.dim, dtype=torch.float32))

    @property
    def obs_dim(self) -> int:
        """Length of a flat observation (vector observations)."""
        return int(self.obs_rms.mean.shape[0])

    @property
    def state_size(self) -> int:
        """Length of one env's flat state vector."""
        return self.layers * self.size * (2 if self.cell == "lstm" else 1)

    def initial_state(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        """``[n, state_size]`` zeros: the state at an episode's start."""
        return torch.zeros(n, self.state_size, device=device or self.action_low.device)

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations → what the encoder sees (frames pass as they are: scaled inside the CNN)."""
        if not self.normalize_inputs:
            return obs
        return self.obs_rms.normalize(obs, self.clip_obs)

    def _unpack(self, state: torch.Tensor) -> Any:
        layered = state.view(state.shape[0], -1, self.layers, self.size).permute(1, 2, 0, 3).contiguous()
        return (layered[0], layered[1]) if self.cell == "lstm" else layered[0]

    def _pack(self, state: Any) -> torch.Tensor:
        parts = torch.stack(list(state) if self.cell == "lstm" else [state])  # [k, layers, B, size]
        return parts.permute(2, 0, 1, 3).reshape(parts.shape[2], -1)

    def _features(self, norm_obs: torch.Tensor) -> torch.Tensor:
        return self.encoder(norm_obs)

    def _core(self, features: torch.Tensor, state: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
        """``features [T, B, F]`` from ``state [B, S]``, zeroing the state before steps where ``starts [T, B]``;
        returns the outputs ``[T, B, size]`` and the state after the last step.

        The core runs once per stretch of steps in which no env of the batch starts an episode (not once per
        step): the same arithmetic, with a fraction of the Python dispatch (an episode start is rare in a chunk).
        """
        started = starts.bool()
        keep = (~started).to(features.dtype)  # [T, B]
        steps = features.shape[0]
        # one step (collection) is one stretch: no host sync to find episode starts
        cuts = [0, *(torch.nonzero(started[1:].any(1)).flatten() + 1).tolist(), steps] if steps > 1 else [0, 1]
        outputs = []
        for begin, end in itertools.pairwise(cuts):
            state = state * keep[begin, :, None]
            out, packed = self.core(features[begin:end], self._unpack(state))
            state = self._pack(packed)
            outputs.append(out)
        return torch.cat(outputs), state

    def _heads(self, out: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        logits = self.actor(out)
        dist: Distribution = DiagGaussian(logits, self.log_std) if self.action.kind == "continuous" else \
            MultiCategorical(logits, self.action.nvec)
        return dist, self.critic(out).squeeze(-1)

    def step(self, norm_obs: torch.Tensor, state: torch.Tensor,
             starts: torch.Tensor) -> tuple[Distribution, torch.Tensor, torch.Tensor]:
        """One step for ``B`` envs: the distribution, the values and the state after the step."""
        out, state = self._core(self._features(norm_obs)[None], state, starts[None])
        dist, values = self._heads(out[0])
        return dist, values, state

    def sequence(self, norm_obs: torch.Tensor, state: torch.Tensor,
                 starts: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """``norm_obs [T, B, ...]`` from ``state [B, S]``: distributions and values of all ``T·B`` steps,
        time-major flattened (row ``t·B + b``)."""
        steps, batch = norm_obs.shape[:2]
        features = self._features(norm_obs.flatten(0, 1)).view(steps, batch, -1)
        out, _ = self._core(features, state, starts)
        return self._heads(out.flatten(0, 1))

    def _stateless(self) -> RuntimeError:
        return RuntimeError("a recurrent policy acts from a state: use step() or sequence(), not dist() or value()")

    def dist(self, norm_obs: torch.Tensor) -> Distribution:
        """Not defined without a state (the callers that need it refuse recurrent runs first)."""
        raise self._stateless()

    def value(self, norm_obs: torch.Tensor) -> torch.Tensor:
        """Not defined without a state."""
        raise self._stateless()

    def dist_and_value(self, norm_obs: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """Not defined without a state."""
        raise self._stateless()

    def to_env_action(self, actions: torch.Tensor) -> torch.Tensor:
        """Clip Gaussian samples into the env's bounds; pass discrete actions through."""
        if self.action.kind != "continuous" or not self.action.low:
            return actions
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor,
            deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Env actions for raw observations and the state after them (evaluation, enjoy)."""
        dist, _, state = self.step(self.normalize_obs(obs), state, starts)
        return self.to_env_action(dist.mode() if deterministic else dist.sample()), state
