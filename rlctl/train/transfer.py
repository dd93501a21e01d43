"""Agency transfer on the trainer's side: the learner's share of the arbitration per rollout, and periodic
evaluations of the learner alone (baseline disconnected) that gate the share and say how far transfer got.

The per-step rules are :mod:`rlctl.agents.arbiter`'s and run in the collectors (:mod:`rlctl.sampling.baseline`).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from rlctl.agents.arbiter import gate_level, transfer_share
from rlctl.agents.policies import Policy
from rlctl.config import Config, with_overrides
from rlctl.envs.make import make_vector_env
from rlctl.errors import UserError
from rlctl.evaluate import evaluate_policy
from rlctl.sampling.baseline import Baseline
from rlctl.sampling.collector import Collector, Episode
from rlctl.spaces import SpaceAdapter, rollout_for

EVAL_SEED = 50_000  # learner-alone evaluations: episodes seeded apart from training (seed + i) and the final eval


class AgencyTransfer:
    """The transfer schedule's state (the success-gated level) and the learner-alone evaluations."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.level = cfg.arbiter.share_start
        self.last_eval = 0
        self.best: tuple[float, float] | None = None
        """the best learner-alone evaluation so far, as (success rate or 0, mean return)"""
        self.improved = False
        """whether the last :meth:`after_update` evaluated the learner alone better than every evaluation before"""

    def share(self, global_step: int) -> float:
        """The learner's share p for a rollout starting at ``global_step``."""
        a = self.cfg.arbiter
        progress = global_step / self.cfg.ppo.total_timesteps
        return transfer_share(a.schedule, progress, a.share_start, a.transfer_end,
                              updates=global_step // self.cfg.batch_size, factor=a.factor, gated=self.level)

    def after_update(self, agent: Policy, adapter: SpaceAdapter, global_step: int) -> dict[str, float]:
        """Scalars to log: p, and when an evaluation is due, the learner alone's success and return."""
        a = self.cfg.arbiter
        out = {"arbiter/share": self.share(global_step)}
        self.improved = False
        if a.eval_every <= 0 or global_step - self.last_eval < a.eval_every:
            return out
        self.last_eval = global_step
        result = evaluate_policy(agent, adapter, self.cfg, a.eval_episodes, deterministic=True,
                                 seed=self.cfg.run.seed + EVAL_SEED)
        out["eval/learner_return"] = result["mean_return"]
        if a.schedule == "success_gated" and result.get("success_rate") is None:
            raise UserError(f"arbiter.schedule=success_gated: {self.cfg.env.id} reports no success "
                            "(info['is_success']), so the gate could never raise the learner's share; "
                            "use arbiter.schedule=linear")
        if result.get("success_rate") is not None:
            out["eval/learner_success_rate"] = result["success_rate"]
            if a.schedule == "success_gated":
                self.level = gate_level(self.level, result["success_rate"], a.gate_success, a.gate_step,
                                        a.share_start)
        # success first, the return breaks ties; every evaluation plays the same seeded episodes
        score = (float(result.get("success_rate") or 0.0), float(result["mean_return"]))
        self.improved = self.best is None or score > self.best
        self.best = score if self.improved else self.best
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "last_eval": self.last_eval, "best": list(self.best) if self.best else None}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.level, self.last_eval = float(state["level"]), int(state["last_eval"])
            best = state.get("best")  # absent from checkpoints written before it was kept
            self.best = (float(best[0]), float(best[1])) if best else None


def evaluate_mixture(cfg: Config, agent: Policy, adapter: SpaceAdapter, episodes: int, share: float,
                     seed: int) -> dict[str, Any]:
    """``episodes`` episodes of the baseline and the learner under the run's arbitration at learner share
    ``share``, as in training: one env stepped by the collector, the policy sampling (not its mode).

    The agent is copied first: acting updates the observation normalizer, and an evaluation must not.
    """
    if cfg.arbiter.baseline is None:
        raise UserError("this run has no baseline (arbiter.baseline): evaluate the learner alone")
    one = with_overrides(cfg, {"env": {"num_envs": 1, "vectorization": "sync"}, "ppo": {"normalize_reward": False}})
    envs = make_vector_env(one.env.id, 1, "sync", one.env.kwargs, one.env.max_episode_steps)
    baseline = Baseline(one.arbiter, envs, seed)
    baseline.set_share(share)
    collector = Collector(envs, copy.deepcopy(agent), adapter, one.ppo, torch.device("cpu"), baseline=baseline)
    collector.reset(seed)
    rollout = rollout_for(adapter, 256, 1, torch.device("cpu"))
    done: list[Episode] = []
    try:
        while len(done) < episodes:
            done += collector.collect(rollout, 0).episodes
    finally:
        envs.close()
    done = done[:episodes]
    successes = [ep.success for ep in done if ep.success is not None]
    return {"env": cfg.env.id, "episodes": episodes, "share": share, "seed": seed, "deterministic": False,
            "mean_return": float(np.mean([ep.ret for ep in done])),
            "std_return": float(np.std([ep.ret for ep in done])), "returns": [ep.ret for ep in done],
            "mean_length": float(np.mean([ep.length for ep in done])),
            "learner_share": float(np.mean([ep.learner_share or 0.0 for ep in done])),
            **({"success_rate": float(np.mean(successes))} if successes else {})}
