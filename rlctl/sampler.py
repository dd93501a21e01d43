"""Where rollouts come from: in this process, or from a sampler process that overlaps with learning.

Both samplers have one interface, so the training loop is the same for every backend:

* ``publish(agent)`` — make the learner's current weights the ones the next collection uses;
* ``launch(global_step)`` — start collecting the next rollout;
* ``wait()`` — block until it is collected, return ``(rollout, info)``;
* ``state_dict()`` / ``load_state_dict()`` — exact state for checkpoints (waits for a rollout in flight
  and keeps it, so a resumed run continues from precisely the same point).

:class:`InlineSampler` collects inside ``wait()`` with the learner's own policy: serial, simplest,
the debugging mode. :class:`ProcessSampler` runs the envs *and* policy inference in one child process
with a CPU copy of the policy, writing transitions straight into shared-memory rollout tensors (nothing
is pickled per step). Inference sits with the envs rather than on the learner because on a CPU machine
the learner's core is busy updating; a per-step round trip to it would serialize the two again.

With ``overlap=True`` the trainer launches rollout i+1 *before* updating on rollout i, so the sampler
uses weights one update old (policy lag 1, logged as ``charts/policy_lag``). PPO's ratio uses the
behaviour log-probs stored at collection, so the objective stays the one the data was sampled under.
"""

from __future__ import annotations

import contextlib
import traceback
from typing import Any

import cloudpickle
import torch
import torch.multiprocessing as tmp

from agents.policy import ActorCritic
from agents.rollout import Rollout
from rlctl.collect import Collector, RolloutInfo

# Buffers the sampler owns (it updates them while collecting); everything else flows learner → sampler.
_SAMPLER_OWNED = ("obs_rms.", "reward_scaler.")


def _is_sampler_owned(key: str) -> bool:
    return key.startswith(_SAMPLER_OWNED)


