"""Sampler processes: K child processes, each stepping a slice of the envs with a CPU copy of the policy.

Workers write transitions straight into shared-memory rollout tensors (nothing is pickled per step).
Inference sits with the envs rather than on the learner because on a CPU machine the learner's core is
busy updating; a per-step round trip to it would serialize the two again.

With ``overlap=True`` the trainer launches rollout i+1 *before* updating on rollout i, so the sampler
uses weights one update old (policy lag 1, logged as ``charts/policy_lag``). PPO's ratio uses the
behaviour log-probs stored at collection, so the objective stays the one the data was sampled under.
"""
from __future__ import annotations

import contextlib
import signal
import traceback
from typing import Any

import cloudpickle
import torch
import torch.multiprocessing as tmp

from rlctl.agents.policies import Policy
from rlctl.agents.rollout import Rollout
from rlctl.envs.errors import EnvError
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


class SamplerLost(Exception):
    """A sampler process raised, died or hung; the learner restarts it."""


def _sampler_main(conn: Any, cfg_yaml: str, weights: list[dict[str, torch.Tensor]],
                  stats_in: dict[str, torch.Tensor], stats_out: dict[str, torch.Tensor], rollouts: list[Rollout],
                  env_slice: tuple[int, int], seed: int, reward_fn_bytes: bytes | None) -> None:
    """Child process: envs ``[start, start + count)`` and a policy copy; serves collect/state/load."""
    # Ctrl-C reaches the whole process group; the learner decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    start, count = env_slice
    try:
        collector = build_worker(cfg_yaml, env_slice, seed, reward_fn_bytes)
        agent, envs = collector.agent, collector.envs
        columns = [Rollout(**{k: v[:, start:start + count] for k, v in vars(r).items()}) for r in rollouts]
        conn.send(("ready", None))
    except (UserError, EnvError) as exc:  # a user's mistake: one line, no restart
        conn.send(("user_error", str(exc)))
        return
    except BaseException:  # report start-up failures to the learner instead of dying silently
        conn.send(("error", traceback.format_exc()))
        return
    own = {k: v for k, v in agent.state_dict().items() if is_sampler_owned(k)}
    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "collect":
                buf, slot, global_step, part = args
                prepare(collector, part)
                load_worker_weights(agent, weights[slot], stats_in)
                info = collector.collect(columns[buf], global_step)
                for key, value in own.items():
                    stats_out[key].copy_(value)
                conn.send(("ok", info))
            elif cmd == "state":
                conn.send(("ok", {"collector": collector.state_dict(), "rng": torch.get_rng_state()}))
            elif cmd == "load":
                collector.load_state_dict(args[0]["collector"])
                torch.set_rng_state(args[0]["rng"])
                conn.send(("ok", None))
            elif cmd == "close":
                envs.close()
                conn.send(("ok", None))
                return
        except (UserError, EnvError) as exc:
            conn.send(("user_error", str(exc)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class _Worker:
    """One sampler process, its pipe, and what it takes to restart it."""

    def __init__(self, index: int, env_slice: tuple[int, int], launch: Any, timeout: float) -> None:
        self.index, self.env_slice, self._launch, self.timeout = index, env_slice, launch, timeout
        self.generation = 0
        self.last_command: tuple[Any, ...] | None = None
        self.start()

    def start(self) -> None:
        # A restarted worker gets fresh envs under a new seed; its statistics come from the learner.
        self.conn, self.proc = self._launch(self.env_slice, 7919 * self.generation)
        self.reply(start_up=True)

    def send(self, *command: Any) -> None:
        self.last_command = command
        with contextlib.suppress(BrokenPipeError, OSError):  # a dead process shows up in the reply
            self.conn.send(command)

    def reply(self, start_up: bool = False) -> Any:
        """The child's answer; start-up failures raise, later failures raise :class:`SamplerLost`."""
        timeout = 600.0 if start_up else self.timeout
        try:
            if not self.conn.poll(timeout):
                raise SamplerLost(f"no answer within {timeout:.0f} s (hung?)")
            status, payload = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise SamplerLost(f"the sampler process died (exit code {self.proc.exitcode})") from exc
        if status == "user_error":
            raise UserError(payload)
        if status == "error":
            if start_up:
                raise RuntimeError(f"sampler process failed to start:\n{payload}")
            raise SamplerLost(payload)
        return payload

    def restart(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=10)
        self.generation += 1
        self.start()
        assert self.last_command is not None
        self.send(*self.last_command)

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(("close",))
                self.reply()
            except (OSError, EOFError, SamplerLost):
                pass
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.kill()


class ProcessSampler(QueuesRequests):
    """Collects in ``num_workers`` child processes into shared-memory rollouts; see the module docstring.

    Worker k steps envs ``[k·n, (k+1)·n)`` (n = num_envs / num_workers) and writes those columns of the
    shared rollout. Normalizer statistics: every worker starts a rollout from the learner's global
    statistics and updates its own copy per step; afterwards the learner recovers each worker's increment
    exactly (un-merging the running moments) and merges them all. With one worker that is the inline
    per-step scheme, bit for bit.
    """

    def __init__(self, cfg_yaml: str, agent: Policy, template: Rollout, seed: int, overlap: bool,
                 reward_fn: Any = None, timeout: float = 120.0, max_restarts: int = 3, num_workers: int = 1) -> None:
        self.policy_lag = 1 if overlap else 0
        self.budget = RestartBudget(max_restarts)
        num_envs = template.rewards.shape[1]
        if num_envs % num_workers:
            raise ValueError(f"num_envs ({num_envs}) must be a multiple of num_workers ({num_workers})")
        state = {k: v.detach().cpu() for k, v in agent.state_dict().items()}
        # Two weight slots: the learner writes one while the workers may still read the other.
        self.weights = [{k: v.clone().share_memory_() for k, v in state.items()} for _ in range(2)]
        self.stats_in = {k: v.clone().share_memory_() for k, v in state.items() if is_sampler_owned(k)}
        self.stats_out = [{k: v.clone().share_memory_() for k, v in self.stats_in.items()}
                          for _ in range(num_workers)]
        self.rollouts = [_shared_like(template) for _ in range(2)]
        self._slot = 0
        self._buf = 0
        self._in_flight: int | None = None
        self._pending: tuple[int, RolloutInfo] | None = None
        self.next = NextCollect()
        reward_bytes = cloudpickle.dumps(reward_fn) if reward_fn is not None else None
        ctx = tmp.get_context("spawn")

        def launch(index: int) -> Any:
            def start(env_slice: tuple[int, int], seed_offset: int) -> tuple[Any, Any]:
                conn, child = ctx.Pipe()
                proc = ctx.Process(target=_sampler_main, daemon=True,
                                   args=(child, cfg_yaml, self.weights, self.stats_in, self.stats_out[index],
                                         self.rollouts, env_slice, seed + seed_offset, reward_bytes))
                proc.start()
                child.close()
                return conn, proc
            return start

        n = num_envs // num_workers
        self.workers = [_Worker(k, (k * n, n), launch(k), timeout) for k in range(num_workers)]

    def _call(self, worker: _Worker) -> Any:
        """Wait for ``worker``'s answer to its last command, restarting it as often as allowed."""
        while True:
            try:
                return worker.reply()
            except SamplerLost as lost:
                self.budget.spend(f"sampler worker {worker.index}", str(lost))
                worker.restart()

    @property
    def restarts(self) -> int:
        return self.budget.count

    def publish(self, agent: Policy) -> None:
        self._slot = 1 - self._slot
        with torch.no_grad():
            for key, value in agent.state_dict().items():
                if not is_sampler_owned(key):
                    self.weights[self._slot][key].copy_(value)

    def launch(self, global_step: int) -> None:
        if self._pending is not None:  # restored from a checkpoint: that rollout is already here
            return
        self._buf = 1 - self._buf
        for worker in self.workers:
            worker.send("collect", self._buf, self._slot, global_step, self.next.take(*worker.env_slice))
        self._in_flight = self._buf

    def _finish(self) -> tuple[int, RolloutInfo]:
        if self._pending is None:
            assert self._in_flight is not None, "launch() first"
            infos = [self._call(worker) for worker in self.workers]
            merge_worker_stats(self.stats_in, self.stats_out)
            self._pending = (self._in_flight, combine_infos(infos))
            self._in_flight = None
        return self._pending

    def wait(self) -> tuple[Rollout, RolloutInfo]:
        buf, info = self._finish()
        self._pending = None
        return self.rollouts[buf], info

    def sync_stats(self, agent: Policy) -> None:
        copy_stats(agent, self.stats_in)

    def state_dict(self) -> dict[str, Any]:
        pending = None
        if self._in_flight is not None or self._pending is not None:
            buf, info = self._finish()
            pending = pack_pending(self.rollouts[buf], info)
        for worker in self.workers:
            worker.send("state")
        workers = [self._call(worker) for worker in self.workers]
        return {"workers": workers, "stats": {k: v.clone() for k, v in self.stats_in.items()}, "pending": pending,
                "next": self.next.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["workers"]) != len(self.workers):
            raise ValueError(f"checkpoint has {len(state['workers'])} sampler workers, config {len(self.workers)}")
        for worker, worker_state in zip(self.workers, state["workers"], strict=True):
            worker.send("load", worker_state)
        for worker in self.workers:
            self._call(worker)
        with torch.no_grad():
            for key, value in self.stats_in.items():
                value.copy_(state["stats"][key])
        self.next.load(state.get("next"))
        if state["pending"] is not None:
            self._buf = 0
            self._pending = (0, unpack_pending(state["pending"], self.rollouts[0]))

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def _shared_like(template: Rollout) -> Rollout:
    return Rollout(**{k: torch.zeros_like(v, device="cpu").share_memory_() for k, v in vars(template).items()})
