"""The statistics of the bench reports, each labelled where it is printed.

* Across seeds: :func:`mean_std`, the mean ± the *sample* standard deviation (ddof = 1, :data:`SPREAD`). The
  population std (ddof = 0) that the tables printed before issue 23 is 11% smaller at n = 5 and was unlabelled.
* Across tasks: the interquartile mean of normalized scores with a stratified-bootstrap 95% interval (Agarwal
  et al. 2021, "Deep RL at the edge of the statistical precipice"), as the ``rliable`` package defines them:
  :func:`iqm` is ``rliable.metrics.aggregate_iqm`` (scipy's ``trim_mean`` at 25%: ``n // 4`` cut at each end) and
  :func:`stratified_bootstrap_ci` its ``get_interval_estimates(method="percentile")``, each task's runs
  resampled apart. Why not ``rliable`` itself: ``pip install rliable`` moves no pinned version, but brings 10
  packages (arch, statsmodels, pandas, scipy, seaborn, patsy, formulaic, narwhals; ~300 MB installed) into the
  ``bench`` extra for these two functions of about 20 lines, and the set it resolves here does not import:
  rliable 1.2.0 caps arch below 8, and arch 7.2.0 fails against pandas 3.1 (``deprecate_kwarg`` changed). With
  pandas 2.3 it runs, and on the MuJoCo table's normalized scores (6 tasks × 5 seeds, 2000 resamples) it gives
  the same IQM, 1.088, and the interval [1.050, 1.170] where this module gives [1.047, 1.164]: the same up to
  the bootstrap's random draws.
* rlctl against SB3: :func:`permutation_p`.
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any

import numpy as np

SPREAD = "mean ± sample std (ddof = 1) over n seeds"
"""the label of :func:`mean_std`, for table headers"""


def mean_std(values: list[float], digits: int = 0) -> str:
    """``mean ± sample std`` across seeds (ddof = 1); the mean alone for one value (no spread to estimate);
    ``—`` for none."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (robust to outlier runs, unlike the mean)."""
    x = np.sort(np.asarray(scores, dtype=float).reshape(-1))
    n = len(x)
    cut = n // 4
    return float(x[cut:n - cut].mean()) if n - 2 * cut > 0 else float(x.mean())


def stratified_bootstrap_ci(per_task: list[np.ndarray], reps: int, seed: int = 0) -> tuple[float, float]:
    """95% interval of the IQM when each task's runs are resampled with replacement, task by task."""
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(reps):
        sample = [runs[rng.integers(0, len(runs), len(runs))] for runs in per_task]
        stats.append(iqm(np.concatenate(sample)))
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def permutation_p(a: list[float], b: list[float], max_exact: int = 20_000, samples: int = 20_000,
                  seed: int = 0) -> float:
    """Two-sided p-value of the difference of means of ``a`` and ``b`` under a permutation test.

    The null hypothesis is that the seed's library label does not matter. The test makes no normality
    assumption, which suits 5 seeds of a bimodal task. It is exact (every relabelling) when there are at most
    ``max_exact`` of them; otherwise it draws ``samples`` seeded random ones.
    """
    x = np.asarray(list(a) + list(b), dtype=float)
    n, k = len(x), len(a)
    if k == 0 or k == n:
        raise ValueError("both groups need at least one value")
    observed = abs(float(np.mean(a)) - float(np.mean(b)))
    total = x.sum()

    def gap(idx: np.ndarray) -> np.ndarray:  # |mean of the a-labelled − mean of the rest|, per relabelling
        first = x[idx].sum(axis=-1)
        return np.abs(first / k - (total - first) / (n - k))

    if math.comb(n, k) <= max_exact:
        idx = np.array(list(itertools.combinations(range(n), k)))
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((samples, n)), axis=1)[:, :k]
    return float(np.mean(gap(idx) >= observed - 1e-9 * max(1.0, observed)))


def difference_cells(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    """``last-100 +X (p = …), eval +Y (p = …)``: run group ``a``'s mean minus ``b``'s for the two return metrics of a
    bench run, each with the two-sided :func:`permutation_p`."""
    cells = []
    for key, label in (("last100", "last-100"), ("eval_mean", "eval")):
        x, y = [r[key] for r in a], [r[key] for r in b]
        cells.append(f"{label} {statistics.mean(x) - statistics.mean(y):+.0f} (p = {permutation_p(x, y):.2f})")
    return ", ".join(cells)
