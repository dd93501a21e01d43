"""Factorized action-dependent baselines (Wu et al., ICLR 2018): one baseline b_i(s, a^{-i}) per action factor.

For a policy whose action factors are independent given the state (a diagonal Gaussian, a MultiDiscrete
policy), ``E_{a^i ~ π_i}[∇log π_i(a^i|s) · b_i(s, a^{-i})] = 0`` because b_i does not depend on a^i (Wu et al.
eq. 4, algorithms.md §1.2), so factor i's term of the policy gradient may subtract its own baseline and stay
unbiased. Three ways to form b_i (§1.3):

* ``regress``: b_i regressed on the return from ``[s, t/H, a^{-i}]`` (the authors' code);
* ``q_mean``: a learned Q(s, a) with a^i replaced by the policy's mean action;
* ``q_mc``: Q averaged over M draws of a^i ~ π_i.

All D baselines come from **one** network: its input is ``[s, t/H, enc(a), mask]`` where dimension i's block of
the action encoding is zeroed and ``mask`` is the one-hot of i (regress), or replaced (Q modes). The first
layer is linear, so the D variants are the full-input pre-activation plus a per-dimension correction
(:meth:`FactorizedBaseline.variants`): ``[B, D, H]`` tensors, not D networks in a Python loop.

Everything here is pure torch: tensors in, tensors out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from rlctl.agents.distributions import ActionSpec, DiagGaussian, Distribution, MultiCategorical

MODES = ("regress", "q_mean", "q_mc")
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


class ActionCoder:
    """Actions ``[B, D]`` → the baseline network's action input ``[B, E]``.

    A continuous factor is one column (its value); a categorical factor with n choices is a block of n columns
    (one-hot of the choice, or the probabilities for the "mean" action). ``block[e]`` is the factor column e
    belongs to.
    """

    def __init__(self, action: ActionSpec) -> None:
        if action.kind not in ("continuous", "multidiscrete", "discrete"):
            raise ValueError(f"unknown action kind {action.kind!r}")
        self.kind, self.dim = action.kind, action.dim
        self.sizes = [1] * action.dim if action.kind == "continuous" else list(action.nvec)
        self.width = sum(self.sizes)
        self.block = torch.repeat_interleave(torch.arange(self.dim), torch.tensor(self.sizes))
        self.offsets = torch.tensor([0, *torch.cumsum(torch.tensor(self.sizes), 0).tolist()[:-1]])

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` actions → ``[..., E]`` float encoding."""
        if self.kind == "continuous":
            return actions.float()
        cols = actions.long() + self.offsets.to(actions.device)
        out = torch.zeros(*actions.shape[:-1], self.width, device=actions.device)
        return out.scatter_(-1, cols, 1.0)

    def mean(self, dist: Distribution) -> torch.Tensor:
        """``[B, E]``: the Gaussian's mean, or each categorical's probabilities (its mean one-hot)."""
        if isinstance(dist, DiagGaussian):
            return dist.mean
        return torch.cat([lp.exp() for lp in dist.logits], dim=-1)

    def samples(self, dist: Distribution, count: int) -> torch.Tensor:
        """``[B, M, E]``: M independent draws of the whole action, encoded (factor i of draw j is a draw of
        a^i ~ π_i, independent across j)."""
        if isinstance(dist, DiagGaussian):
            noise = torch.randn(dist.mean.shape[0], count, dist.mean.shape[1], device=dist.mean.device)
            return dist.mean[:, None] + dist.std[:, None] * noise
        assert isinstance(dist, MultiCategorical)
        return self.encode(torch.stack([dist.sample() for _ in range(count)], dim=1))


