"""Sampler workers as Ray actors: the same workers as :class:`rlctl.sampling.process.ProcessSampler`, past one machine.

The learner stays on the driver (GPU if present). Each actor (one CPU each) steps a slice of the envs
with a CPU policy copy; weights and the global normalizer statistics go out through Ray's object store
(one ``ray.put`` per update, shared by all actors), rollout columns come back as NumPy arrays (zero-copy
on the same node). Ray restarts a dead actor (``max_restarts``); the learner re-submits its rollout,
so no update is lost, and kills an actor that hangs past ``run.worker_timeout``.

Run on a cluster: ``ray start --head`` on one machine, ``ray start --address HEAD:6379`` on the others,
then ``rlctl train ... --backend ray --ray-address HEAD:6379 --num-workers N``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import cloudpickle
import numpy as np
import torch

from rlctl.agents.policies import Policy, state_size
from rlctl.agents.rollout import Rollout
from rlctl.errors import UserError
from rlctl.sampling.collector import RolloutInfo
from rlctl.sampling.worker import (
    NextCollect,
    QueuesRequests,
    RestartBudget,
    build_worker,
    combine_infos,
    copy_stats,
    is_sampler_owned,
    load_worker_weights,
    merge_worker_stats,
    pack_pending,
    prepare,
    unpack_pending,
)
from rlctl.spaces import rollout_for


class _RayWorker:
    """Actor body (wrapped with ``ray.remote`` at runtime, so importing this module needs no Ray)."""

    def __init__(self, cfg_yaml: str, env_slice: tuple[int, int], seed: int, reward_fn_bytes: bytes | None,
                 num_steps: int) -> None:
        self.collector = build_worker(cfg_yaml, env_slice, seed, reward_fn_bytes)
        agent, adapter = self.collector.agent, self.collector.adapter
        self.rollout = rollout_for(adapter, num_steps, env_slice[1], torch.device("cpu"), state_size(agent))
        self.own = {k: v for k, v in agent.state_dict().items() if is_sampler_owned(k)}

    def collect(self, weights: dict[str, np.ndarray], stats: dict[str, np.ndarray], global_step: int,
                part: dict[str, Any]) -> tuple[dict[str, np.ndarray], RolloutInfo, dict[str, np.ndarray]]:
        prepare(self.collector, part)
        load_worker_weights(self.collector.agent, weights, stats)
        info = self.collector.collect(self.rollout, global_step)
        arrays = {k: v.numpy().copy() for k, v in vars(self.rollout).items()}
        return arrays, info, {k: v.numpy().copy() for k, v in self.own.items()}

    def state(self) -> dict[str, Any]:
        return {"collector": self.collector.state_dict(), "rng": torch.get_rng_state()}

    def where(self) -> str:
        """The node this actor runs on: its id (short) and address."""
        import ray

        return f"node {ray.get_runtime_context().get_node_id()[:8]} ({ray.util.get_node_ip_address()})"

    def load(self, state: dict[str, Any]) -> None:
        self.collector.load_state_dict(state["collector"])
        torch.set_rng_state(state["rng"])


def connect_ray(address: str | None, needed_by: str) -> tuple[Any, Callable[[], None]]:
    """Ray, joined to the cluster at ``address`` (none: a private local cluster on loopback), and what disconnects
    again: it shuts Ray down only if this call started or joined it, and undoes the private cluster's settings."""
    try:
        import ray
    except ImportError:
        raise UserError(f"{needed_by} needs Ray: pip install 'rlctl[ray]'") from None
    if ray.is_initialized():  # a caller's own Ray session: use it, leave it running
        return ray, lambda: None
    if address:
        ray.init(address=address, log_to_driver=False)
        return ray, ray.shutdown
    undo = _init_private_cluster(ray)

    def disconnect() -> None:
        ray.shutdown()
        undo()

    return ray, disconnect


ENV_SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _init_private_cluster(ray: Any) -> Callable[[], None]:
    """Start a local cluster that stays on loopback; returns what undoes its settings after ``ray.shutdown``.

    Ray swaps 127.0.0.1 for the machine's routable address unless its single-machine mode is on. The variable
    must reach the processes ``ray.init`` starts (they pass it on to the workers), so it is set around the call
    and then put back; the module constant stays off while the cluster lives (driver-side lookups read it)."""
    from ray._private import ray_constants

    before_env, before_const = os.environ.get(ENV_SINGLE_MACHINE), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ENV_SINGLE_MACHINE] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    finally:
        if before_env is None:
            os.environ.pop(ENV_SINGLE_MACHINE, None)
        else:
            os.environ[ENV_SINGLE_MACHINE] = before_env

    def undo() -> None:
        ray_constants.ENABLE_RAY_CLUSTER = before_const

    return undo


