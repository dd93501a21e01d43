"""What the process and Ray samplers share: building a worker, moving weights and normalizer statistics,
and combining the workers' slices of a rollout."""

from __future__ import annotations

from typing import Any, cast

import cloudpickle
import torch

from rlctl.agents.policies import Policy
from rlctl.agents.rollout import Rollout
from rlctl.config import Config
from rlctl.envs.demo_start import StartSettings
from rlctl.sampling.collector import Collector, RolloutInfo

# Buffers the sampler owns (it updates them while collecting); everything else flows learner → sampler.
_SAMPLER_OWNED = ("obs_rms.", "reward_scaler.")


def is_sampler_owned(key: str) -> bool:
    """Whether a policy ``state_dict`` key is a normalizer statistic (updated by the samplers, not the learner)."""
    return key.startswith(_SAMPLER_OWNED)


def start_settings(cfg: Config) -> StartSettings | None:
    """The env layer's view of ``cfg.curriculum``: where episodes start (None without demos)."""
    c = cfg.curriculum
    if not c.demos:
        return None
    return StartSettings(tuple(c.demos), c.window, c.frac_sample, c.warmup_steps, c.extra_steps, c.start_back)


def training_env_kwargs(cfg: Config) -> dict[str, Any]:
    """The kwargs the samplers build their envs with: ``cfg.env.kwargs``, and with a randomization ramp the
    strength it starts from (so the first episodes, reset before any rollout, fly it too). Evaluation envs
    take ``cfg.env.kwargs`` alone: full strength."""
    if cfg.env.randomization_ramp <= 0:
        return cfg.env.kwargs
    return {**cfg.env.kwargs, "sim2real_strength": cfg.env.randomization_start}


def build_worker(cfg_yaml: str, env_slice: tuple[int, int], seed: int, reward_fn_bytes: bytes | None) -> Collector:
    """A sampler worker's envs ``[start, start + count)``, CPU policy copy and collector."""
    from rlctl.config import load_yaml
    from rlctl.envs.make import make_vector_env
    from rlctl.runs import build_agent
    from rlctl.sampling.baseline import make_arbiter_baseline
    from rlctl.spaces import adapter_for_env

    start, count = env_slice
    torch.set_num_threads(1)
    cfg = load_yaml(cfg_yaml)
    torch.manual_seed(seed + 104_729 * start)
    reward_fn = cloudpickle.loads(reward_fn_bytes) if reward_fn_bytes is not None else None
    vectorization = "envpool" if cfg.env.vectorization == "envpool" else "sync"  # a worker is one process already
    envs = make_vector_env(cfg.env.id, count, vectorization, training_env_kwargs(cfg), cfg.env.max_episode_steps,
                           reward_fn=reward_fn, starts=start_settings(cfg))
    adapter = adapter_for_env(envs)
    agent = build_agent(cfg, adapter, torch.device("cpu"))
    collector = Collector(envs, agent, adapter, cfg.ppo, torch.device("cpu"), steps_per_row=cfg.env.num_envs,
                          baseline=make_arbiter_baseline(cfg, envs, seed + start))
    collector.reset(seed + start)  # env i of the whole vector is seeded with seed + i, as inline
    return collector


def load_worker_weights(agent: Policy, weights: dict[str, Any], stats: dict[str, Any]) -> None:
    """Learner weights and global normalizer statistics into a worker's policy copy."""
    with torch.no_grad():
        for key, value in agent.state_dict().items():
            source = stats[key] if is_sampler_owned(key) else weights[key]
            value.copy_(torch.as_tensor(source))


def copy_stats(agent: Policy, stats: dict[str, torch.Tensor]) -> None:
    """The global normalizer statistics into the learner's module (for eval, export and checkpoints)."""
    with torch.no_grad():
        for key, value in agent.state_dict().items():
            if is_sampler_owned(key):
                value.copy_(stats[key])


def pack_pending(rollout: Rollout, info: RolloutInfo) -> dict[str, Any]:
    """A collected but not yet learned-on rollout, as checkpoint data."""
    return {"rollout": {k: v.clone() for k, v in vars(rollout).items()}, "info": info.to_plain()}


def unpack_pending(pending: dict[str, Any], rollout: Rollout) -> RolloutInfo:
    """Put a checkpointed pending rollout back into ``rollout``; returns its info."""
    for key, value in pending["rollout"].items():
        getattr(rollout, key).copy_(value)
    return RolloutInfo.from_plain(pending["info"])


def combine_infos(infos: list[RolloutInfo]) -> RolloutInfo:
    """One RolloutInfo from the workers' (equal-sized) slices."""
    episodes = sorted((e for info in infos for e in info.episodes), key=lambda e: e.step)
    names = sorted({name for info in infos for name in info.reward_components})
    timing = {key: max(i.timing.get(key, 0.0) for i in infos) for key in infos[0].timing}  # workers run in parallel
    arbiter = {key: sum(i.arbiter.get(key, 0.0) for i in infos) / len(infos) for key in infos[0].arbiter}
    return RolloutInfo(episodes, {name: sum(i.reward_components.get(name, 0.0) for i in infos) / len(infos)
                                  for name in names}, timing, arbiter)