class FactorizedBaseline(nn.Module):
    """One MLP over ``[s, t/H, enc(a), mask]`` that gives every factor's baseline (see the module docstring).

    Hidden sizes, activation and init are the state critic's (orthogonal, gain √2 hidden, 1 at the output),
    so the comparison with the state baseline is at equal capacity (Tucker et al. 2018's fairness point).
    """

    def __init__(self, obs_dim: int, coder: ActionCoder, hidden_sizes: Sequence[int], activation: str = "tanh",
                 ortho_init: bool = True) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.coder, self.obs_dim = coder, obs_dim
        self.first = nn.Linear(obs_dim + 1 + coder.width + coder.dim, hidden_sizes[0])
        layers: list[nn.Module] = [_ACTIVATIONS[activation]()]
        for fan_in, fan_out in itertools.pairwise(hidden_sizes):
            layers += [nn.Linear(fan_in, fan_out), _ACTIVATIONS[activation]()]
        layers.append(nn.Linear(hidden_sizes[-1], 1))
        self.rest = nn.Sequential(*layers)
        if ortho_init:
            for layer in [self.first, *(m for m in self.rest if isinstance(m, nn.Linear))]:
                gain = 1.0 if layer is layers[-1] else math.sqrt(2.0)
                nn.init.orthogonal_(layer.weight, gain)
                nn.init.zeros_(layer.bias)
        self.block: torch.Tensor
        self.register_buffer("block", coder.block.clone(), persistent=False)

    def _split(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer's weights on ``[s, t, enc]``, on ``enc`` alone, and on the mask."""
        w, a0 = self.first.weight, self.obs_dim + 1
        return w[:, :a0 + self.coder.width], w[:, a0:a0 + self.coder.width], w[:, a0 + self.coder.width:]

    def _full(self, obs: torch.Tensor, time: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """``[B, H]``: the first pre-activation of the unmasked input ``[s, t, enc(a), 0]``."""
        w_in, _, _ = self._split()
        return torch.nn.functional.linear(torch.cat([obs, time[:, None], enc], -1), w_in, self.first.bias)

    def _block_terms(self, enc: torch.Tensor, dims: torch.Tensor | None = None) -> torch.Tensor:
        """``[..., D or K, H]``: each factor's share ``W_a[:, block i] · enc[block i]`` of the pre-activation."""
        _, w_a, _ = self._split()
        if self.coder.kind == "continuous":  # one column per factor: an elementwise product
            if dims is not None:
                return w_a.t()[dims] * enc.gather(-1, dims)[..., None]
            return enc[..., None] * w_a.t()
        prod = enc[..., None, :] * w_a  # [..., H, E]
        terms = prod.new_zeros(*prod.shape[:-1], self.coder.dim).index_add(prod.dim() - 1, self.block, prod)
        terms = terms.transpose(-1, -2)
        if dims is not None:
            return terms.gather(-2, dims[..., None].expand(*dims.shape, terms.shape[-1]))
        return terms

    def regress(self, obs: torch.Tensor, time: torch.Tensor, enc: torch.Tensor,
                dims: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, D]`` (or ``[B, K]`` for the factors ``dims [B, K]``): b_i(s, t, a^{-i}), factor i masked out."""
        _, _, w_m = self._split()
        mask_w = w_m.t() if dims is None else w_m.t()[dims]
        pre = self._full(obs, time, enc)[:, None, :] - self._block_terms(enc, dims) + mask_w
        return self.rest(pre).squeeze(-1)

    def q(self, obs: torch.Tensor, time: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """``[B]``: Q(s, t, a) (mask all zero)."""
        return self.rest(self._full(obs, time, enc)).squeeze(-1)

    def q_replaced(self, obs: torch.Tensor, time: torch.Tensor, enc: torch.Tensor,
                   replacement: torch.Tensor) -> torch.Tensor:
        """``[B, M, D]``: Q(s, t, a with factor i's block replaced by ``replacement[:, j]``'s), for ``[B, M, E]``."""
        delta = self._block_terms(replacement) - self._block_terms(enc)[:, None]  # [B, M, D, H]
        return self.rest(self._full(obs, time, enc)[:, None, None, :] + delta).squeeze(-1)


@torch.no_grad()
def predict_baselines(net: FactorizedBaseline, mode: str, obs: torch.Tensor, time: torch.Tensor,
                      actions: torch.Tensor, dist: Distribution | None = None, mc_samples: int = 1,
                      chunk_floats: int = 1 << 23) -> torch.Tensor:
    """``[B, D]`` baselines b_i(s, a^{-i}) for a batch of ``[B, D]`` policy actions, computed in row chunks of at
    most ~``chunk_floats`` hidden activations (q_mc at D = 2000 is m·M network evaluations per row).

    ``dist`` (the policy at ``obs``) is needed by the Q modes: its mean (``q_mean``) or ``mc_samples`` draws
    (``q_mc``, Wu et al.'s MC marginalization) replace factor i.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    coder = net.coder
    enc = coder.encode(actions)
    if mode == "regress":
        repl = None
    else:
        if dist is None:
            raise ValueError(f"mode {mode} needs the policy's distribution")
        repl = coder.mean(dist)[:, None] if mode == "q_mean" else coder.samples(dist, mc_samples)
    per_row = max(1, (1 if repl is None else repl.shape[1]) * coder.dim * net.first.out_features)
    step = max(1, chunk_floats // per_row)
    out = []
    for i in range(0, obs.shape[0], step):
        rows = slice(i, i + step)
        if repl is None:
            out.append(net.regress(obs[rows], time[rows], enc[rows]))
        else:
            out.append(net.q_replaced(obs[rows], time[rows], enc[rows], repl[rows]).mean(1))
    return torch.cat(out)


def baseline_loss(net: FactorizedBaseline, mode: str, obs: torch.Tensor, time: torch.Tensor, actions: torch.Tensor,
                  targets: torch.Tensor, fit_dims: int = 0) -> torch.Tensor:
    """Mean squared error against the return targets ``[B]``.

    ``regress``: every b_i is fit to the same target (b_i → E[R | s, a^{-i}] = E_{a^i}[Q], §1.3), on ``fit_dims``
    factors drawn per row (0 or ≥ D: all): an unbiased estimate of the all-factor loss at a fraction of its cost
    for high-dimensional actions. Q modes: Q(s, a) → R.
    """
    enc = net.coder.encode(actions)
    if mode == "regress":
        dim = net.coder.dim
        dims = torch.randint(dim, (obs.shape[0], fit_dims), device=obs.device) if 0 < fit_dims < dim else None
        return (net.regress(obs, time, enc, dims) - targets[:, None]).pow(2).mean()
    return (net.q(obs, time, enc) - targets).pow(2).mean()


def fit_minibatches(loss_fn: Callable[[torch.Tensor], torch.Tensor], size: int, params: list[nn.Parameter],
                    optimizer: torch.optim.Optimizer, epochs: int, minibatch_size: int,
                    max_grad_norm: float) -> float:
    """``epochs`` passes of shuffled minibatches (the PPO critic's budget: same epochs, minibatch, Adam and
    gradient-norm clip); ``loss_fn(idx)`` is the loss on rows ``idx``. Returns the mean minibatch loss."""
    total, count = 0.0, 0
    mb = min(minibatch_size, size)
    for _ in range(epochs):
        order = torch.randperm(size)
        for start in range(0, size - mb + 1, mb):
            loss = loss_fn(order[start:start + mb])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
    return total / max(count, 1)


def factorized_advantages(returns: torch.Tensor, baselines: torch.Tensor) -> torch.Tensor:
    """``[..., D]`` per-factor advantages ``A^i = R^λ − b_i(s, a^{-i})`` for λ-returns ``[...]``.

    This is the "GAE plus offset" form of algorithms.md §1.4: ``A^i = A^GAE[V] + V(s) − b_i`` (and
    ``A^GAE + V = R^λ``). Its expectation equals that of GAE with the state critic for every λ, since
    ``V(s) − b_i(s, a^{-i})`` does not depend on a^i; so the baseline only removes variance, and λ = 1 gives Wu
    et al.'s ``R_t − b_i``. The per-factor TD recursion instead puts b_i at future steps, where the future
    a^{-i} add noise and its bias differs from GAE's.
    """
    return returns[..., None] - baselines


def episode_steps(terminated: torch.Tensor, truncated: torch.Tensor,
                  start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``([T, N] step index within the episode, [N] index of the next rollout's first row)``; ``start [N]``
    is the index of this rollout's first row (its episodes may have begun in an earlier rollout)."""
    done = terminated | truncated
    steps = torch.empty(done.shape, dtype=torch.float32, device=done.device)
    current = start.to(torch.float32).clone()
    for t in range(done.shape[0]):
        steps[t] = current
        current = torch.where(done[t], torch.zeros_like(current), current + 1)
    return steps, current


def episode_folds(terminated: torch.Tensor, truncated: torch.Tensor,
                  episodes_before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``([T, N] fold 0/1 of each row, [N] episodes begun before the next rollout)`` for cross-fitting.

    A fold is a set of whole episodes ((global episode index + env index) mod 2): a baseline fitted on the
    other fold never saw the row's own trajectory, whose later rewards are in the row's return. The episode
    count carries over rollouts, so an env's episodes alternate folds even when a rollout holds one episode.
    """
    done = (terminated | truncated).long()
    index = episodes_before[None] + torch.cumsum(done, 0) - done  # a row belongs to the episode its step ends
    env = torch.arange(done.shape[1], device=done.device)[None]
    return (index + env) % 2, episodes_before + done.sum(0)
