"""The learner stage: network, optimizer, schedules and one PPO update on a prepared batch."""

from __future__ import annotations

import math
from typing import Any

import torch

from rlctl.agents.policies import Policy
from rlctl.agents.ppo import MinibatchStep, ppo_update, recurrent_ppo_update
from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.agents.rollout import BASELINE_ACTOR, DEMO_ACTOR, Rollout
from rlctl.config import Config
from rlctl.errors import UserError
from rlctl.train.advantages import AdvantageStage, make_advantage_stage
from rlctl.train.optim import make_optimizer


class Learner:
    """Owns what an update changes: the policy's weights, the optimizer state, the clip and learning rate."""

    def __init__(self, cfg: Config, agent: Policy) -> None:
        self.cfg, self.agent = cfg, agent
        self.optimizer = make_optimizer(agent, cfg)
        self.advantages: AdvantageStage = make_advantage_stage(cfg, agent)
        # Agency transfer (arbiter.baseline_steps): mask a baseline controller's steps from the policy loss, or
        # also imitate them; "off_policy" trains on them as on the learner's own (rlctl.agents.arbiter).
        self.weighted = cfg.arbiter.baseline is not None and cfg.arbiter.baseline_steps != "off_policy"
        # Only a curriculum's warm-up replays demo actions (DEMO_ACTOR rows); other runs skip the search for them,
        # which on a GPU learner is a host sync per update.
        self.drops_replayed = cfg.curriculum.replays_demo_steps
        imitation = cfg.arbiter.bc_coef if cfg.arbiter.baseline_steps == "bc" else 0.0
        self.step = MinibatchStep(agent, self.optimizer, cfg.ppo, compile=cfg.run.compile,
                                  per_dim=self.advantages.per_dim, weighted=self.weighted, imitation_coef=imitation)

    def schedule(self, update: int) -> dict[str, float]:
        """Set the learning rate and clip range of update ``update`` (linear annealing where configured)."""
        ppo, left = self.cfg.ppo, 1.0 - update / self.cfg.num_updates
        lr = ppo.learning_rate * left if ppo.anneal_lr else ppo.learning_rate
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):  # compiled Adam: a tensor, changed in place
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self.advantages.set_learning_rate(lr)  # learned baselines follow the critic's schedule
        if ppo.anneal_clip:
            self.step.set_clip(ppo.clip_coef * left)
        return {"charts/learning_rate": lr, "charts/clip_coef": float(self.step.clip_coef)}

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Advantages, then ``update_epochs`` of minibatch steps; returns the update's statistics."""
        batch = self.advantages.batch(rollout)
        replayed = batch["actor"] == DEMO_ACTOR if self.drops_replayed else None
        if replayed is not None and bool(replayed.any()):  # a demo's warm-up steps: out of every loss term
            if self.advantages.refreshes:
                raise RuntimeError("replayed demo steps cannot be dropped from a batch whose advantages are refreshed")
            batch = {key: value[~replayed] for key, value in batch.items()}
        if self.weighted:
            baseline = (batch["actor"] == BASELINE_ACTOR).float()
            batch["policy_weight"], batch["imitation_weight"] = 1.0 - baseline, baseline
        stage = self.advantages
        refresh = (lambda b: stage.refresh(rollout, b)) if stage.refreshes else None
        if isinstance(self.agent, RecurrentActorCritic):  # whole sequences from the stored states
            shape = (rollout.rewards.shape[0], rollout.rewards.shape[1])
            stats = recurrent_ppo_update(self.agent, self.optimizer, batch, shape, self.cfg.ppo,
                                         self.cfg.ppo.bptt_steps, float(self.step.clip_coef), refresh)
        else:
            stats = ppo_update(self.agent, self.optimizer, batch, self.cfg.ppo, self.step, refresh)
        self._check_finite(stats)
        return stats | stage.stats()

    def _check_finite(self, stats: dict[str, float]) -> None:
        """Stop a diverged run before it checkpoints: weights with a NaN or inf in them would replace the last
        good checkpoint, and every later update would only carry the NaN on."""
        params = [p.detach().isfinite().all() for p in self.agent.parameters()]
        losses = {key: stats[key] for key in ("policy_loss", "value_loss") if key in stats}
        if all(math.isfinite(v) for v in losses.values()) and bool(torch.stack(params).all()):
            return
        raise UserError("training diverged: the last update left non-finite values in the policy "
                        f"({', '.join(f'{k} {v:.3g}' for k, v in losses.items())}); the run's checkpoint is the one "
                        "from before it. Lower ppo.learning_rate or ppo.max_grad_norm, or look for non-finite "
                        "observations or rewards from the env")

    def state_dict(self) -> dict[str, Any]:
        """Weights and optimizer state; learned baselines (``advantage_stage``) where the stage has any. Export
        reads ``agent`` alone, so the exported policy is the actor whatever the baseline."""
        state = {"agent": self.agent.state_dict(), "optimizer": self.optimizer.state_dict()}
        stage = self.advantages.state_dict()
        return state | ({"advantage_stage": stage} if stage else {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.advantages.load_state_dict(state.get("advantage_stage", {}))
