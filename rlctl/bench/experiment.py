"""What the task × variant × seed experiment scripts share (:mod:`.transfer`, :mod:`.curriculum`): their command
line, reading a run's curves, and mean-with-range curve plots."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rlctl.errors import UserError
from rlctl.rundir import FINAL_EVAL, METRICS

Curve = tuple[list[int], list[float]]


class Command(NamedTuple):
    """The command line a report names, and whether it only rebuilt the report from existing runs."""

    text: str
    report_only: bool


def matrix_parser(prog: str, description: str, tasks: list[str], variants: list[str], default_tasks: str,
                  steps: tuple[int, str], eval_help: str, episodes: int, runs_dir: str) -> argparse.ArgumentParser:
    """The options every experiment script takes; ``steps`` is (default, help)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--tasks", default=default_tasks, help=f"comma-separated, from {','.join(tasks)}")
    p.add_argument("--variants", default=",".join(variants), help=f"comma-separated, from {','.join(variants)}")
    p.add_argument("--seeds", type=int, default=5, help="table seeds 101, 102, … (default 5)")
    p.add_argument("--steps", type=int, default=steps[0], help=steps[1])
    p.add_argument("--eval-every", type=int, default=10_000, help=f"{eval_help} (default 10000)")
    p.add_argument("--episodes", type=int, default=episodes, help=f"final evaluation episodes (default {episodes})")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default 2)")
    p.add_argument("--runs-dir", default=runs_dir, help="where the training runs go")
    p.add_argument("--out", default="results", help="output directory (default results/)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report")
    p.add_argument("--keep", metavar="DIR", help="also copy what the report reads into DIR (committable; rebuild "
                                                 "with --report-only --runs-dir DIR)")
    return p