def merge_worker_stats(global_stats: dict[str, torch.Tensor], outs: list[dict[str, torch.Tensor]]) -> None:
    """Fold every worker's statistics increment into ``global_stats`` in place.

    Each worker started from ``global_stats`` and updated its copy per step; its increment is recovered
    exactly by un-merging. A single worker's statistics simply become the global ones (bit for bit).
    """
    with torch.no_grad():
        if len(outs) == 1:
            for key, value in global_stats.items():
                value.copy_(torch.as_tensor(outs[0][key]))
            return
        for prefix in {key.rsplit(".", 1)[0] for key in global_stats}:
            base = tuple(global_stats[f"{prefix}.{k}"].clone() for k in ("mean", "var", "count"))
            merged: Moments = base  # type: ignore[assignment]
            for out in outs:
                whole = tuple(torch.as_tensor(out[f"{prefix}.{k}"]) for k in ("mean", "var", "count"))
                merged = merge_moments(merged, unmerge_moments(whole, base))  # type: ignore[arg-type]
            for k, value in zip(("mean", "var", "count"), merged, strict=True):
                global_stats[f"{prefix}.{k}"].copy_(value)


class RestartBudget:
    """Counts sampler-worker restarts; past ``run.max_worker_restarts`` it stops training with the failure."""

    def __init__(self, limit: int) -> None:
        self.count, self.limit = 0, limit

    def spend(self, worker: str, failure: str) -> None:
        self.count += 1
        if self.count > self.limit:
            raise RuntimeError(f"{worker} failed {self.count} times (run.max_worker_restarts = {self.limit}); "
                               f"last failure:\n{failure}") from None
        last_line = failure.strip().splitlines()[-1] if failure.strip() else failure
        print(f"rlctl: {worker} lost ({last_line}); restart {self.count}/{self.limit} with fresh envs", flush=True)


Moments = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Mean, variance and count of the union of two samples (Chan et al.'s parallel formula)."""
    (ma, va, ca), (mb, vb, cb) = a, b
    total = ca + cb
    if float(cb) == 0.0:
        return a
    delta = mb - ma
    mean = ma + delta * cb / total
    m2 = va * ca + vb * cb + delta.pow(2) * ca * cb / total
    return mean, m2 / total, total


def unmerge_moments(whole: Moments, part: Moments) -> Moments:
    """The moments of ``whole`` minus the sample ``part`` it was built on (inverse of :func:`merge_moments`)."""
    (m1, v1, c1), (m0, v0, c0) = whole, part
    count = c1 - c0
    if float(count) <= 0.0:
        return torch.zeros_like(m1), torch.ones_like(v1), torch.zeros_like(c1)
    mean = (c1 * m1 - c0 * m0) / count
    m2 = v1 * c1 - v0 * c0 - (mean - m0).pow(2) * c0 * count / c1
    return mean, torch.clamp(m2 / count, min=0.0), count


class NextCollect:
    """What the trainer asks of the next collection: episode starts (``start_from``), the learner's share
    of the arbitration (``set_share``) and env attributes (``set_env_attr``), held until the next launch hands
    each worker its part."""

    def __init__(self) -> None:
        self.starts: dict[bool, dict[int, dict[str, Any]]] = {True: {}, False: {}}
        self.share: float | None = None
        self.env_attrs: dict[str, Any] = {}

    def add(self, starts: dict[int, dict[str, Any]], now: bool) -> None:
        self.starts[now].update(starts)

    def take(self, first: int, count: int) -> dict[str, Any]:
        """The part for envs ``[first, first + count)``, re-indexed from 0; the starts leave the queue."""
        out: dict[bool, dict[int, dict[str, Any]]] = {True: {}, False: {}}
        for now, starts in self.starts.items():
            for i in [i for i in starts if first <= i < first + count]:
                out[now][i - first] = starts.pop(i)
        return {"starts": out, "share": self.share, "env_attrs": dict(self.env_attrs)}

    def state_dict(self) -> dict[str, Any]:
        return {"starts": self.starts, "share": self.share, "env_attrs": dict(self.env_attrs)}

    def load(self, state: dict[str, Any] | None) -> None:
        """What a checkpoint saved (none in checkpoints of older versions)."""
        state = state or {}
        starts = state.get("starts", {})
        self.starts = {True: dict(starts.get(True, {})), False: dict(starts.get(False, {}))}
        self.share = state.get("share")
        self.env_attrs = dict(state.get("env_attrs", {}))


class QueuesRequests:
    """The :class:`~rlctl.sampling.Sampler` requests every sampler queues in its ``next`` (a :class:`NextCollect`)
    until the next launch: episode starts, the arbitration share, env attributes."""

    next: NextCollect

    def start_from(self, starts: dict[int, dict[str, Any]], now: bool = True) -> None:
        self.next.add(starts, now)

    def set_share(self, share: float) -> None:
        self.next.share = share

    def set_env_attr(self, name: str, value: Any) -> None:
        self.next.env_attrs[name] = value


def prepare(collector: Collector, part: dict[str, Any]) -> None:
    """A worker's part of a :class:`NextCollect`, applied before it collects."""
    for now, envs_starts in part["starts"].items():
        collector.start_from(envs_starts, now=now)
    if part["share"] is not None and collector.baseline is not None:
        collector.baseline.set_share(part["share"])
    for name, value in part.get("env_attrs", {}).items():  # the same value in every env (a curriculum's start)
        cast(Any, collector.envs).set_attr(name, value)
