"""The math of an honest gradient-variance measurement (Tucker et al., ICML 2018, "The Mirage of Action-Dependent
Baselines"; algorithms.md §1.9). Pure torch: gradients and statistics in, numbers out.

* :func:`policy_gradient` — the gradient the PPO update really takes at θ = θ_old: per-minibatch advantage
  normalization as in training, per-factor terms for ``[B, D]`` advantages (the clipped surrogate's gradient at
  ratio 1 is the plain score-function term, so no clipping is involved at θ_old).
* :func:`gradient_statistics` — over K independent batches: trace variance per parameter, signal-to-noise, and
  cosine and relative error against a large-batch reference (a variance reduction bought with bias shows there).
* :func:`mirage_terms` / :func:`mirage_decomposition` — Σ = Σ_τ + Σ_a + Σ_s from re-rolls at restored states.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from rlctl.agents.distributions import Distribution


def policy_gradient(dist_fn: Callable[[torch.Tensor], Distribution], params: Sequence[torch.Tensor],
                    obs: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, minibatch_size: int,
                    norm_adv: bool) -> torch.Tensor:
    """``[P]`` flat gradient of the PPO policy loss at θ_old, averaged over one epoch's minibatches in row order.

    ``advantages`` ``[B]`` (joint ratio) or ``[B, D]`` (per-factor ratios, one normalization shared by all factors).
    Rows that do not fill a last minibatch are dropped, as the update drops them.
    """
    mb = min(minibatch_size, obs.shape[0])
    terms = []
    for start in range(0, obs.shape[0] - mb + 1, mb):
        rows = slice(start, start + mb)
        adv = advantages[rows]
        if norm_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        dist = dist_fn(obs[rows])
        if adv.dim() == 2:
            surrogate = (dist.log_prob_dims(actions[rows]) * adv.detach()).sum(-1)
        else:
            surrogate = dist.log_prob(actions[rows]) * adv.detach()
        terms.append(-surrogate.mean())
    grads = torch.autograd.grad(torch.stack(terms).mean(), list(params), allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params,
                                                                                               strict=True)])


def score_gradient(dist_fn: Callable[[torch.Tensor], Distribution], params: Sequence[torch.Tensor],
                   obs: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[P]``: ``Σ_i ∇log π_i(a_i|s) · w_i`` for one state ``obs [1, ...]``, action ``[1, D]`` and weights ``[D]``
    (``w_i = q − φ_i``: one term of the estimator with per-factor baselines; equal weights give ``∇log π · w``)."""
    value = (dist_fn(obs).log_prob_dims(actions)[0] * weights.detach()).sum()
    grads = torch.autograd.grad(value, list(params), allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params,
                                                                                               strict=True)])


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else float("nan")


def gradient_statistics(samples: torch.Tensor, reference: torch.Tensor,
                        common_reference: torch.Tensor | None = None) -> dict[str, float]:
    """Statistics of ``samples [K, P]`` (one gradient per independent batch) against ``reference [P]``, the same
    estimator on a ~100× larger batch, and ``common_reference`` (another estimator's, default ``reference``).

    * ``variance``: ``tr Var_k(g_k) / P`` (unbiased over K), the Mirage code's per-parameter average;
    * ``snr``: ``‖g_ref‖² / tr Var``: signal over noise of one batch's gradient, free of the estimator's scale
      (advantage normalization rescales estimators differently, so compare SNR, not raw variance, across them);
    * ``cosine``: mean over batches of cos(g_k, common reference): alignment with the reference direction;
    * ``relative_error``: mean ``‖g_k − g_ref‖ / ‖g_ref‖`` against the estimator's own reference;
    * ``reference_cosine``: cos(g_ref, common reference): ≈ 1 for estimators of the same expected gradient.
    """
    if samples.dim() != 2 or samples.shape[0] < 2:
        raise ValueError(f"need [K >= 2, P] gradient samples, got shape {tuple(samples.shape)}")
    common = reference if common_reference is None else common_reference
    trace = float(samples.var(0, unbiased=True).sum())
    ref_norm = float(reference.norm())
    return {
        "variance": trace / samples.shape[1],
        "snr": ref_norm ** 2 / trace if trace > 0 else float("inf"),
        "cosine": sum(_cosine(g, common) for g in samples) / samples.shape[0],
        "relative_error": float((samples - reference).norm(dim=1).mean()) / ref_norm if ref_norm > 0 else float("nan"),
        "reference_cosine": _cosine(reference, common),
    }


