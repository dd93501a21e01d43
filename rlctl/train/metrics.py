"""What one update logs: episodes, losses, schedules, the sampler's health and where the time went."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from rlctl.config import Config
from rlctl.logger import MetricsLogger
from rlctl.sampling.collector import RolloutInfo


class UpdateMetrics:
    """Writes every finished episode and, every ``run.log_every`` steps, the update's scalars."""

    def __init__(self, logger: MetricsLogger, cfg: Config, last_log: int, global_step: int) -> None:
        self.logger, self.cfg, self.last_log = logger, cfg, last_log
        self.recent: deque[float] = deque(maxlen=100)
        self.all_returns: list[float] = []
        self._t_start, self._step_start = time.perf_counter(), global_step

    @property
    def recent_return(self) -> float | None:
        """Mean of the last 100 training returns (None before the first episode ends)."""
        return float(np.mean(self.recent)) if self.recent else None

    def record(self, global_step: int, info: RolloutInfo, stats: dict[str, float], schedule: dict[str, float],
               sampler: Any, wait_s: float, update_s: float, force: bool) -> dict[str, float]:
        """Log the rollout's episodes now and the update's scalars when due; returns the scalars."""
        logger = self.logger
        for ep in info.episodes:
            if ep.start is not None and not ep.start[2]:  # began at a demo state: a partial episode, not a return
                logger.scalar("curriculum/episodic_return", ep.ret, ep.step)
                continue
            logger.scalar("charts/episodic_return", ep.ret, ep.step)
            logger.scalar("charts/episodic_length", ep.length, ep.step)
            if ep.shaped_ret is not None:  # a reward hook replaced the env's reward: its return too
                logger.scalar("charts/shaped_return", ep.shaped_ret, ep.step)
            if ep.learner_share is not None:  # a baseline shares the acting: how much of it the learner did
                logger.scalar("arbiter/episode_learner_share", ep.learner_share, ep.step)
            self.recent.append(ep.ret)
            self.all_returns.append(ep.ret)
        scalars = {f"losses/{k}": v for k, v in stats.items() if k != "epochs"}
        successes = [ep.success for ep in info.episodes
                     if ep.success is not None and (ep.start is None or ep.start[2])]
        if successes:  # envs that report info["is_success"] (goal-reaching tasks)
            scalars["charts/success_rate"] = float(np.mean(successes))
        scalars["losses/update_epochs"] = stats["epochs"]
        scalars.update(schedule)
        scalars["charts/policy_lag"] = float(sampler.policy_lag)
        scalars["charts/worker_restarts"] = float(sampler.restarts)
        scalars["charts/SPS"] = (global_step - self._step_start) / (time.perf_counter() - self._t_start)
        scalars.update({f"reward/{k}": v for k, v in info.reward_components.items()})
        scalars.update({f"arbiter/{k}": v for k, v in info.arbiter.items() if k != "share"})
        # Where the time goes, per rollout: the sampler's env and policy time (in parallel with the update
        # when overlapped), the learner's wait for the rollout, and its advantages + update.
        scalars.update({f"perf/{k}": v for k, v in info.timing.items()})
        scalars["perf/learner_wait_s"] = wait_s
        scalars["perf/learner_update_s"] = update_s
        if global_step - self.last_log >= self.cfg.run.log_every or force:
            for tag, value in scalars.items():
                logger.scalar(tag, value, global_step)
            logger.flush()
            self.last_log = global_step
        return scalars