class RaySampler(QueuesRequests):
    """Same interface as the other samplers (publish / launch / wait / state_dict / load_state_dict)."""

    def __init__(self, cfg_yaml: str, agent: Policy, template: Rollout, seed: int, overlap: bool,
                 reward_fn: Any = None, timeout: float = 120.0, max_restarts: int = 3, num_workers: int = 1,
                 address: str | None = None) -> None:
        ray, self._disconnect = connect_ray(address, "run.sampler=ray (--backend ray)")
        self.ray = ray
        self.policy_lag = 1 if overlap else 0
        self.budget = RestartBudget(max_restarts)
        self.timeout = timeout
        num_steps, num_envs = template.rewards.shape
        if num_envs % num_workers:
            raise ValueError(f"num_envs ({num_envs}) must be a multiple of num_workers ({num_workers})")
        self.rollout = template
        self.stats = {k: v.detach().cpu().clone() for k, v in agent.state_dict().items() if is_sampler_owned(k)}
        # SPREAD: one worker per node while there are nodes, so a cluster's cores all collect
        actor = ray.remote(num_cpus=1, max_restarts=max_restarts, scheduling_strategy="SPREAD")(_RayWorker)
        reward_bytes = cloudpickle.dumps(reward_fn) if reward_fn is not None else None
        n = num_envs // num_workers
        self.slices = [(k * n, n) for k in range(num_workers)]
        self.workers = [actor.remote(cfg_yaml, sl, seed, reward_bytes, num_steps) for sl in self.slices]
        places = ray.get([w.where.remote() for w in self.workers])
        print("rlctl: ray sampler workers: " + ", ".join(f"{i} on {place}" for i, place in enumerate(places)),
              flush=True)
        self._weights_ref: Any = None
        self._futures: list[Any] | None = None
        self._args: list[tuple[Any, ...]] = []
        self.next = NextCollect()
        self._pending: RolloutInfo | None = None

    def publish(self, agent: Policy) -> None:
        weights = {k: v.detach().cpu().numpy() for k, v in agent.state_dict().items() if not is_sampler_owned(k)}
        self._weights_ref = self.ray.put(weights)

    def launch(self, global_step: int) -> None:
        if self._pending is not None:  # restored from a checkpoint: that rollout is already here
            return
        stats_ref = self.ray.put({k: v.numpy() for k, v in self.stats.items()})
        self._args = [(self._weights_ref, stats_ref, global_step, self.next.take(*sl)) for sl in self.slices]
        self._futures = [w.collect.remote(*args) for w, args in zip(self.workers, self._args, strict=True)]

    def _get(self, index: int) -> Any:
        """One worker's result, restarting the worker and re-submitting as often as allowed."""
        ray = self.ray
        assert self._futures is not None
        lost_since: float | None = None  # when this worker was first seen dead or restarting
        while True:
            try:
                result = ray.get(self._futures[index], timeout=self.timeout)
                if lost_since is not None:
                    place = ray.get(self.workers[index].where.remote())
                    print(f"rlctl: ray sampler worker {index} restarted on {place} (restarts so far: {self.restarts})",
                          flush=True)
                return result
            except ray.exceptions.RayActorError as err:
                # Dead or restarting (ActorUnavailableError): Ray re-runs its constructor. The first
                # sighting is the failure; later ones are the same restart still in progress.
                if lost_since is None:
                    lost_since = time.monotonic()
                    self._count_failure(index, err)
                elif time.monotonic() - lost_since > self.timeout:
                    raise RuntimeError(f"Ray worker {index} did not come back within {self.timeout:.0f} s") from None
                time.sleep(0.2)
            except (ray.exceptions.GetTimeoutError, ray.exceptions.RayTaskError) as err:
                # Hung, or raised mid-rollout: kill it so that Ray restarts it with fresh envs.
                self._count_failure(index, err)
                ray.kill(self.workers[index], no_restart=False)
                lost_since = time.monotonic()
            self._futures[index] = self.workers[index].collect.remote(*self._args[index])

    def _count_failure(self, index: int, exc: Exception) -> None:
        self.budget.spend(f"Ray sampler worker {index}", f"{type(exc).__name__}: {exc}")

    @property
    def restarts(self) -> int:
        return self.budget.count

    def _finish(self) -> RolloutInfo:
        if self._pending is None:
            assert self._futures is not None, "launch() first"
            results = [self._get(i) for i in range(len(self.workers))]
            with warnings.catch_warnings():  # Ray hands out read-only arrays; they are only read here
                warnings.simplefilter("ignore", UserWarning)
                for (start, count), (arrays, _, _) in zip(self.slices, results, strict=True):
                    for key, value in arrays.items():
                        getattr(self.rollout, key)[:, start:start + count].copy_(torch.from_numpy(value))
            merge_worker_stats(self.stats, [stats for _, _, stats in results])
            self._pending = combine_infos([info for _, info, _ in results])
            self._futures = None
        return self._pending

    def wait(self) -> tuple[Rollout, RolloutInfo]:
        info = self._finish()
        self._pending = None
        return self.rollout, info

    def sync_stats(self, agent: Policy) -> None:
        copy_stats(agent, self.stats)

    def state_dict(self) -> dict[str, Any]:
        pending = None
        if self._futures is not None or self._pending is not None:
            pending = pack_pending(self.rollout, self._finish())
        workers = self.ray.get([w.state.remote() for w in self.workers])
        return {"workers": workers, "stats": {k: v.clone() for k, v in self.stats.items()}, "pending": pending,
                "next": self.next.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["workers"]) != len(self.workers):
            raise ValueError(f"checkpoint has {len(state['workers'])} sampler workers, config {len(self.workers)}")
        self.ray.get([w.load.remote(s) for w, s in zip(self.workers, state["workers"], strict=True)])
        for key, value in self.stats.items():
            value.copy_(state["stats"][key])
        self.next.load(state.get("next"))
        if state["pending"] is not None:
            self._pending = unpack_pending(state["pending"], self.rollout)

    def close(self) -> None:
        for worker in self.workers:
            self.ray.kill(worker, no_restart=True)
        self._disconnect()
        self._disconnect = lambda: None
