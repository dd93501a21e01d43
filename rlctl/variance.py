"""The gradient-variance instrument behind ``rlctl variance``: at a frozen policy, how noisy is the gradient the PPO
update really takes, with each baseline, on the same samples (Tucker et al. 2018's protocol, algorithms.md §1.9).

1. ``fit_batches`` fresh batches at the frozen policy fit every learned baseline further (the critic and the
   factorized networks, each with the training budget), starting from the checkpoint's weights where it has them;
   after that the baselines are frozen, so they never saw the batches they are measured on.
2. ``batches`` (K ≥ 30) independent batches (fresh episodes, new seeds): the update's gradient for every
   estimator on the same rows, same minibatch partition (:func:`rlctl.agents.variance.policy_gradient`).
3. ``reference`` more batches (a ``reference``× larger batch): each estimator's large-batch gradient, for cosine
   and relative error.
4. ``--decompose``: at ``states`` random rows per measured batch, the simulator state is restored and the episode
   re-rolled, twice with the recorded action and once with a fresh one: Σ_τ, Σ_a (per baseline), Σ_s.

The policy and its normalizers stay exactly as saved: observation statistics are read, never updated, and rewards
are scaled with the saved return statistics, as the update saw them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from rlctl.agents.baselines import episode_steps, factorized_advantages, fit_minibatches
from rlctl.agents.gae import compute_gae
from rlctl.agents.policy import ActorCritic
from rlctl.agents.rollout import Rollout
from rlctl.agents.variance import (
    gradient_statistics,
    mirage_decomposition,
    mirage_terms,
    policy_gradient,
    score_gradient,
    variance_ratio_interval,
)
from rlctl.checkpoint import load_checkpoint
from rlctl.config import Config, with_overrides
from rlctl.envs.make import env_factory, make_vector_env
from rlctl.errors import UserError
from rlctl.logger import Progress
from rlctl.runs import load_policy
from rlctl.spaces import SpaceAdapter, rollout_for
from rlctl.train.advantages import FactorizedStage

ESTIMATORS = ("none", "state", "factorized")


def parse_estimators(text: str, cfg: Config) -> list[str]:
    """``"state,factorized:q_mean"`` → canonical names (``factorized`` alone: the run's mode, else ``regress``)."""
    names = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        kind, _, mode = item.partition(":")
        if kind not in ESTIMATORS or (mode and kind != "factorized"):
            raise UserError(f"unknown baseline {item!r}; use none, state, factorized or factorized:MODE")
        if kind == "factorized":
            mode = mode or (cfg.baseline.mode if cfg.baseline.type == "factorized" else "regress")
            if mode not in ("regress", "q_mean", "q_mc"):
                raise UserError(f"unknown factorized mode {mode!r}; use regress, q_mean or q_mc")
            item = f"factorized:{mode}"
        if item not in names:
            names.append(item)
    if not names:
        raise UserError("--baselines needs at least one of none, state, factorized")
    return names


class FrozenSampler:
    """Batches from the saved policy, each from fresh episodes (an independent batch); can capture env states."""

    def __init__(self, cfg: Config, agent: ActorCritic, adapter: SpaceAdapter, num_steps: int,
                 reward_fn: Any = None) -> None:
        self.cfg, self.agent, self.adapter, self.num_steps = cfg, agent, adapter, num_steps
        self.envs = make_vector_env(cfg.env.id, cfg.env.num_envs, "sync", cfg.env.kwargs, cfg.env.max_episode_steps,
                                    reward_fn=reward_fn)
        self.single = env_factory(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps, reward_fn=reward_fn)()

    def scale(self, rewards: torch.Tensor) -> torch.Tensor:
        ppo = self.cfg.ppo
        return self.agent.reward_scaler.scale(rewards, ppo.clip_reward) if ppo.normalize_reward else rewards

    def policy(self, raw_obs: np.ndarray) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """(normalized obs, distribution, values) for env observations (normalizer read, not updated)."""
        norm = self.agent.normalize_obs(torch.from_numpy(self.adapter.obs(raw_obs)))
        dist, values = self.agent.dist_and_value(norm)
        return norm, dist, values

    def to_env(self, actions: torch.Tensor) -> np.ndarray:
        return self.adapter.to_env(self.agent.to_env_action(actions).numpy())

    @torch.no_grad()
    def collect(self, seed: int, capture: set[tuple[int, int]] | None = None) -> tuple[Rollout, dict]:
        """One batch from episodes reset with ``seed``; ``capture``: rows (t, env) whose env state to keep."""
        roll = rollout_for(self.adapter, self.num_steps, self.cfg.env.num_envs, torch.device("cpu"))
        obs, _ = self.envs.reset(seed=seed)
        snaps: dict[tuple[int, int], Any] = {}
        for t in range(self.num_steps):
            wanted = [n for (tt, n) in (capture or ()) if tt == t]
            if wanted:
                states = cast(Any, self.envs).get_attr("snapshot_state")
                snaps.update({(t, n): states[n] for n in wanted})
            norm, dist, values = self.policy(obs)
            actions = dist.sample()
            roll.obs[t], roll.actions[t], roll.executed_actions[t] = norm, actions, actions
            roll.logprobs_dims[t] = dist.log_prob_dims(actions)
            roll.logprobs[t], roll.values[t] = roll.logprobs_dims[t].sum(-1), values
            obs, reward, terminated, truncated, info = self.envs.step(self.to_env(actions))
            roll.rewards[t] = self.scale(torch.as_tensor(reward, dtype=torch.float32))
            roll.terminated[t], roll.truncated[t] = torch.as_tensor(terminated), torch.as_tensor(truncated)
            cut = np.nonzero(truncated & ~terminated)[0]
            if len(cut):  # time-limit bootstrap from the true final observation
                final = np.stack([info["final_obs"][i] for i in cut])
                roll.next_values[t, torch.from_numpy(cut)] = self.policy(final)[2]
            if t > 0:
                keep = ~(roll.truncated[t - 1] & ~roll.terminated[t - 1])
                roll.next_values[t - 1] = torch.where(keep, values, roll.next_values[t - 1])
        last = self.policy(obs)[2]
        keep = ~(roll.truncated[-1] & ~roll.terminated[-1])
        roll.next_values[-1] = torch.where(keep, last, roll.next_values[-1])
        return roll, snaps

    @torch.no_grad()
    def reroll(self, snapshot: Any, action: torch.Tensor, steps: int, seed: int) -> float:
        """The λ-return ``V(s) + Σ_l (γλ)^l δ_l`` of one continuation from ``snapshot`` taking ``action`` first."""
        ppo = self.cfg.ppo
        obs, _ = self.single.reset(options={"snapshot": snapshot})
        self.single.unwrapped.np_random = np.random.default_rng(seed)  # re-rolls differ in the env's noise too
        value = v0 = float(self.policy(obs[None])[2][0])
        total, weight, act = 0.0, 1.0, action[None]
        for _ in range(steps):
            obs, reward, terminated, truncated, _ = self.single.step(self.to_env(act)[0])
            r = float(self.scale(torch.tensor([float(reward)]))[0])
            _, dist, v = self.policy(np.asarray(obs)[None])
            next_value = 0.0 if terminated else float(v[0])
            total += weight * (r + ppo.gamma * next_value - value)
            if terminated or truncated:
                break
            weight, value, act = weight * ppo.gamma * ppo.gae_lambda, next_value, dist.sample()
        return v0 + total

    def close(self) -> None:
        self.envs.close()
        self.single.close()


class Baselines:
    """The estimators' baselines at the frozen policy: the critic, and one factorized stage per mode."""

    def __init__(self, cfg: Config, agent: ActorCritic, names: list[str], saved: dict[str, Any] | None) -> None:
        self.cfg, self.agent, self.names = cfg, agent, names
        self.stages: dict[str, FactorizedStage] = {}
        for name in (n for n in names if n.startswith("factorized:")):
            mode = name.split(":", 1)[1]
            same = cfg.baseline.type == "factorized" and cfg.baseline.mode == mode and saved
            fit = cfg.baseline.fit if same else "previous"
            stage = FactorizedStage(agent, with_overrides(cfg, {"baseline": {"type": "factorized", "mode": mode,
                                                                             "fit": fit}}))
            if same:
                stage.load_state_dict(saved or {})
            self.stages[name] = stage
        self.critic_opt = torch.optim.Adam(agent.critic.parameters(), lr=cfg.ppo.learning_rate, eps=cfg.ppo.adam_eps)

    def prepare(self, roll: Rollout) -> dict[str, torch.Tensor]:
        """The flat batch with GAE advantages, λ-returns and the ``t/H`` input (each batch starts new episodes)."""
        adv, ret = compute_gae(roll.rewards, roll.values, roll.next_values, roll.terminated, roll.truncated,
                               self.cfg.ppo.gamma, self.cfg.ppo.gae_lambda)
        steps, _ = episode_steps(roll.terminated, roll.truncated, torch.zeros(roll.rewards.shape[1]))
        batch = roll.flat()
        batch.update(gae=adv.flatten(), returns=ret.flatten())
        for stage in self.stages.values():
            batch["time"] = (steps / stage.horizon).flatten()
        return batch

    def fit(self, batch: dict[str, torch.Tensor]) -> None:
        """One batch of fitting for every learned baseline, with the training budget."""
        ppo, critic = self.cfg.ppo, self.agent
        obs, ret = batch["obs"], batch["returns"]
        fit_minibatches(lambda i: (critic.value(obs[i]) - ret[i]).pow(2).mean(), obs.shape[0],
                        list(critic.critic.parameters()), self.critic_opt, ppo.update_epochs, ppo.minibatch_size,
                        ppo.max_grad_norm)
        for stage in self.stages.values():
            for k in range(len(stage.nets)):
                stage.fit(k, batch)

    def advantages(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each estimator's advantages on ``batch``: ``[B]`` (none: R^λ; state: GAE) or ``[B, D]`` (factorized)."""
        out: dict[str, torch.Tensor] = {}
        for name in self.names:
            if name == "none":
                out[name] = batch["returns"]
            elif name == "state":
                out[name] = batch["gae"]
            else:
                stage = self.stages[name]
                batch[f"b:{name}"] = stage.baselines(stage.nets[0], batch)
                out[name] = factorized_advantages(batch["returns"], batch[f"b:{name}"])
        return out

    def phi(self, name: str, batch: dict[str, torch.Tensor], row: int, dim: int) -> torch.Tensor:
        """``[D]`` the baseline each factor subtracts at ``row``."""
        if name == "none":
            return torch.zeros(dim)
        if name == "state":
            return batch["values"][row].expand(dim)
        return batch[f"b:{name}"][row]


def measure_variance(target: str | Path, batches: int = 30, batch_size: int | None = None,
                     baselines: str = "state,factorized", reference: int = 100, fit_batches: int = 10,
                     decompose: bool = False, states: int = 20, seed: int = 0, progress: bool = True,
                     on_batch: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the protocol of the module docstring on a run directory or checkpoint; returns the result dict."""
    if batches < 30:
        raise UserError(f"--batches must be at least 30 (got {batches}): fewer batches do not pin a variance down")
    if reference < 1 or fit_batches < 0 or states < 2:
        raise UserError("--reference must be >= 1, --fit-batches >= 0 and --states >= 2")
    cfg, agent, adapter, ckpt_path, reward = load_policy(target)
    if not isinstance(agent, ActorCritic):
        raise UserError(f"{target}: the variance instrument needs an MLP policy on vector observations")
    names = parse_estimators(baselines, cfg)
    n_envs = cfg.env.num_envs
    size = batch_size or cfg.batch_size
    if size <= 0 or size % n_envs:
        raise UserError(f"--batch-size must be a positive multiple of the run's env.num_envs ({n_envs}), got {size}")
    if cfg.ppo.minibatch_size > size:
        raise UserError(f"--batch-size {size} is smaller than the run's minibatch ({cfg.ppo.minibatch_size})")
    torch.set_num_threads(cfg.run.torch_threads)
    torch.manual_seed(seed)
    ckpt = load_checkpoint(ckpt_path)
    models = Baselines(cfg, agent, names, ckpt.get("advantage_stage"))
    sampler = FrozenSampler(cfg, agent, adapter, size // n_envs, reward.load() if reward is not None else None)
    params = [p for name, p in agent.named_parameters() if name.startswith("actor.") or name == "log_std"]
    total = (fit_batches + batches + reference) * size
    bar = Progress(total, 0, enabled=progress)
    env_seed, done = seed * 1_000_003 + 1, 0
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()

    def next_batch(capture: set[tuple[int, int]] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
        nonlocal env_seed, done
        roll, snaps = sampler.collect(env_seed, capture)
        env_seed, done = env_seed + n_envs, done + size
        bar.update(done, None)
        if on_batch is not None:
            on_batch()
        return models.prepare(roll), snaps

    explained: dict[str, list[float]] = {name: [] for name in names}

    def gradients(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        order = torch.randperm(size, generator=gen)  # the update's shuffled partition, shared by every estimator
        advantages = models.advantages(batch)
        var_r = float(batch["returns"].var())
        for name, adv in advantages.items():  # 1 − mean_i Var(A_i) / Var(R^λ): how much of R^λ the baseline explains
            explained[name].append(1.0 - float(adv.reshape(size, -1).var(0).mean()) / var_r if var_r > 0 else 0.0)
        return {name: policy_gradient(agent.dist, params, batch["obs"][order], batch["actions"][order], adv[order],
                                      cfg.ppo.minibatch_size, cfg.ppo.norm_adv)
                for name, adv in advantages.items()}

    try:
        for _ in range(fit_batches):
            models.fit(next_batch()[0])
        samples: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        terms: list[dict[str, float]] = []
        steps = _reroll_steps(cfg)
        for _ in range(batches):
            rows = {(int(t), int(n)) for t, n in zip(torch.randint(size // n_envs, (states,), generator=gen),
                                                     torch.randint(n_envs, (states,), generator=gen), strict=True)}
            batch, snaps = next_batch(rows if decompose else None)
            for name, g in gradients(batch).items():
                samples[name].append(g)
            for (t, n), snap in snaps.items():
                terms.append(_state_terms(sampler, models, agent, params, batch, t * n_envs + n, snap, steps,
                                          env_seed + 7919 * len(terms)))
        refs = {name: torch.zeros_like(samples[name][0]) for name in names}
        for _ in range(reference):
            for name, g in gradients(next_batch()[0]).items():
                refs[name] += g / reference
    finally:
        bar.close()
        sampler.close()
    common = refs["state"] if "state" in refs else refs[names[0]]
    stacked = {name: torch.stack(samples[name]) for name in names}
    result_rows: dict[str, dict[str, Any]] = {}
    for name in names:
        row: dict[str, Any] = gradient_statistics(stacked[name], refs[name], common)
        row["explained_variance"] = sum(explained[name]) / len(explained[name])
        if "state" in stacked and name != "state":  # scale-free: tr Var / ‖g_ref‖², i.e. 1 / SNR, against state's
            ratio, lo, hi = variance_ratio_interval(stacked[name], stacked["state"], float(refs[name].norm()) ** 2,
                                                    float(refs["state"].norm()) ** 2, seed=seed)
            row["relative_variance_vs_state"] = {"ratio": ratio, "low": lo, "high": hi}
        result_rows[name] = row
    return {
        "checkpoint": str(ckpt_path), "env": cfg.env.id, "env_kwargs": dict(cfg.env.kwargs),
        "global_step": int(ckpt.get("global_step", 0)), "trained_baseline": f"{cfg.baseline.type}"
        + (f":{cfg.baseline.mode}" if cfg.baseline.type == "factorized" else ""),
        "batch_size": size, "batches": batches, "reference_rows": reference * size,
        "fit_batches": fit_batches, "params": sum(p.numel() for p in params), "seed": seed,
        "norm_adv": cfg.ppo.norm_adv, "estimators": result_rows,
        "decomposition": mirage_decomposition(terms) | {"states": {"mean": float(len(terms)), "se": 0.0},
                                                        "reroll_steps": {"mean": float(steps), "se": 0.0}}
        if decompose else None,
        "seconds": time.perf_counter() - start,
    }


def _reroll_steps(cfg: Config) -> int:
    """Continuation length after which the λ-return's remaining weight (γλ)^L is below 1e-3 (at most 1000)."""
    decay = cfg.ppo.gamma * cfg.ppo.gae_lambda
    return 1000 if decay >= 1.0 else min(1000, max(1, math.ceil(math.log(1e-3) / math.log(decay))))


def _state_terms(sampler: FrozenSampler, models: Baselines, agent: ActorCritic, params: list[torch.nn.Parameter],
                 batch: dict[str, torch.Tensor], row: int, snap: Any, steps: int, seed: int) -> dict[str, float]:
    """Re-roll one recorded (s, a) twice and a fresh a'' once; the state's terms of the decomposition."""
    obs, action = batch["obs"][row:row + 1], batch["actions"][row]
    dim = action.shape[-1]
    with torch.no_grad():
        fresh = agent.dist(obs).sample()[0]
    q_x = sampler.reroll(snap, action, steps, seed)
    q_y = sampler.reroll(snap, action, steps, seed + 1)
    q_f = sampler.reroll(snap, fresh, steps, seed + 2)

    def grad(act: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return score_gradient(agent.dist, params, obs, act[None], weights)

    x = {name: grad(action, q_x - models.phi(name, batch, row, dim)) for name in models.names}
    y = {name: grad(action, q_y - models.phi(name, batch, row, dim)) for name in models.names}
    v = batch["values"][row].expand(dim)
    cross = (grad(action, q_x - v), grad(fresh, q_f - v))
    return mirage_terms(x, y, cross, grad(action, torch.full((dim,), q_x)), grad(action, torch.full((dim,), q_y)))
