"""The policy's side of one env step, behind one interface with two backends.

:class:`TorchActor` runs any policy module on the learner's device. :class:`NumpyActor` runs CPU
Gaussian MLPs through NumPy views of the same weights (:mod:`rlctl.agents.fast_inference`): at one env
step per call, torch's per-op dispatch costs more than the arithmetic of a small MLP. The collector
calls :meth:`PolicyActor.act` and writes what it returns, whichever backend it is.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from rlctl.agents.fast_inference import NumpyActorCritic
from rlctl.agents.fast_inference import supports as supports_numpy
from rlctl.agents.policies import Policy
from rlctl.agents.policy import ActorCritic
from rlctl.agents.recurrent import RecurrentActorCritic

Array = Any  # np.ndarray on a CPU rollout, torch.Tensor on the learner's device otherwise


class StepOut(NamedTuple):
    """What the policy did at one step, for every env: ``[N, ...]`` each."""

    norm_obs: Array  # the observation as the networks saw it (what the rollout stores)
    actions: Array  # the policy's sample (unclipped)
    env_actions: Array  # what the env receives (clipped into its bounds)
    logprobs_dims: Array  # per-factor behaviour log-probs of ``actions``
    values: Array  # V(s)


class PolicyActor(Protocol):
    def act(self, obs: np.ndarray) -> StepOut:
        """Update the observation normalizer with ``obs`` (policy-ready ``[N, ...]``), normalize, sample."""
        ...

    def logprobs_dims(self, norm_obs: Array, actions: np.ndarray) -> np.ndarray:
        """The policy's per-factor log-probs of given actions (``[k, D]`` policy actions) at ``norm_obs``."""
        ...


class TorchActor:
    """Any policy module, on its own device."""

    def __init__(self, agent: Policy, device: torch.device) -> None:
        self.agent, self.device = agent, device
        self.obs_rms = agent.obs_rms if isinstance(agent, ActorCritic) and agent.normalize_inputs else None

    def act(self, obs: np.ndarray) -> StepOut:
        x = torch.from_numpy(obs).to(self.device)
        if self.obs_rms is not None:
            self.obs_rms.update(x)
        norm_obs = self.agent.normalize_obs(x)
        dist, values = self.agent.dist_and_value(norm_obs)
        actions = dist.sample()
        return StepOut(norm_obs, actions, self.agent.to_env_action(actions), dist.log_prob_dims(actions), values)

    def logprobs_dims(self, norm_obs: Array, actions: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(norm_obs, device=self.device)
        return self.agent.dist(x).log_prob_dims(torch.as_tensor(actions, device=self.device)).cpu().numpy()


class NumpyActor:
    """CPU Gaussian MLPs in NumPy; the same float32 math and torch random stream as :class:`TorchActor`."""

    def __init__(self, agent: ActorCritic) -> None:
        self.fast = NumpyActorCritic(agent)
        self.obs_rms = agent.obs_rms if agent.normalize_inputs else None

    def act(self, obs: np.ndarray) -> StepOut:
        if self.obs_rms is not None:
            self.obs_rms.update_numpy(obs)
        norm_obs = self.fast.normalize(obs)
        actions, env_actions, logprobs_dims, values = self.fast.step(norm_obs)
        return StepOut(norm_obs, actions, env_actions, logprobs_dims, values)

    def logprobs_dims(self, norm_obs: Array, actions: np.ndarray) -> np.ndarray:
        return self.fast.logprobs_dims(np.asarray(norm_obs), actions)


class RecurrentActor:
    """A recurrent policy on its own device: one step for every env from the state the collector carries."""

    def __init__(self, agent: RecurrentActorCritic, device: torch.device) -> None:
        self.agent, self.device = agent, device
        self.obs_rms = agent.obs_rms if agent.normalize_inputs else None

    def act(self, obs: np.ndarray, state: torch.Tensor, starts: torch.Tensor) -> tuple[StepOut, torch.Tensor]:
        """:meth:`PolicyActor.act` from ``state`` (zeroed where ``starts``); also returns the state after it."""
        x = torch.from_numpy(obs).to(self.device)
        if self.obs_rms is not None:
            self.obs_rms.update(x)
        norm_obs = self.agent.normalize_obs(x)
        dist, values, state = self.agent.step(norm_obs, state, starts.to(self.device))
        actions = dist.sample()
        out = StepOut(norm_obs, actions, self.agent.to_env_action(actions), dist.log_prob_dims(actions), values)
        return out, state

    def value(self, obs: np.ndarray, state: torch.Tensor) -> torch.Tensor:
        """V of (policy-ready) observations continuing from ``state`` (time-limit bootstrap)."""
        norm_obs = self.agent.normalize_obs(torch.from_numpy(obs).to(self.device))
        return self.agent.step(norm_obs, state, torch.zeros(len(obs), dtype=torch.bool, device=self.device))[1]

    def logprobs_dims(self, norm_obs: Array, actions: np.ndarray) -> np.ndarray:
        raise RuntimeError("a recurrent policy's log-probs depend on its state (arbiter baselines refuse it)")


def policy_actor(agent: Policy, device: torch.device) -> PolicyActor:
    """The fastest backend that computes exactly what ``agent`` does on ``device``."""
    if device.type == "cpu" and supports_numpy(agent):
        return NumpyActor(agent)
    return TorchActor(agent, device)
