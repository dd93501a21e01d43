"""``rlctl variance RUN|CKPT``: the gradient variance of each baseline at a frozen policy (see :mod:`rlctl.variance`).

Prints a table, writes ``variance-<time>.json`` and ``.png`` next to the checkpoint (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rlctl.errors import UserError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "variance", help="gradient variance of state vs factorized baselines at a frozen policy",
        description="At the saved policy, collect K independent batches and measure the variance of the gradient "
                    "the PPO update really takes with each baseline (same rows for all), its SNR, and cosine and "
                    "relative error against a 100x larger reference batch; --decompose re-rolls restored "
                    "simulator states for the Sigma_tau / Sigma_a / Sigma_s split (Tucker et al. 2018).")
    p.add_argument("target", metavar="RUN|CKPT", help="a run directory or a checkpoint file")
    p.add_argument("--batches", type=int, default=30, help="independent batches K (at least 30; default 30)")
    p.add_argument("--batch-size", type=int, help="rows per batch (default: the run's num_steps x num_envs)")
    p.add_argument("--baselines", default="state,factorized",
                   help="comma-separated: none, state, factorized (the run's mode, else regress) or "
                        "factorized:regress|q_mean|q_mc (default state,factorized)")
    p.add_argument("--reference", type=int, default=100, help="reference batch size as a multiple (default 100)")
    p.add_argument("--fit-batches", type=int, default=10,
                   help="fresh batches that fit every learned baseline further before measuring (default 10)")
    p.add_argument("--decompose", action="store_true",
                   help="also split the variance into Sigma_tau, Sigma_a (per baseline) and Sigma_s by re-rolling")
    p.add_argument("--states", type=int, default=20, help="with --decompose: states re-rolled per batch (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batches and re-rolls (default 0)")
    p.add_argument("--out", help="JSON result path (default next to the checkpoint, variance-<time>.json)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_variance)


def cmd_variance(args: argparse.Namespace) -> int:
    from rlctl.checkpoint import atomic_write_text, prepare_output
    from rlctl.rundir import CHECKPOINT
    from rlctl.variance import measure_variance

    target = Path(args.target)
    if not target.exists():
        raise UserError(f"{args.target}: no such run directory or checkpoint")
    ckpt_dir = target if target.is_dir() else target.parent
    if target.is_dir() and not (target / CHECKPOINT).is_file():
        raise UserError(f"{args.target} holds no {CHECKPOINT}")
    out = prepare_output(Path(args.out) if args.out else
                         ckpt_dir / f"variance-{time.strftime('%Y%m%d-%H%M%S')}.json", args.force)
    result = measure_variance(args.target, args.batches, args.batch_size, args.baselines, args.reference,
                              args.fit_batches, args.decompose, args.states, args.seed, progress=not args.quiet)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(format_table(result))
    png = plot_result(result, out.with_suffix(".png"))
    print(f"→ {out}" + (f", {png}" if png else " (no plot: matplotlib is not installed)"))
    return 0


def format_table(result: dict[str, Any]) -> str:
    """The result as Markdown tables (estimators; the decomposition when measured)."""
    lines = [f"{result['env']} at step {result['global_step']} (trained with {result['trained_baseline']}): "
             f"{result['batches']} batches of {result['batch_size']}, reference {result['reference_rows']} rows, "
             f"{result['params']} policy parameters",
             "", "| baseline | variance (tr/P) | SNR | 1/SNR vs state [95% CI] | cosine | rel. error | ref. cosine "
                 "| expl. var. |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in result["estimators"].items():
        ratio = row.get("relative_variance_vs_state")
        vs = f"{ratio['ratio']:.3f} [{ratio['low']:.3f}, {ratio['high']:.3f}]" if ratio else "–"
        lines.append(f"| {name} | {row['variance']:.4g} | {row['snr']:.3g} | {vs} | {row['cosine']:.3f} | "
                     f"{row['relative_error']:.3f} | {row['reference_cosine']:.3f} | {row['explained_variance']:.3f} |")
    dec = result.get("decomposition")
    if dec:
        lines += ["", f"Decomposition (per-sample, unnormalized advantages; {dec['states']['mean']:.0f} states, "
                      f"re-rolls of {dec['reroll_steps']['mean']:.0f} steps), mean ± s.e. over states:",
                  "", "| term | value |", "|---|---:|"]
        for key, val in dec.items():
            if key not in ("states", "reroll_steps"):
                lines.append(f"| {key} | {val['mean']:.4g} ± {val['se']:.2g} |")
    return "\n".join(lines)


def plot_result(result: dict[str, Any], path: Path) -> Path | None:
    """Bars of variance and SNR per baseline, and the decomposition when measured (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = result["estimators"]
    dec = result.get("decomposition")
    fig, axes = plt.subplots(1, 3 if dec else 2, figsize=(12 if dec else 8, 3.6))
    names = list(rows)
    axes[0].bar(names, [rows[n]["variance"] for n in names], color="tab:blue")
    axes[0].set_yscale("log")
    axes[0].set_title("gradient variance (tr / P)")
    axes[1].bar(names, [rows[n]["snr"] for n in names], color="tab:green")
    axes[1].set_yscale("log")
    axes[1].set_title("SNR ‖g_ref‖² / tr Var")
    if dec:
        keys = [k for k in dec if k not in ("states", "reroll_steps")]
        means = [max(dec[k]["mean"], 1e-12) for k in keys]
        axes[2].bar([k.replace("sigma_", "Σ_").replace("factorized:", "f:") for k in keys], means,
                    yerr=[dec[k]["se"] for k in keys], color="tab:orange")
        axes[2].set_yscale("log")
        axes[2].set_title("decomposition (per sample)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.suptitle(f"{result['env']} {result.get('env_kwargs') or ''} step {result['global_step']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
