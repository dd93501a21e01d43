"""``rlctl plot``: learning curves of finished or running runs as a PNG and a Markdown summary.

TensorBoard needs a browser; a benchmark page needs a file. This reads each run's ``metrics.jsonl``
(the same rows TensorBoard gets), draws the training-episode return against environment steps with a
rolling mean, and prints the last-N mean per run — the number papers and CleanRL report.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.errors import UserError
from rlctl.logger import read_metrics
from rlctl.rundir import METRICS

TAG = "charts/episodic_return"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plot", help="learning curves of runs to a PNG",
                       description="Plot the training-episode return of one or more runs against steps.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (each with metrics.jsonl)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--window", type=int, default=20, help="episodes in the rolling mean and the summary (default 20)")
    p.add_argument("--title", default="", help="plot title (default: the env id of the first run)")
    p.add_argument("--hline", type=float, action="append", default=[], metavar="Y",
                   help="draw a dashed reference line at this return (repeatable)")
    p.set_defaults(func=cmd_plot)


def episodes(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, returns)`` of a run's training episodes, in logging order."""
    path = Path(run) / METRICS
    if not path.is_file():
        raise UserError(f"{run} has no metrics.jsonl (not an rlctl run directory?)")
    rows = [(r["step"], r["value"]) for r in read_metrics(path) if r.get("tag") == TAG]
    if not rows:
        raise UserError(f"{run} has no finished training episodes yet")
    arr = np.asarray(rows, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def cmd_plot(args: argparse.Namespace) -> int:
    if args.window < 1:
        raise UserError(f"--window must be positive, got {args.window}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    lines = [f"| run | episodes | steps | last-{args.window} mean return |", "|---|---:|---:|---:|"]
    for run in args.runs:
        steps, returns = episodes(Path(run))
        label = Path(run).name
        ax.plot(steps, returns, ".", alpha=0.25, markersize=3)
        ax.plot(steps, rolling_mean(returns, args.window), label=f"{label} (mean of {args.window})")
        lines.append(f"| {label} | {len(returns)} | {int(steps[-1]):,} | {returns[-args.window:].mean():.1f} |")
    for y in args.hline:
        ax.axhline(y, linestyle="--", color="grey", linewidth=1)
    title = args.title
    if not title:
        config = Path(args.runs[0]) / "config.yaml"
        title = next((line.split(":", 1)[1].strip() for line in config.read_text().splitlines()
                      if line.strip().startswith("id:")), "") if config.is_file() else ""
    ax.set_title(title)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training episode return")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0