class InlineSampler:
    """Collects in the calling thread with the learner's policy (no copy, no lag)."""

    policy_lag = 0
    restarts = 0

    def __init__(self, collector: Collector, rollout: Rollout) -> None:
        self.collector, self.rollout = collector, rollout
        self._step: int | None = None

    def publish(self, agent: ActorCritic) -> None:
        """Nothing to do: the collector holds the learner's own module."""

    def launch(self, global_step: int) -> None:
        self._step = global_step

    def wait(self) -> tuple[Rollout, RolloutInfo]:
        assert self._step is not None, "launch() first"
        info = self.collector.collect(self.rollout, self._step)
        self._step = None
        return self.rollout, info

    def state_dict(self) -> dict[str, Any]:
        return {"collector": self.collector.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.collector.load_state_dict(state["collector"])

    def close(self) -> None:
        self.collector.envs.close()


class SamplerLost(Exception):
    """The sampler process raised, died or hung; the learner restarts it."""


def _sampler_main(conn: Any, cfg_yaml: str, weights: list[dict[str, torch.Tensor]], stats: dict[str, torch.Tensor],
                  rollouts: list[Rollout], seed: int, reward_fn_bytes: bytes | None, restore_stats: bool) -> None:
    """Child process: build envs and a policy copy, then serve collect/state/load commands."""
    try:
        from envs.make import make_vector_env
        from rlctl.config import load_yaml
        from rlctl.spaces import adapter_for
        from rlctl.trainer import build_agent

        torch.set_num_threads(1)
        cfg = load_yaml(cfg_yaml)
        torch.manual_seed(seed)
        reward_fn = cloudpickle.loads(reward_fn_bytes) if reward_fn_bytes is not None else None
        envs = make_vector_env(cfg.env.id, cfg.env.num_envs, "sync", cfg.env.kwargs, cfg.env.max_episode_steps,
                               reward_fn=reward_fn)
        adapter = adapter_for(envs.single_observation_space, envs.single_action_space)
        agent = build_agent(cfg, adapter, torch.device("cpu"))
        collector = Collector(envs, agent, adapter, cfg.ppo, torch.device("cpu"))
        collector.reset(seed)
        conn.send(("ready", None))
    except BaseException:  # report start-up failures to the learner instead of dying silently
        conn.send(("error", traceback.format_exc()))
        return
    own = {k: v for k, v in agent.state_dict().items() if _is_sampler_owned(k)}
    if restore_stats:
        with torch.no_grad():
            for key, value in own.items():
                value.copy_(stats[key])
    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "collect":
                buf, slot, global_step = args
                with torch.no_grad():
                    for key, value in agent.state_dict().items():
                        if not _is_sampler_owned(key):
                            value.copy_(weights[slot][key])
                info = collector.collect(rollouts[buf], global_step)
                for key, value in own.items():
                    stats[key].copy_(value)
                conn.send(("ok", info))
            elif cmd == "state":
                conn.send(("ok", {"collector": collector.state_dict(), "rng": torch.get_rng_state(),
                                  "stats": {k: v.clone() for k, v in own.items()}}))
            elif cmd == "load":
                state = args[0]
                collector.load_state_dict(state["collector"])
                torch.set_rng_state(state["rng"])
                with torch.no_grad():
                    for key, value in own.items():
                        value.copy_(state["stats"][key])
                conn.send(("ok", None))
            elif cmd == "close":
                envs.close()
                conn.send(("ok", None))
                return
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class ProcessSampler:
    """Collects in a child process into shared-memory rollouts; see the module docstring."""

    def __init__(self, cfg_yaml: str, agent: ActorCritic, template: Rollout, seed: int, overlap: bool,
                 reward_fn: Any = None, timeout: float = 120.0, max_restarts: int = 3) -> None:
        self.policy_lag = 1 if overlap else 0
        self.restarts = 0
        self.timeout, self.max_restarts = timeout, max_restarts
        self._cfg_yaml, self._seed = cfg_yaml, seed
        self._reward_fn = cloudpickle.dumps(reward_fn) if reward_fn is not None else None
        state = {k: v.detach().cpu() for k, v in agent.state_dict().items()}
        # Two weight slots: the learner writes one while the sampler may still read the other.
        self.weights = [{k: v.clone().share_memory_() for k, v in state.items()} for _ in range(2)]
        self.stats = {k: v.clone().share_memory_() for k, v in state.items() if _is_sampler_owned(k)}
        self.rollouts = [_shared_like(template) for _ in range(2)]
        self._slot = 0
        self._buf = 0
        self._in_flight: int | None = None
        self._pending: tuple[int, RolloutInfo] | None = None
        self._last_command: tuple[Any, ...] | None = None
        self._start(restore_stats=False)
        self._reply(start_up=True)

    def _start(self, restore_stats: bool) -> None:
        # A restarted sampler gets fresh envs under a new seed and the normalizer statistics so far.
        ctx = tmp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sampler_main, daemon=True,
                                args=(child, self._cfg_yaml, self.weights, self.stats, self.rollouts,
                                      self._seed + 7919 * self.restarts, self._reward_fn, restore_stats))
        self.proc.start()
        child.close()

    def _reply(self, start_up: bool = False) -> Any:
        """The child's answer; start-up failures raise, later failures raise :class:`SamplerLost`."""
        timeout = 600.0 if start_up else self.timeout
        try:
            if not self.conn.poll(timeout):
                raise SamplerLost(f"no answer within {timeout:.0f} s (hung?)")
            status, payload = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise SamplerLost(f"the sampler process died (exit code {self.proc.exitcode})") from exc
        if status == "error":
            if start_up:
                raise RuntimeError(f"sampler process failed to start:\n{payload}")
            raise SamplerLost(payload)
        return payload

    def _send(self, *command: Any) -> None:
        self._last_command = command
        with contextlib.suppress(BrokenPipeError, OSError):  # a dead process shows up in the reply
            self.conn.send(command)

    def _recover(self, reason: SamplerLost) -> None:
        """Kill and restart the sampler (its partial rollout is discarded), then repeat the last command."""
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise RuntimeError(f"sampler process failed {self.restarts} times (run.max_worker_restarts = "
                               f"{self.max_restarts}); last failure:\n{reason}") from None
        print(f"rlctl: sampler process lost ({str(reason).strip().splitlines()[-1]}); restart "
              f"{self.restarts}/{self.max_restarts} with fresh envs", flush=True)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=10)
        self._start(restore_stats=True)
        self._reply(start_up=True)
        assert self._last_command is not None
        self._send(*self._last_command)

    def _call(self) -> Any:
        """Wait for the answer to the last command, restarting the sampler as often as allowed."""
        while True:
            try:
                return self._reply()
            except SamplerLost as lost:
                self._recover(lost)

    def publish(self, agent: ActorCritic) -> None:
        self._slot = 1 - self._slot
        with torch.no_grad():
            for key, value in agent.state_dict().items():
                if not _is_sampler_owned(key):
                    self.weights[self._slot][key].copy_(value)

    def launch(self, global_step: int) -> None:
        if self._pending is not None:  # restored from a checkpoint: that rollout is already here
            return
        self._buf = 1 - self._buf
        self._send("collect", self._buf, self._slot, global_step)
        self._in_flight = self._buf

    def _finish(self) -> tuple[int, RolloutInfo]:
        if self._pending is None:
            assert self._in_flight is not None, "launch() first"
            self._pending = (self._in_flight, self._call())
            self._in_flight = None
        return self._pending

    def wait(self) -> tuple[Rollout, RolloutInfo]:
        buf, info = self._finish()
        self._pending = None
        return self.rollouts[buf], info

    def sync_stats(self, agent: ActorCritic) -> None:
        """Copy the sampler's normalizer statistics into the learner's module (for eval and checkpoints)."""
        with torch.no_grad():
            for key, value in agent.state_dict().items():
                if _is_sampler_owned(key):
                    value.copy_(self.stats[key])

    def state_dict(self) -> dict[str, Any]:
        pending = None
        if self._in_flight is not None or self._pending is not None:
            buf, info = self._finish()
            pending = {"rollout": {k: v.clone() for k, v in vars(self.rollouts[buf]).items()},
                       "info": info.to_plain()}
        self._send("state")
        return {"sampler": self._call(), "pending": pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._send("load", state["sampler"])
        self._call()
        if state["pending"] is not None:
            for key, value in state["pending"]["rollout"].items():
                getattr(self.rollouts[0], key).copy_(value)
            self._buf = 0
            self._pending = (0, RolloutInfo.from_plain(state["pending"]["info"]))

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(("close",))
                self._reply()
            except (OSError, EOFError, SamplerLost):
                pass
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.kill()


def _shared_like(template: Rollout) -> Rollout:
    return Rollout(**{k: torch.zeros_like(v, device="cpu").share_memory_() for k, v in vars(template).items()})