def variance_ratio_interval(a: torch.Tensor, b: torch.Tensor, scale_a: float = 1.0, scale_b: float = 1.0,
                            resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """``(ratio, low, high)``: ``(tr Var(a) / scale_a) / (tr Var(b) / scale_b)`` for paired samples ``[K, P]`` (the
    same K batches), with a percentile bootstrap interval that resamples batches jointly for both.

    With ``scale = ‖g_ref‖²`` it is the ratio of inverse SNRs, which does not depend on how each estimator's
    advantage normalization scales it. A resample's trace variance comes from the K×K Gram matrix:
    ``tr Var_w = (Σ_j w_j G_jj − wᵀGw / K) / (K − 1)`` for resample counts ``w``.
    """
    k = a.shape[0]
    gram_a, gram_b = (x.double() @ x.double().T for x in (a, b))
    counts = torch.ones(1, k, dtype=torch.float64)
    draws = torch.randint(k, (resamples, k), generator=torch.Generator().manual_seed(seed))
    counts = torch.cat([counts, torch.zeros(resamples, k, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(resamples, k, dtype=torch.float64))])

    def trace(gram: torch.Tensor) -> torch.Tensor:
        return (counts @ gram.diagonal() - ((counts @ gram) * counts).sum(1) / k) / (k - 1)

    ratios = (trace(gram_a) / scale_a) / (trace(gram_b) / scale_b)
    ordered = ratios[1:].sort().values
    lo = float(ordered[int((1 - level) / 2 * resamples)])
    hi = float(ordered[min(resamples - 1, int((1 + level) / 2 * resamples))])
    return float(ratios[0]), lo, hi


def mirage_terms(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], cross: tuple[torch.Tensor, torch.Tensor],
                 score_x: torch.Tensor, score_y: torch.Tensor) -> dict[str, float]:
    """One state's contributions to the decomposition (each a mean over parameters of elementwise products).

    For a state s with recorded action a, two independent continuations give returns q_x, q_y; ``x[φ]`` and
    ``y[φ]`` are ``Σ_i ∇log π_i (q − φ_i)`` for each baseline φ; ``score_x``, ``score_y`` are ``∇log π · q`` (no
    baseline); ``cross`` holds the state-baselined estimates at two independent actions a, a'' at s. Then
    ``E[(X_x − X_y)²]/2 = Σ_τ``, ``E[X_x X_y] = E_{s,a}(E_τ X)²`` and the cross product estimates
    ``E_s(E_{a,τ} X)²``, the same for every valid baseline since ``E_a[∇log π_i φ_i] = 0``.
    """
    out = {"tau": float(((score_x - score_y) ** 2).mean() / 2), "cross": float((cross[0] * cross[1]).mean())}
    for name in x:
        out[f"second:{name}"] = float((x[name] * y[name]).mean())
    return out


def mirage_decomposition(terms: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Σ_τ, Σ_a per baseline and the Σ_s bound, each ``{"mean", "se"}`` over states (per-sample variances, trace/P).

    ``Σ_a(φ) = E_{s,a}(E_τ X_φ)² − E_s(E_{a,τ} X)²`` and ``Σ_s ≤ E_s(E_{a,τ} X)²`` (the bound drops ``‖E g‖²``).
    """
    if len(terms) < 2:
        raise ValueError("the decomposition needs at least 2 states")

    def summary(values: list[float]) -> dict[str, float]:
        n = len(values)
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / (n - 1)
        return {"mean": mean, "se": math.sqrt(var / n)}

    out = {"sigma_tau": summary([t["tau"] for t in terms]), "sigma_s_bound": summary([t["cross"] for t in terms])}
    for key in (k for k in terms[0] if k.startswith("second:")):
        out[f"sigma_a:{key.split(':', 1)[1]}"] = summary([t[key] - t["cross"] for t in terms])
    return out
