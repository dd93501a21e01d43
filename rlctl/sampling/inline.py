"""The serial sampler: collect in the learner's own process with its own policy (the debugging mode)."""

from __future__ import annotations

from typing import Any

from rlctl.agents.policies import Policy
from rlctl.agents.rollout import Rollout
from rlctl.sampling.collector import Collector, RolloutInfo
from rlctl.sampling.worker import NextCollect, QueuesRequests, prepare


class InlineSampler(QueuesRequests):
    """Collects in the calling thread with the learner's policy (no copy, no lag)."""

    policy_lag = 0
    restarts = 0

    def __init__(self, collector: Collector, rollout: Rollout) -> None:
        self.collector, self.rollout = collector, rollout
        self._step: int | None = None
        self.next = NextCollect()

    def publish(self, agent: Policy) -> None:
        """Nothing to do: the collector holds the learner's own module."""

    def sync_stats(self, agent: Policy) -> None:
        """Nothing to do: the collector updates the learner's own normalizers."""

    def launch(self, global_step: int) -> None:
        prepare(self.collector, self.next.take(0, self.collector.envs.num_envs))
        self._step = global_step

    def wait(self) -> tuple[Rollout, RolloutInfo]:
        assert self._step is not None, "launch() first"
        info = self.collector.collect(self.rollout, self._step)
        self._step = None
        return self.rollout, info

    def state_dict(self) -> dict[str, Any]:
        return {"collector": self.collector.state_dict(), "next": self.next.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.collector.load_state_dict(state["collector"])
        self.next.load(state.get("next"))

    def close(self) -> None:
        self.collector.envs.close()
