"""Where rollouts come from: this process (:mod:`.inline`), sampler processes (:mod:`.process`) or Ray
actors (:mod:`.ray_actors`), each stepping envs with a :class:`~rlctl.sampling.collector.Collector`.

Every sampler has the one interface :class:`Sampler`, so the training loop is the same for every backend.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from rlctl.agents.policies import Policy
from rlctl.agents.rollout import Rollout
from rlctl.config import Config, save_yaml
from rlctl.envs.make import make_vector_env
from rlctl.envs.reward import RewardFn
from rlctl.sampling.baseline import make_arbiter_baseline
from rlctl.sampling.collector import Collector, RolloutInfo
from rlctl.sampling.inline import InlineSampler
from rlctl.sampling.process import ProcessSampler
from rlctl.sampling.ray_actors import RaySampler
from rlctl.sampling.worker import start_settings, training_env_kwargs
from rlctl.spaces import SpaceAdapter


class Sampler(Protocol):
    """A source of rollouts.

    * ``publish(agent)`` — make the learner's current weights the ones the next collection uses;
    * ``launch(global_step)`` — start collecting the next rollout;
    * ``wait()`` — block until it is collected, return ``(rollout, info)``;
    * ``sync_stats(agent)`` — copy the samplers' normalizer statistics into the learner's module;
    * ``start_from(starts, now)`` — start the given envs' next episodes from snapshots
      (:mod:`rlctl.envs.snapshot`): at the next ``launch`` with ``now``, else at their next reset;
    * ``set_share(p)`` — the learner's share of the arbitration with a baseline (from the next ``launch``);
    * ``set_env_attr(name, value)`` — set an attribute of every env (``envs.set_attr``; the wrapper that has it),
      from the next ``launch`` on: how a demo curriculum moves its start point, and a randomization ramp its strength;
    * ``state_dict()`` / ``load_state_dict()`` — exact state for checkpoints (waits for a rollout in flight
      and keeps it, so a resumed run continues from precisely the same point).
    """

    @property
    def policy_lag(self) -> int:
        """Updates between the weights a rollout was collected with and the learner's (0, or 1 with overlap)."""
        ...

    @property
    def restarts(self) -> int:
        """Sampler workers restarted so far (lost, hung or raised)."""
        ...

    def publish(self, agent: Policy) -> None: ...
    def launch(self, global_step: int) -> None: ...
    def wait(self) -> tuple[Rollout, RolloutInfo]: ...
    def sync_stats(self, agent: Policy) -> None: ...
    def start_from(self, starts: dict[int, dict[str, Any]], now: bool = True) -> None: ...
    def set_share(self, share: float) -> None: ...
    def set_env_attr(self, name: str, value: Any) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def make_sampler(cfg: Config, agent: Policy, adapter: SpaceAdapter, template: Rollout, device: torch.device,
                 reward_fn: RewardFn | None = None) -> Sampler:
    """The rollout source the config asks for (``run.sampler``)."""
    if cfg.run.sampler == "ray":
        return RaySampler(save_yaml(cfg), agent, template, cfg.run.seed, cfg.run.overlap, reward_fn,
                          cfg.run.worker_timeout, cfg.run.max_worker_restarts, cfg.run.num_workers,
                          cfg.run.ray_address)
    if cfg.run.sampler == "process":
        return ProcessSampler(save_yaml(cfg), agent, template, cfg.run.seed, cfg.run.overlap, reward_fn,
                              cfg.run.worker_timeout, cfg.run.max_worker_restarts, cfg.run.num_workers)
    envs = make_vector_env(cfg.env.id, cfg.env.num_envs, cfg.env.vectorization, training_env_kwargs(cfg),
                           cfg.env.max_episode_steps, reward_fn=reward_fn, starts=start_settings(cfg))
    baseline = make_arbiter_baseline(cfg, envs, cfg.run.seed)
    collector = Collector(envs, agent, adapter, cfg.ppo, device, baseline=baseline)
    collector.reset(cfg.run.seed)
    return InlineSampler(collector, template)


__all__ = ["InlineSampler", "ProcessSampler", "RaySampler", "Sampler", "make_sampler"]
