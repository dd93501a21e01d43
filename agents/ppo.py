"""The PPO clipped-surrogate loss (a pure function) and the epoch/minibatch update around it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from rlctl.agents.distributions import Distribution
from rlctl.agents.policies import Policy
from rlctl.agents.recurrent import RecurrentActorCritic


class PPOParams(Protocol):
    """The hyperparameters the update reads (rlctl's ``PPOConfig`` satisfies this).

    Read-only members, so that a frozen config (rlctl's is) satisfies the protocol as well as a mutable one.
    """

    @property
    def minibatch_size(self) -> int: ...

    @property
    def update_epochs(self) -> int: ...

    @property
    def clip_coef(self) -> float: ...

    @property
    def clip_vloss(self) -> bool: ...

    @property
    def ent_coef(self) -> float: ...

    @property
    def vf_coef(self) -> float: ...

    @property
    def max_grad_norm(self) -> float: ...

    @property
    def target_kl(self) -> float | None: ...

    @property
    def norm_adv(self) -> bool: ...

    @property
    def smooth_temporal(self) -> float: ...

    @property
    def smooth_spatial(self) -> float: ...

    @property
    def smooth_sigma(self) -> float: ...


def ppo_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    clip_coef: float | torch.Tensor,
    clip_vloss: bool,
    ent_coef: float,
    vf_coef: float,
    policy_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its parts for one minibatch (all inputs ``[B]``; advantages already normalized).

    * policy: ``−mean(min(r·A, clip(r, 1±ε)·A))`` with ``r = exp(logπ − logπ_old)`` (Schulman 2017, eq. 7);
      with per-factor log-probs and advantages (``[B, D]``, factorized baselines) it is the per-dimension
      surrogate ``−mean Σ_i min(r_i·A_i, clip(r_i, 1±ε)·A_i)``, ``r_i = π(a_i|s)/π_old(a_i|s)``: at θ_old its
      gradient is ``Σ_i ∇log π_i · A_i``, whereas the joint ratio times A_i would add the cross terms
      ``∇log π_j · A_i`` that undo the per-factor baselines (algorithms.md §1.4);
    * value: ``mean((V − R)²)``, SB3's and Tianshou's form (no ½), optionally ``mean(max((V − R)², (V_c − R)²))``
      with ``V_c`` = V clipped to ``V_old ± ε`` (the baselines ``ppo2`` variant). CleanRL and baselines take
      ``0.5 · mean(…)``, so their ``vf_coef`` is twice rlctl's for the same weight (the presets halve it);
    * entropy bonus subtracted with ``ent_coef``;
    * with ``policy_weight`` ``[B]``, the policy term is the weighted mean (agency transfer's masked baseline steps).
    Diagnostics: approx KL ``mean((r − 1) − log r)`` (Schulman's unbiased k3 estimator) of the joint ratio, the
    fraction of (per-factor) ratios outside the clip range; with ``policy_weight``, over the samples it keeps.
    """
    if new_logprobs.shape != advantages.shape or old_logprobs.shape != advantages.shape:
        raise ValueError(f"ppo_loss: log-probs {tuple(new_logprobs.shape)}, {tuple(old_logprobs.shape)} and "
                         f"advantages {tuple(advantages.shape)} must have one shape")
    log_ratio_dims = new_logprobs - old_logprobs
    kept = None if policy_weight is None else policy_weight > 0
    if kept is not None:
        # Samples of weight 0 (a baseline controller's steps) get ratio 1 before exp: their behaviour log-prob is
        # the learner's of the controller's action, which can be so low that the imitation term's move overflows
        # exp() to inf, and inf·0 is NaN in the loss and its gradient (masking after exp() would not help).
        log_ratio_dims = torch.where(_per_row(kept, log_ratio_dims), log_ratio_dims, torch.zeros_like(log_ratio_dims))
    per_dim_ratio = log_ratio_dims.exp()
    clip_coef = torch.as_tensor(clip_coef, dtype=per_dim_ratio.dtype, device=per_dim_ratio.device)
    surrogate = torch.min(advantages * per_dim_ratio,
                          advantages * torch.clamp(per_dim_ratio, 1.0 - clip_coef, 1.0 + clip_coef))
    if surrogate.dim() == 2:  # per-factor: one clipped term per action dimension, summed
        surrogate = surrogate.sum(-1)
    if policy_weight is None:
        policy_loss = -surrogate.mean()
    else:  # a weighted mean: samples of weight 0 leave the policy gradient (and the diagnostics below) alone
        policy_loss = -(surrogate * policy_weight).sum() / policy_weight.sum().clamp(min=1.0)
    log_ratio = log_ratio_dims.sum(-1) if log_ratio_dims.dim() == 2 else log_ratio_dims
    ratio = log_ratio.exp()

    if clip_vloss:
        clipped = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
        value_loss = torch.max((new_values - returns).pow(2), (clipped - returns).pow(2)).mean()
    else:
        value_loss = (new_values - returns).pow(2).mean()

    entropy_mean = entropy.mean()
    loss = policy_loss - ent_coef * entropy_mean + vf_coef * value_loss
    with torch.no_grad():
        stats = {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy_mean.detach(),
            "approx_kl": _kept_mean((ratio - 1.0) - log_ratio, kept),
            "old_approx_kl": _kept_mean(-log_ratio, kept),
            "clipfrac": _kept_mean(((per_dim_ratio - 1.0).abs() > clip_coef).float(), kept),
        }
    return loss, stats


def _per_row(kept: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[B]`` ``kept`` shaped to broadcast against ``x`` (``[B]`` or ``[B, D]``)."""
    return kept.reshape(-1, *([1] * (x.dim() - 1)))


def _kept_mean(x: torch.Tensor, kept: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``x`` (``[B]`` or ``[B, D]``) over the samples ``kept`` ``[B]`` marks (all: None)."""
    if kept is None:
        return x.mean()
    mask = _per_row(kept, x).to(x.dtype).expand_as(x)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def smoothness_penalties(
    mean: torch.Tensor,
    next_mean: torch.Tensor | None = None,
    next_valid: torch.Tensor | None = None,
    near_mean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CAPS's two regularizers (Mysore et al. 2021, "Regularizing action policies for smooth control"), squared.

    * temporal: ``mean over valid t of |μ(s_t) − μ(s_{t+1})|²`` (``next_valid`` is 0 where the episode ended
      at t, so no pair straddles a reset);
    * spatial: ``mean |μ(s) − μ(s + δ)|²`` for a perturbed copy of the observation.
    All means ``[B, D]``; a term without its inputs is 0. Gradients flow through both sides of each pair.
    """
    zero = mean.new_zeros(())
    temporal = spatial = zero
    if next_mean is not None and next_valid is not None:
        per_pair = (mean - next_mean).pow(2).sum(-1)
        temporal = (per_pair * next_valid).sum() / next_valid.sum().clamp(min=1.0)
    if near_mean is not None:
        spatial = (mean - near_mean).pow(2).sum(-1).mean()
    return temporal, spatial


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """``1 − Var(target − predicted) / Var(target)``; NaN when the target is constant."""
    var_target = target.var()
    if var_target.item() == 0.0:
        return float("nan")
    return float(1.0 - (target - predicted).var() / var_target)


def normalize_advantages(advantages: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Zero mean, unit std over all entries (of ``[B]`` or ``[B, D]``); with ``weight`` ``[B]`` the statistics
    are those of the weighted samples, so samples of weight 0 do not shift the others' advantages."""
    if weight is None:
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    w = weight.reshape(-1, *([1] * (advantages.dim() - 1))).expand_as(advantages)
    total = w.sum().clamp(min=1.0)
    mean = (advantages * w).sum() / total
    var = ((advantages - mean).pow(2) * w).sum() / (total - 1.0).clamp(min=1.0)
    return (advantages - mean) / (var.sqrt() + 1e-8)


class MinibatchStep:
    """One gradient step on a minibatch: loss, backward, global grad-norm clip, optimizer step.

    With ``compile=True`` the loss and the clip+optimizer step each go through ``torch.compile``:
    small MLP updates are dominated by per-op dispatch, and fusing them halves the step time on a CPU
    (measured 1.1 → 0.53 ms for 64×64 networks, minibatch 64), at ~20 s of one-off compilation. Pass
    the optimizer a tensor learning rate then, so LR annealing does not trigger recompiles.
    """

    KEYS = ("obs", "actions", "logprobs", "advantages", "values", "returns")
    """the batch fields every step reads; with temporal smoothness also ``next_obs`` and ``next_valid``, with
    ``weighted`` also ``policy_weight`` and ``imitation_weight``"""

    def __init__(self, agent: Policy, optimizer: torch.optim.Optimizer, params: PPOParams,
                 compile: bool = False, per_dim: bool = False, weighted: bool = False,
                 imitation_coef: float = 0.0) -> None:
        self.agent, self.optimizer, self.params, self.compiled = agent, optimizer, params, compile
        self.smooth = params.smooth_temporal > 0 or params.smooth_spatial > 0
        if self.smooth and agent.action.kind != "continuous":
            raise ValueError("smoothness regularization (smooth_temporal, smooth_spatial) needs a Gaussian policy")
        # per_dim: per-factor ratios against ``[B, D]`` advantages (factorized baselines); reads the per-factor
        # behaviour log-probs the rollout keeps (``logprobs_dims``) instead of their sum.
        self.per_dim = per_dim
        keys = tuple("logprobs_dims" if k == "logprobs" else k for k in self.KEYS) if per_dim else self.KEYS
        # weighted: a per-sample weight on the policy loss (0 masks a sample; a baseline controller's steps in agency
        # transfer, rlctl.agents.arbiter) and an imitation term −imitation_coef·mean log π(a|s) over the samples
        # ``imitation_weight`` marks (a Gaussian's at its std held fixed: ``imitation_log_prob``). The value loss
        # keeps every sample.
        self.weighted, self.imitation_coef = weighted, imitation_coef
        self.keys = keys + (("next_obs", "next_valid") if params.smooth_temporal > 0 else ()) \
            + (("policy_weight", "imitation_weight") if weighted else ())
        # A tensor, so a schedule (``set_clip``) changes it without recompiling the compiled loss.
        self.clip_coef = torch.tensor(float(params.clip_coef), device=next(agent.parameters()).device)
        self._loss = torch.compile(self._loss_eager) if compile else self._loss_eager
        self._apply = torch.compile(self._apply_eager) if compile else self._apply_eager
        self.first_call_s: float | None = None
        """seconds the first call took: with ``compile``, mostly tracing and compiling (or loading from a cache)"""

    def _loss_eager(self, obs: torch.Tensor, actions: torch.Tensor, old_logprobs: torch.Tensor,
                    advantages: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                    next_obs: torch.Tensor | None = None, next_valid: torch.Tensor | None = None,
                    policy_weight: torch.Tensor | None = None, imitation_weight: torch.Tensor | None = None,
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p = self.params
        if p.norm_adv:  # one mean and std over all entries: per-factor scales would reweight factors (§1.10)
            advantages = normalize_advantages(advantages, policy_weight)
        dist, values = self.agent.dist_and_value(obs)
        new_logprobs = dist.log_prob_dims(actions) if self.per_dim else dist.log_prob(actions)
        loss, stats = ppo_loss(
            new_logprobs=new_logprobs, old_logprobs=old_logprobs, advantages=advantages,
            new_values=values, old_values=old_values, returns=returns, entropy=dist.entropy(),
            clip_coef=self.clip_coef, clip_vloss=p.clip_vloss, ent_coef=p.ent_coef, vf_coef=p.vf_coef,
            policy_weight=policy_weight,
        )
        if imitation_weight is not None and self.imitation_coef > 0:
            logp = dist.imitation_log_prob(actions)  # a Gaussian's std is left out (it would shrink without bound)
            imitation = -(logp * imitation_weight).sum() / imitation_weight.sum().clamp(min=1.0)
            loss = loss + self.imitation_coef * imitation
            stats["imitation"] = imitation.detach()
        if self.smooth:
            mean = dist.mode()
            next_mean = self.agent.dist(next_obs).mode() if next_obs is not None else None
            near_mean = self.agent.dist(obs + p.smooth_sigma * torch.randn_like(obs)).mode() \
                if p.smooth_spatial > 0 else None
            temporal, spatial = smoothness_penalties(mean, next_mean, next_valid, near_mean)
            loss = loss + p.smooth_temporal * temporal + p.smooth_spatial * spatial
            stats["smooth_temporal"], stats["smooth_spatial"] = temporal.detach(), spatial.detach()
        return loss, stats

    def set_clip(self, clip_coef: float) -> None:
        """The clip range ε for the following steps (annealing)."""
        self.clip_coef.fill_(clip_coef)

    def _apply_eager(self) -> None:
        nn.utils.clip_grad_norm_(self.agent.parameters(), self.params.max_grad_norm)
        self.optimizer.step()

    def __call__(self, batch: dict[str, torch.Tensor], idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        if self.first_call_s is None:
            start = time.perf_counter()
            stats = self._step(batch, idx)
            self.first_call_s = time.perf_counter() - start
            return stats
        return self._step(batch, idx)

    def _step(self, batch: dict[str, torch.Tensor], idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        core = len(self.KEYS)
        loss, stats = self._loss(*(batch[key][idx] for key in self.keys[:core]),
                                 **{key: batch[key][idx] for key in self.keys[core:]})
        # Compiled optimizer steps want gradient tensors that persist between calls.
        self.optimizer.zero_grad(set_to_none=not self.compiled)
        loss.backward()
        self._apply()
        return stats


def ppo_update(
    agent: Policy,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    params: PPOParams,
    step: MinibatchStep | None = None,
    refresh: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> dict[str, float]:
    """Run ``update_epochs`` passes of shuffled minibatches over a flattened rollout.

    ``batch`` holds ``[B, ...]`` tensors: ``obs``, ``actions``, ``logprobs``, ``values``,
    ``advantages``, ``returns``. Shuffling uses the global torch RNG (seeded and checkpointed), so
    a run is reproducible. With ``target_kl`` set, the remaining epochs are skipped once an epoch's
    mean approximate KL exceeds it (CleanRL checks per epoch; SB3 per minibatch at 1.5× the target).
    ``step`` is the minibatch step to use (an eager one is made when omitted). ``refresh``, when given,
    is called on ``batch`` before every epoch after the first (to recompute values and advantages with
    the critic as it is now).
    """
    size = batch["obs"].shape[0]
    mb = params.minibatch_size
    if params.norm_adv and mb < 2:
        raise ValueError("advantage normalization needs minibatch_size >= 2")
    step = step or MinibatchStep(agent, optimizer, params)
    log = _EpochLog(batch["obs"].device)
    for epoch in range(params.update_epochs):
        if refresh is not None and epoch > 0:
            refresh(batch)
        order = torch.randperm(size, device=batch["obs"].device)
        # One gather per epoch, then contiguous slices: the same minibatches as indexing each one,
        # without six small gathers per gradient step.
        shuffled = {key: batch[key][order] for key in step.keys}
        for start in range(0, size - mb + 1, mb):
            log.add(step(shuffled, slice(start, start + mb)))
        if log.end_epoch(params.target_kl):
            break
    return log.result(batch["values"], batch["returns"])


class _EpochLog:
    """An update's bookkeeping: sums of the minibatch statistics, and the epoch's mean approximate KL that
    ``target_kl`` stops the remaining epochs on (CleanRL checks per epoch; SB3 per minibatch at 1.5× the target)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, torch.Tensor] = {}
        self.count, self.epochs = 0, 0
        self.epoch_kl, self.epoch_mbs = torch.zeros((), device=device), 0

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for key, value in stats.items():
            self.totals[key] = self.totals.get(key, 0.0) + value
        self.count += 1
        self.epoch_kl += stats["approx_kl"]
        self.epoch_mbs += 1

    def end_epoch(self, target_kl: float | None) -> bool:
        """Close an epoch; whether to stop (its mean approximate KL exceeded ``target_kl``)."""
        self.epochs += 1
        stop = target_kl is not None and (self.epoch_kl / max(self.epoch_mbs, 1)).item() > target_kl
        self.epoch_kl, self.epoch_mbs = torch.zeros((), device=self.device), 0
        return stop

    def result(self, values: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        out = {key: (value / max(self.count, 1)).item() for key, value in self.totals.items()}
        out["explained_variance"] = explained_variance(values, returns)
        out["epochs"] = float(self.epochs)
        return out


class Chunks:
    """A time-major rollout ``[T·N, ...]`` (``shape = (T, N)``) cut into ``T / length`` chunks per env: sequence
    ``c·N + n`` is chunk c of env n, ``length`` steps long (``length = 0``: the whole rollout)."""

    def __init__(self, shape: tuple[int, int], length: int) -> None:
        self.steps, self.envs = shape
        self.length = length or self.steps
        if self.steps % self.length:
            raise ValueError(f"bptt_steps ({self.length}) must divide the rollout length ({self.steps})")
        self.chunks = self.steps // self.length
        self.count = self.chunks * self.envs

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """``[T·N, ...]`` → ``[length, chunks·N, ...]``."""
        rest = x.shape[1:]
        return x.view(self.chunks, self.length, self.envs, *rest).transpose(0, 1).reshape(self.length, self.count,
                                                                                            *rest)

    def join(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`split` for a ``[length·chunks·N]`` time-major flat tensor → ``[T·N]``."""
        return x.view(self.length, self.chunks, self.envs).transpose(0, 1).reshape(-1)

    def first_states(self, rnn_states: torch.Tensor) -> torch.Tensor:
        """The stored state before each sequence's first step, ``[chunks·N, S]``."""
        return rnn_states.view(self.chunks, self.length, self.envs, -1)[:, 0].reshape(self.count, -1)


@torch.no_grad()
def sequence_values(agent: RecurrentActorCritic, obs: torch.Tensor, rnn_states: torch.Tensor, starts: torch.Tensor,
                    shape: tuple[int, int], bptt_steps: int) -> torch.Tensor:
    """``[T·N]`` values of a flattened rollout under the critic as it is now, replayed in the training update's
    sequences (each from its stored state)."""
    chunks = Chunks(shape, bptt_steps)
    _, values = agent.sequence(chunks.split(obs), chunks.first_states(rnn_states), chunks.split(starts))
    return chunks.join(values)


def recurrent_ppo_update(
    agent: RecurrentActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    shape: tuple[int, int],
    params: PPOParams,
    bptt_steps: int = 0,
    clip_coef: float | None = None,
    refresh: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> dict[str, float]:
    """:func:`ppo_update` for a recurrent policy: minibatches of whole sequences, replayed from stored states.

    ``batch`` is the flattened rollout (time-major ``[T·N, ...]``, ``shape = (T, N)``) with ``advantages`` and
    ``returns``. The rollout is cut into ``T / bptt_steps`` chunks per env (``bptt_steps = 0``: one chunk, the
    whole rollout); each chunk is a sequence that starts from the state stored before its first step and zeroes
    it wherever an episode began (``starts``), so the first epoch's log-probs equal the collection's exactly.
    A minibatch holds ``max(1, minibatch_size // bptt_steps)`` sequences; the loss is :func:`ppo_loss` over all
    their steps, with the advantages normalized per minibatch as in the feed-forward update. ``clip_coef``: the
    clip range now (annealed), default ``params.clip_coef``. ``refresh``, when given, is called on ``batch``
    before every epoch after the first (``ppo.recompute_adv``: values and advantages under the critic as it is).
    """
    clip = params.clip_coef if clip_coef is None else clip_coef
    chunks = Chunks(shape, bptt_steps)
    length, count = chunks.length, chunks.count
    keys = ("obs", "actions", "logprobs", "advantages", "values", "returns", "starts")
    seq = {key: chunks.split(batch[key]) for key in keys}
    states = chunks.first_states(batch["rnn_states"])
    per_minibatch = max(1, params.minibatch_size // length)
    log = _EpochLog(states.device)
    for epoch in range(params.update_epochs):
        if refresh is not None and epoch > 0:
            refresh(batch)
            seq.update({key: chunks.split(batch[key]) for key in ("advantages", "values", "returns")})
        order = torch.randperm(count, device=states.device)
        for start in range(0, count - per_minibatch + 1, per_minibatch):
            idx = order[start:start + per_minibatch]
            part = {key: value[:, idx].flatten(0, 1) for key, value in seq.items() if key not in ("obs", "starts")}
            dist, values = agent.sequence(seq["obs"][:, idx], states[idx], seq["starts"][:, idx])
            advantages = normalize_advantages(part["advantages"]) if params.norm_adv else part["advantages"]
            loss, stats = ppo_loss(
                new_logprobs=dist.log_prob(part["actions"]), old_logprobs=part["logprobs"], advantages=advantages,
                new_values=values, old_values=part["values"], returns=part["returns"], entropy=dist.entropy(),
                clip_coef=clip, clip_vloss=params.clip_vloss, ent_coef=params.ent_coef,
                vf_coef=params.vf_coef)
            if params.smooth_temporal > 0 or params.smooth_spatial > 0:
                loss = loss + _sequence_smoothness(agent, dist, seq["obs"][:, idx], states[idx], seq["starts"][:, idx],
                                                   params, stats)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), params.max_grad_norm)
            optimizer.step()
            log.add(stats)
        if log.end_epoch(params.target_kl):
            break
    return log.result(batch["values"], batch["returns"])


def _sequence_smoothness(agent: RecurrentActorCritic, dist: Distribution, obs: torch.Tensor, state: torch.Tensor,
                         starts: torch.Tensor, params: PPOParams, stats: dict[str, torch.Tensor]) -> torch.Tensor:
    """CAPS on sequences (:func:`smoothness_penalties`): the temporal pairs are consecutive steps of a sequence
    that no episode start separates; the spatial copy replays the sequence on perturbed observations from the same
    stored state, so the memory sees the perturbation too (a recurrent policy's mean depends on the past)."""
    length, batch = obs.shape[:2]
    mean = dist.mode().view(length, batch, -1)
    next_valid = (~starts[1:].bool()).to(mean.dtype).flatten() if params.smooth_temporal > 0 else None
    next_mean = mean[1:].flatten(0, 1) if params.smooth_temporal > 0 else None
    near_mean = agent.sequence(obs + params.smooth_sigma * torch.randn_like(obs), state, starts)[0].mode() \
        if params.smooth_spatial > 0 else None
    temporal, _ = smoothness_penalties(mean[:-1].flatten(0, 1), next_mean, next_valid)
    _, spatial = smoothness_penalties(mean.flatten(0, 1), near_mean=near_mean)
    stats["smooth_temporal"], stats["smooth_spatial"] = temporal.detach(), spatial.detach()
    return params.smooth_temporal * temporal + params.smooth_spatial * spatial
