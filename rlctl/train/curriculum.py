"""Demo-seeded starting-state curricula on the trainer's side: pool every worker's episodes, move the start
point by :func:`rlctl.agents.curriculum.next_start`, send it to the envs, evaluate from the env's own initial
states and say when the task is solved.

The per-episode part (starting from demo states, truncation, success) runs in the envs
(:mod:`rlctl.envs.demo_start`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlctl.agents.curriculum import next_start
from rlctl.agents.policies import Policy
from rlctl.config import Config
from rlctl.envs.demo import load_demo
from rlctl.evaluate import evaluate_policy
from rlctl.sampling.collector import Episode
from rlctl.spaces import SpaceAdapter

EVAL_SEED = 60_000  # evaluations from the env's own initial states: seeded apart from training and other evals


class DemoCurriculum:
    """The start point (steps before the demos' end), this period's per-start successes and the evaluations."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        demos = [load_demo(path) for path in cfg.curriculum.demos]
        for demo, path in zip(demos, cfg.curriculum.demos, strict=True):
            demo.check_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps, path)
        self.demo_length = max(ep.length for demo in demos for ep in demo.episodes)
        self.back = cfg.curriculum.start_back
        self.wins: dict[int, int] = {}
        self.counts: dict[int, int] = {}
        self.last_eval = 0
        self.solved = False
        self.launched = self.back  # the start point the last launched rollout was given
        self._resumed = False

    @property
    def limit(self) -> int:
        """``back`` at which every window start lies before the longest demo's beginning (own resets only)."""
        return self.demo_length + 1

    def launch_back(self) -> int:
        """The start point for the rollout being launched. The first launch after a resume re-launches the rollout
        the checkpoint cut off, which was given the start point of *its* launch, not the one moved since."""
        if self._resumed:
            self._resumed = False
        else:
            self.launched = self.back
        return self.launched

    def observe(self, episodes: list[Episode]) -> dict[str, float]:
        """Count the rollout's finished episodes by start point; scalars about them."""
        own: list[bool] = []
        for ep in episodes:
            if ep.start is None:
                continue
            d, success, is_own = ep.start
            self.counts[d] = self.counts.get(d, 0) + 1
            self.wins[d] = self.wins.get(d, 0) + int(success)
            if is_own:
                own.append(bool(success))
        out: dict[str, float] = {}
        if own:
            out["curriculum/own_start_success_rate"] = float(np.mean(own))
        return out

    def after_update(self, agent: Policy, adapter: SpaceAdapter, global_step: int) -> tuple[dict[str, float], bool]:
        """Move the start point when enough episodes finished; evaluate when due. Returns scalars and whether the
        task counts as solved (an evaluation reached ``solve_success``)."""
        c = self.cfg.curriculum
        out: dict[str, float] = {}
        episodes = sum(self.counts.values())
        if episodes >= max(1, c.min_episodes):
            success = {d: self.wins[d] / self.counts[d] for d in self.counts}
            out["curriculum/success_rate"] = sum(self.wins.values()) / episodes
            self.back = next_start(success, self.back, c.window, c.threshold, c.backoff, self.limit)
            self.wins, self.counts = {}, {}
        out["curriculum/start_point"] = float(self.back)
        out["curriculum/start_fraction"] = min(1.0, (self.back - 1) / self.demo_length)
        if c.eval_every > 0 and global_step - self.last_eval >= c.eval_every:
            self.last_eval = global_step
            result = evaluate_policy(agent, adapter, self.cfg, c.eval_episodes, deterministic=True,
                                     seed=self.cfg.run.seed + EVAL_SEED)
            out["eval/own_start_return"] = result["mean_return"]
            rate = result.get("success_rate")
            if rate is not None:
                out["eval/own_start_success_rate"] = rate
                self.solved = c.solve_success > 0 and rate >= c.solve_success
        return out, self.solved

    def state_dict(self) -> dict[str, Any]:
        return {"back": self.back, "wins": dict(self.wins), "counts": dict(self.counts), "last_eval": self.last_eval,
                "solved": self.solved, "launched": self.launched}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.back, self.last_eval, self.solved = int(state["back"]), int(state["last_eval"]), bool(state["solved"])
            self.wins = {int(k): int(v) for k, v in state["wins"].items()}
            self.counts = {int(k): int(v) for k, v in state["counts"].items()}
            self.launched, self._resumed = int(state["launched"]), True
