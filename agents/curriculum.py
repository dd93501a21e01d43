"""The start-point rule of demo-seeded curricula (Salimans & Chen 2018), in distance-from-the-end coordinates.

The reference (``atari-reset``'s ``ResetManager``) works in demo frame indices ``s`` (small = early = hard)
and sets the window's easiest start to ``min{s : Σ_{s' ≤ s} success[s'] ≥ threshold·W}``. With ``d = T − s``
steps before the demo's end (large = hard), that is ``max{d : Σ_{d' ≥ d} success[d'] ≥ threshold·W}``: if
every start point in the window succeeds at rate ``p``, the window moves back by ``W·(1 − threshold/p)``, so
the integrated success over the window stays near ``threshold``. When no ``d`` qualifies, success has collapsed
and the window moves forward (easier) by ``backoff``. Distances make demos of different lengths share one
number: each episode starts ``d`` steps before the end of whichever demo it draws.
"""

from __future__ import annotations

from collections.abc import Mapping


def next_start(success: Mapping[int, float], back: int, window: int, threshold: float, backoff: int,
               limit: int) -> int:
    """The new nearest-to-the-end start point, from the success rate of each start point seen this period.

    Args:
        success: start distance ``d`` → success rate of the episodes that started there (only distances seen
            in the period; stale rates of earlier periods are not kept, unlike the reference, whose stale
            entries bias the rule once success collapses).
        back: the current nearest start point (``≥ 1``).
        window: W, the number of start points spread over.
        threshold: the success mass (as a fraction of W) the window must keep.
        backoff: how far to move forward when success collapses.
        limit: the largest allowed value (past it every start is the env's own reset).
    """
    if back < 1 or window < 1 or backoff < 1:
        raise ValueError(f"back, window and backoff must be >= 1, got {back}, {window}, {backoff}")
    need = threshold * window
    total = 0.0
    for d in sorted(success, reverse=True):  # hardest first: the first d whose tail mass reaches `need` is the max
        total += success[d]
        if total >= need and need > 0:
            return max(1, min(d, limit))
    return max(1, back - backoff)
