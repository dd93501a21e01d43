"""Compact benchmark results: run JSONs small enough to commit, with every number a report reads kept.

A bench worker's result (:mod:`rlctl.bench.worker`) lists every training episode as ``[step, raw return]``
under ``episodes``: 20,000 pairs (600 KB) for Reacher at 1M steps. The tables read only scalars from a
result — ``last100``, ``eval_mean``, ``wall_s``, ``sps``, ``steps``, ``budget``, ``lib``/``env``/``seed`` and
the ``config`` behind the preset fingerprint (``rlctl/bench/suite.py`` ``report`` and ``screen``,
``rlctl/bench/sps.py`` ``report_returns``). The episodes feed only the learning-curve plots, which smooth
them. So :func:`compact_result`:

* leaves every other field as it is;
* keeps the last :data:`TAIL` episodes exactly, as ``last_episodes`` (``last100`` is the mean of their returns);
* replaces ``episodes`` by at most :data:`MAX_POINTS` points: consecutive episodes averaged in bins of
  ``k = ceil(n / MAX_POINTS)`` (the first bin takes the remainder), each point ``[step of the bin's last
  episode, mean return of the bin, rounded to 3 decimals]``;
* says what it did under ``compacted``: ``{"episodes": n, "bin": k, "tail": TAIL}``.

A result with at most :data:`MAX_POINTS` episodes is returned unchanged, and compacting twice changes
nothing. The worker compacts what it writes; for older files::

    python -m rlctl.bench.compact results/runs           # files or folders (searched for *.json)
    python -m rlctl.bench.compact results/runs --check   # only list what would change

Files that are not bench-worker results (UAV evaluations, ``final_eval.json``) are skipped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

MAX_POINTS = 2000
"""Learning-curve points kept per result: ~40 KB of JSON, and more than the plots' 100-point grid resolves."""
TAIL = 100
"""Episodes kept exactly at the end: the window of ``last100`` (CleanRL's metric)."""


def is_result(data: Any) -> bool:
    """Whether ``data`` is a bench-worker result (episodes as ``[step, return]`` pairs and a ``last100``)."""
    return isinstance(data, dict) and isinstance(data.get("episodes"), list) and "last100" in data


def compact_result(result: dict[str, Any], max_points: int = MAX_POINTS) -> dict[str, Any]:
    """``result`` with its episode list binned to at most ``max_points`` points (see the module docstring).

    Raises ``ValueError`` if the kept tail does not give back the stored ``last100``: then the file was not
    written by the worker's rule and compacting it could lose a table number.
    """
    episodes = result["episodes"]
    if "compacted" in result or len(episodes) <= max_points:
        return result
    returns = [float(r) for _, r in episodes]
    if not math.isclose(float(np.mean(returns[-TAIL:])), result["last100"], rel_tol=0, abs_tol=1e-9):
        raise ValueError(f"last100 = {result['last100']} is not the mean of the last {TAIL} episodes")
    k = math.ceil(len(episodes) / max_points)
    first = len(episodes) - k * (math.ceil(len(episodes) / k) - 1)  # the one short bin comes first, the rest hold k
    bounds = [0, *range(first, len(episodes) + 1, k)]
    points = []
    for lo, hi in itertools.pairwise(bounds):
        step = episodes[hi - 1][0]
        points.append([int(step) if float(step).is_integer() else step, round(float(np.mean(returns[lo:hi])), 3)])
    out = dict(result)
    out["episodes"] = points
    out["last_episodes"] = episodes[-TAIL:]
    out["compacted"] = {"episodes": len(episodes), "bin": k, "tail": TAIL}
    return out


def _files(paths: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        found += sorted(p.rglob("*.json")) if p.is_dir() else [p]
    return found


def compact_files(paths: Iterable[str], check: bool = False, max_points: int = MAX_POINTS) -> list[Path]:
    """Compact every bench-worker result under ``paths`` in place (atomically); returns the files changed
    (with ``check``, the files that would change, none written)."""
    changed = []
    for path in _files(paths):
        data = json.loads(path.read_text())
        if not is_result(data):
            continue
        new = compact_result(data, max_points)
        if new is data:
            continue
        changed.append(path)
        text = json.dumps(new)
        print(f"{path}: {path.stat().st_size / 1000:,.0f} KB -> {len(text.encode()) / 1000:,.0f} KB "
              f"({len(data['episodes'])} episodes -> {len(new['episodes'])} points)")
        if not check:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlctl.bench.compact", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="result JSONs or folders holding them (searched recursively)")
    parser.add_argument("--check", action="store_true", help="list what would change, write nothing")
    parser.add_argument("--max-points", type=int, default=MAX_POINTS,
                        help=f"learning-curve points kept per result (default {MAX_POINTS})")
    args = parser.parse_args(argv)
    if args.max_points < 1:
        parser.error("--max-points must be positive")
    changed = compact_files(args.paths, args.check, args.max_points)
    print(f"{len(changed)} result(s) {'to compact' if args.check else 'compacted'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
