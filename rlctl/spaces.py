"""Translate gymnasium spaces into what the learner sees: flat float vectors or uint8 images, and an ActionSpec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from rlctl.agents.distributions import ActionSpec
from rlctl.agents.rollout import Rollout
from rlctl.envs.ids import CRITIC_ONLY_OBS
from rlctl.errors import UserError


@dataclass(frozen=True)
class SpaceAdapter:
    """Converts batched env observations to what the policy takes, and policy actions back.

    Vector observations become ``[N, obs_dim]`` float32. Images (``uint8`` Box of shape ``[C, H, W]``,
    e.g. stacked Atari frames) stay ``uint8 [N, C, H, W]``: the CNN scales them itself, and the rollout
    stores them at a quarter of the float32 memory.
    """

    obs_space: spaces.Space
    action_space: spaces.Space
    obs_dim: int
    action: ActionSpec
    image_shape: tuple[int, ...] | None = None
    """``(C, H, W)`` for image observations, None for vector ones"""
    critic_only_obs: int = 0
    """trailing observation entries only the critic sees (an env's ``metadata["critic_only_obs"]``)"""

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation as the policy sees it."""
        return self.image_shape if self.image_shape is not None else (self.obs_dim,)

    def obs(self, batch: np.ndarray) -> np.ndarray:
        """``[N, *obs_shape]`` env observations → ``[N, obs_dim]`` float32 (images: ``uint8 [N, C, H, W]``)."""
        if self.image_shape is not None:
            return np.ascontiguousarray(batch, dtype=np.uint8)
        if isinstance(self.obs_space, spaces.Discrete):
            idx = np.asarray(batch, dtype=np.int64).reshape(-1) - int(self.obs_space.start)
            return np.eye(self.obs_dim, dtype=np.float32)[idx]
        arr = np.asarray(batch, dtype=np.float32)
        return arr.reshape(arr.shape[0], self.obs_dim)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_env`: ``[N, ...]`` env actions → ``[N, D]`` policy actions (float32 or int64).

        For actions that did not come from the policy (a baseline controller's)."""
        space, n = self.action_space, len(actions)
        if isinstance(space, spaces.Discrete):
            return (np.asarray(actions, dtype=np.int64) - int(space.start)).reshape(n, 1)
        if isinstance(space, spaces.MultiDiscrete):
            return (np.asarray(actions, dtype=np.int64) - space.start).reshape(n, -1)
        if isinstance(space, spaces.MultiBinary):
            return np.asarray(actions, dtype=np.int64).reshape(n, -1)
        return np.asarray(actions, dtype=np.float32).reshape(n, self.action.dim)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """``[N, D]`` policy actions (already clipped) → the batched form the vector env expects."""
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return actions.reshape(-1).astype(np.int64) + int(space.start)
        if isinstance(space, spaces.MultiDiscrete):
            return actions.reshape(actions.shape[0], *space.shape).astype(space.dtype) + space.start
        if isinstance(space, spaces.MultiBinary):
            return actions.reshape(actions.shape[0], *space.shape).astype(space.dtype)
        return actions.reshape(actions.shape[0], *(space.shape or ())).astype(space.dtype, copy=False)


def adapter_for(obs_space: spaces.Space, action_space: spaces.Space, critic_only: int = 0) -> SpaceAdapter:
    """Check the spaces are supported and build the adapter; unsupported ones get a clear error."""
    image = is_image_space(obs_space)
    obs_dim = _obs_dim(obs_space)
    if critic_only and (image or not 0 < critic_only < obs_dim):
        raise UserError(f"the env declares {critic_only} critic-only observation entries, which needs a vector "
                        f"observation with more entries than that; got {obs_space}")
    return SpaceAdapter(obs_space, action_space, obs_dim, _action_spec(action_space),
                        tuple(obs_space.shape) if image and obs_space.shape else None, critic_only)


def adapter_for_env(env: Any) -> SpaceAdapter:
    """:func:`adapter_for` an env (single or vector), with the critic-only count it declares in its metadata
    under ``rlctl.envs.make.CRITIC_ONLY_OBS`` (0 when it declares none)."""
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    action_space = getattr(env, "single_action_space", env.action_space)
    critic_only = int((getattr(env, "metadata", None) or {}).get(CRITIC_ONLY_OBS, 0))
    return adapter_for(obs_space, action_space, critic_only)


def is_image_space(space: spaces.Space) -> bool:
    """A channels-first ``uint8`` image, ``[C, H, W]`` (stacked frames): what the CNN policies take."""
    if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3):
        return False
    channels, height, width = space.shape
    if channels > min(height, width):
        raise UserError(f"the CNN policies take channels-first images [C, H, W], got shape {space.shape}; "
                        "wrap the env with a transpose (e.g. gymnasium.wrappers.ReshapeObservation)")
    return True


def rollout_for(adapter: SpaceAdapter, num_steps: int, num_envs: int, device: torch.device,
                state_size: int = 0) -> Rollout:
    """Rollout storage shaped for these spaces (uint8 frames for images; ``state_size``: a recurrent policy's)."""
    return Rollout.allocate(num_steps, num_envs, adapter.obs_shape, adapter.action.dim,
                            adapter.action.kind != "continuous", device,
                            obs_dtype=torch.uint8 if adapter.image_shape is not None else torch.float32,
                            state_size=state_size)


def _obs_dim(space: spaces.Space) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, (spaces.Box, spaces.MultiBinary)):
        return int(np.prod(space.shape))
    raise UserError(
        f"observation space {type(space).__name__} ({space}) is not supported; "
        "supported: Box, Discrete, MultiBinary (flatten Dict/Tuple spaces with gymnasium.wrappers.FlattenObservation)"
    )


def _action_spec(space: spaces.Space) -> ActionSpec:
    if isinstance(space, spaces.Box):
        if not np.issubdtype(space.dtype, np.floating):
            raise UserError(f"integer Box action spaces are not supported: {space}")
        dim = int(np.prod(space.shape))
        low, high = space.low.reshape(-1), space.high.reshape(-1)
        bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
        return ActionSpec(
            kind="continuous",
            dim=dim,
            low=tuple(float(x) for x in low) if bounded else (),
            high=tuple(float(x) for x in high) if bounded else (),
        )
    if isinstance(space, spaces.Discrete):
        return ActionSpec(kind="discrete", dim=1, nvec=(int(space.n),))
    if isinstance(space, spaces.MultiDiscrete):
        nvec = tuple(int(n) for n in np.asarray(space.nvec).reshape(-1))
        return ActionSpec(kind="multidiscrete", dim=len(nvec), nvec=nvec)
    if isinstance(space, spaces.MultiBinary):
        n = int(np.prod(space.shape))
        return ActionSpec(kind="multidiscrete", dim=n, nvec=(2,) * n)
    raise UserError(
        f"action space {type(space).__name__} ({space}) is not supported; "
        "supported: Box (continuous), Discrete, MultiDiscrete, MultiBinary"
    )