def parse_matrix(args: argparse.Namespace, tasks: list[str], variants: list[str],
                 min_steps: int = 0) -> tuple[list[str], list[str]] | None:
    """The chosen tasks and variants, or None after printing one ``error:`` line (a bad name or count)."""
    chosen_tasks = [t for t in args.tasks.split(",") if t]
    chosen_variants = [v for v in args.variants.split(",") if v]
    try:
        if bad := [t for t in chosen_tasks if t not in tasks] + [v for v in chosen_variants if v not in variants]:
            raise UserError(f"unknown tasks or variants {bad}")
        if min(args.seeds, args.eval_every, args.episodes, args.jobs) < 1 or args.steps < min_steps:
            raise UserError(f"--seeds, --eval-every, --episodes and --jobs must be positive, --steps >= {min_steps}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return chosen_tasks, chosen_variants


def run_matrix(module: str, parser: argparse.ArgumentParser, argv: list[str] | None, tasks: list[str],
               variants: list[str], train_matrix: Callable[..., None], report: Callable[..., None],
               min_steps: int = 0, keep: Callable[..., None] | None = None) -> int:
    """An experiment script's ``main``: parse, train what is missing (``train_matrix``), write the report; then,
    with ``--keep DIR``, ``keep(tasks, variants, seeds, runs, DIR)`` (the script's call of :func:`keep_runs`)."""
    from rlctl.bench.seeds import table_seeds

    args = parser.parse_args(argv)
    chosen = parse_matrix(args, tasks, variants, min_steps)
    if chosen is None:
        return 2
    seeds, runs, out = table_seeds(args.seeds), Path(args.runs_dir), Path(args.out)
    if not args.report_only:
        try:
            train_matrix(*chosen, seeds, args.steps, args.eval_every, args.episodes, args.jobs, runs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    report(*chosen, seeds, args.episodes, runs, out, matrix_command(module, args))
    if keep is not None and args.keep:
        keep(*chosen, seeds, runs, Path(args.keep))
    return 0


def matrix_command(module: str, args: argparse.Namespace) -> Command:
    """The command line that reproduces this experiment, for the report; with ``--report-only``, the one that
    rebuilds the report (its budget flags would not be the runs', which may differ from task to task)."""
    matrix = f"python -m {module} --tasks {args.tasks} --variants {args.variants} --seeds {args.seeds} "
    if args.report_only:
        return Command(matrix + f"--episodes {args.episodes} --runs-dir {args.runs_dir} --out {args.out} "
                       "--report-only", True)
    return Command(matrix + (f"--steps {args.steps} --eval-every {args.eval_every} --episodes {args.episodes} "
                             f"--jobs {args.jobs} --runs-dir {args.runs_dir} --out {args.out}"), False)


def report_header(title: str, command: Command, seeds: list[int]) -> list[str]:
    """A report's first lines: title, the command that made (or rebuilt) it, the statistic and the seeds."""
    from rlctl.bench.stats import SPREAD

    made = (f"Rebuilt from the runs with `{command.text}`; each run's training settings are in its saved "
            "`config.yaml`." if command.report_only else
            f"Command: `{command.text}` (add `--report-only` to rebuild this page from the runs)")
    return [f"# {title}", "", made, "",
            f"Statistic: {SPREAD}; seeds {seeds[0]}–{seeds[-1]} (table seeds, apart from any screening seed)."]


def curve(run: Path, tag: str) -> Curve:
    """Steps and values of one logged scalar of a run."""
    steps, values, _ = counted_curve(run, tag)
    return steps, values


def counted_curve(run: Path, tag: str) -> tuple[list[int], list[float], list[int]]:
    """Steps, values and how many logged values each row stands for (``n``: rows that :func:`keep_runs` merged
    hold the mean of ``n``; 1 otherwise), for means over the run's rows that are the same as the original's."""
    from rlctl.logger import read_metrics

    rows = [r for r in read_metrics(run / METRICS) if r["tag"] == tag]
    return [int(r["step"]) for r in rows], [float(r["value"]) for r in rows], [int(r.get("n", 1)) for r in rows]


def wall_s(run: Path) -> float | None:
    """A run's wall time: from its first to its last ``metrics.jsonl`` row; None for a run resumed after its job
    was killed (that span holds the interruption and the steps done twice)."""
    from rlctl.logger import read_metrics
    from rlctl.runs import was_resumed

    if was_resumed(run):
        return None
    times = [float(r["time"]) for r in read_metrics(run / METRICS)]
    return max(times) - min(times)


def wall_ratio(run: Path, plain: Path) -> float | None:
    """``run``'s wall time over ``plain``'s, or None when one has no metrics or was resumed (:func:`wall_s`)."""
    if not (run / METRICS).is_file() or not (plain / METRICS).is_file():
        return None
    a, b = wall_s(run), wall_s(plain)
    return a / b if a is not None and b else None


def keep_runs(names: list[str], runs: Path, dest: Path, tags: tuple[str, ...],
              files: tuple[str, ...] = (FINAL_EVAL,), per_step: tuple[str, ...] = (),
              splits: Callable[[Path], list[float]] | None = None, width: int = 2048, tail: int = 20) -> None:
    """Copy what a report reads into ``dest`` (committable, a few KB per run): the run's ``files`` that exist and
    the ``tags`` of ``metrics.jsonl``, with its first and last rows (for the wall time). Unfinished runs (no
    ``final_eval.json``) are left out.

    Rows of the ``per_step`` tags (one per episode: tens of thousands in a run of short episodes) are merged per
    ``width`` env steps, never across a step of ``splits(run)`` (:func:`merge_per_step`), all but their last
    ``tail``: a mean over the rows up to a split (weighted by ``n``, :func:`counted_curve`) is then the original's.
    """
    import json

    for name in names:
        run = runs / name
        if not (run / FINAL_EVAL).is_file():
            continue
        lines = (run / METRICS).read_text().splitlines()
        middle = [json.loads(line) for line in lines[1:-1]]
        kept = [json.dumps(r) for r in middle if r["tag"] in tags and r["tag"] not in per_step]
        cuts = splits(run) if splits is not None and per_step else []
        for tag in per_step:
            kept += [json.dumps(r) for r in merge_per_step([r for r in middle if r["tag"] == tag], width, cuts, tail)]
        target = dest / name
        target.mkdir(parents=True, exist_ok=True)
        (target / METRICS).write_text("\n".join([*lines[:1], *kept, *lines[1:][-1:]]) + "\n")
        for file in files:
            if (run / file).is_file():
                (target / file).write_text((run / file).read_text())


def merge_per_step(rows: list[dict[str, Any]], width: int, splits: list[float], tail: int) -> list[dict[str, Any]]:
    """One tag's rows merged per ``width`` steps, never across a step of ``splits`` (rows at a split stay on its
    lower side), except the last ``tail``, kept as they are. A merged row has the mean ``value`` of the rows it
    stands for, their count ``n`` (rows merged before count as their ``n``), the step of the last and the time of
    the first."""
    import bisect

    head, rest = (rows[:-tail], rows[-tail:]) if tail > 0 else (rows, [])
    merged: list[dict[str, Any]] = []
    key = None
    for row in head:
        n, row_key = int(row.get("n", 1)), (int(row["step"]) // width, bisect.bisect_left(splits, row["step"]))
        if merged and row_key == key:
            total = merged[-1]["n"] + n
            merged[-1]["value"] = (merged[-1]["value"] * merged[-1]["n"] + row["value"] * n) / total
            merged[-1].update(step=row["step"], n=total)
        else:
            merged.append({**row, "n": n})
        key = row_key
    return merged + rest


def plot_band(ax: Any, runs: list[Curve], label: str, color: str | None = None, linestyle: str = "-") -> None:
    """The mean over runs on a common step grid (up to the shortest run), with the min–max range shaded."""
    runs = [(s, v) for s, v in runs if s]
    if not runs:
        return
    grid = np.linspace(0, min(max(s) for s, _ in runs), 50)
    values = np.stack([np.interp(grid, s, v) for s, v in runs])
    ax.plot(grid, values.mean(0), label=f"{label} ({len(values)} seeds)", color=color, linestyle=linestyle)
    ax.fill_between(grid, values.min(0), values.max(0), alpha=0.15, color=color)
