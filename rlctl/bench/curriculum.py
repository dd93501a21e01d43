"""``python -m rlctl.bench.curriculum``: demo-seeded starting-state curricula against plain PPO on sparse tasks.

For each task (a sparse env and a scripted controller that was never trained on it) the demos are recorded
first (``rlctl demo record``, seeds 1000+, successful episodes only), then one ``rlctl train`` process per
variant and seed (claimed with lock files, resumable): ``ppo`` (no demo), ``demo1`` (the first demo episode)
and ``demo5`` (five). Every run has the same budget, 8 envs × 256 steps per rollout, and ends with a
deterministic evaluation from the env's own initial states (``--episodes`` episodes, seeds 10000 + seed + i).
The report, ``demo-curriculum.md`` with PNGs, is built from the runs' ``metrics.jsonl`` and
``final_eval.json``. Seeds are table seeds (101, …, :mod:`rlctl.bench.seeds`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlctl.bench.experiment import curve, keep_runs, matrix_parser, plot_band, report_header, run_matrix, wall_ratio
from rlctl.bench.stats import mean_std
from rlctl.rundir import FINAL_EVAL

if TYPE_CHECKING:
    from rlctl.bench.experiment import Command

TASKS: dict[str, tuple[str, str, int]] = {  # env id, demo source, default step budget
    "reacher": ("rlctl/ReacherSparse-v0", "controller:reacher", 300_000),
    "push": ("rlctl/ArmPushSparse-v0", "controller:push", 100_000),
}
VARIANTS = {"ppo": 0, "demo1": 1, "demo5": 5}  # variant → demo episodes
DEMO_SEED = 1000


def _name(task: str, variant: str, seed: int) -> str:
    return f"{task}__{variant}__s{seed}"


def _demo(runs: Path, task: str, episodes: int) -> Path:
    return runs / f"{task}_demo{episodes}.npz"


def record_demos(tasks: list[str], variants: list[str], runs: Path) -> None:
    from rlctl.demos import record_demo

    runs.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        env_id, source, _ = TASKS[task]
        for episodes in sorted({VARIANTS[v] for v in variants if VARIANTS[v]}):
            path = _demo(runs, task, episodes)
            if not path.is_file():
                record_demo(env_id, source, episodes, path, DEMO_SEED, only_successful=True)


def _sets(task: str, variant: str, seed: int, steps: int, eval_every: int, episodes: int, runs: Path) -> list[str]:
    default_steps = TASKS[task][2]
    sets = [f"run.seed={seed}", f"ppo.total_timesteps={steps or default_steps}", f"run.eval_episodes={episodes}",
            "env.num_envs=8", "ppo.num_steps=256"]
    if VARIANTS[variant]:
        sets += [f"curriculum.demos=[{_demo(runs, task, VARIANTS[variant])}]", f"curriculum.eval_every={eval_every}",
                 "curriculum.eval_episodes=20"]
    return sets


def train_matrix(tasks: list[str], variants: list[str], seeds: list[int], steps: int, eval_every: int,
                 episodes: int, jobs: int, runs: Path) -> None:
    from rlctl.bench.matrix import run_claimed, train_job

    record_demos(tasks, variants, runs)
    claimed = [train_job(name, TASKS[task][0], _sets(task, variant, seed, steps, eval_every, episodes, runs),
                         runs / name, runs / name / FINAL_EVAL, runs)
               for seed in seeds for task in tasks for variant in variants  # interleaved: comparable wall times
               for name in [_name(task, variant, seed)]]
    run_claimed(claimed, jobs)


REPORT_TAGS = ("curriculum/start_fraction", "eval/own_start_success_rate", "charts/success_rate")


def _keep(tasks: list[str], variants: list[str], seeds: list[int], runs: Path, dest: Path) -> None:
    keep_runs([_name(task, variant, seed) for task in tasks for variant in variants for seed in seeds], runs, dest,
              REPORT_TAGS)


def report(tasks: list[str], variants: list[str], seeds: list[int], episodes: int, runs: Path, out: Path,
           command: Command) -> None:
    """``demo-curriculum.md`` and one PNG per task, from the finished runs."""
    lines = [*report_header("Demo-seeded starting-state curricula against plain PPO", command, seeds),
             f"*Success*: the final policy from the env's own initial states, deterministic, {episodes} episodes "
             "(seeds 10000 + seed + i), no demo involved.",
             "*Reached demo start*: runs whose start point passed the beginning of the demos (every window start "
             "is then the env's own reset), and the mean step at which they did.",
             "*Wall ÷ ppo*: a run's wall time over the `ppo` run's of the same seed, median over seeds. The runs "
             "shared the 2-core machine (two at a time, variants interleaved per seed, other work alongside), so "
             "only this ratio is reported, no absolute timing.", ""]
    for task in tasks:
        env_id, source, _ = TASKS[task]
        lines += [f"## {task}: {env_id}, demos by `{source}`", "",
                  "| variant | success | reached demo start | wall ÷ ppo | seeds |", "|---|---:|---:|---:|---:|"]
        curves: dict[str, list[tuple[list[int], list[float]]]] = {}
        starts: dict[str, list[tuple[list[int], list[float]]]] = {}
        for variant in variants:
            success, ratios, reached, done = [], [], [], 0
            for seed in seeds:
                run = runs / _name(task, variant, seed)
                if not (run / FINAL_EVAL).is_file():
                    continue
                done += 1
                final = json.loads((run / FINAL_EVAL).read_text())
                success.append(final.get("success_rate") or 0.0)
                timed = wall_ratio(run, runs / _name(task, "ppo", seed))
                if timed is not None:
                    ratios.append(timed)
                if VARIANTS[variant]:
                    steps, fraction = curve(run, "curriculum/start_fraction")
                    starts.setdefault(variant, []).append((steps, fraction))
                    hit = [s for s, f in zip(steps, fraction, strict=True) if f >= 1.0]
                    if hit:
                        reached.append(hit[0])
                    curves.setdefault(variant, []).append(curve(run, "eval/own_start_success_rate"))
                else:
                    curves.setdefault(variant, []).append(curve(run, "charts/success_rate"))
            reach = "—" if not VARIANTS[variant] else \
                f"{len(reached)}/{done}" + (f" at {np.mean(reached) / 1e3:.0f}k" if reached else "")
            ratio = f"{np.median(ratios):.2f}" if ratios else "—"
            lines.append(f"| {variant} | {mean_std(success, 2)} | {reach} | {ratio} | {done} |")
        lines += ["", f"![{task}](demo-curriculum_{task}.png)", ""]
        _plot(curves, starts, out / f"demo-curriculum_{task}.png", env_id)
    (out / "demo-curriculum_tables.md").write_text("\n".join(lines) + "\n")


def _plot(curves: dict[str, list[tuple[list[int], list[float]]]],
          starts: dict[str, list[tuple[list[int], list[float]]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for ax, data, label in ((top, curves, "success from the env's own starts"),
                            (bottom, starts, "start point (fraction of the demo)")):
        for variant, runs in data.items():
            plot_band(ax, runs, variant, f"C{list(VARIANTS).index(variant)}")
        ax.set_ylabel(label, fontsize=8)
        ax.legend(fontsize=8)
    top.set_title(f"{title} (ppo: training episodes; demo: evaluations every eval_every steps)", fontsize=9)
    bottom.set_xlabel("env steps")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    budgets = ", ".join(f"{task} {spec[2]}" for task, spec in TASKS.items())
    p = matrix_parser("python -m rlctl.bench.curriculum", __doc__.split("\n\n")[0], list(TASKS), list(VARIANTS),
                      ",".join(TASKS), (0, f"training budget per run (default: the task's, {budgets})"),
                      "evaluations from the env's own starts", 50, "runs/bench-curriculum")
    return run_matrix("rlctl.bench.curriculum", p, argv, list(TASKS), list(VARIANTS), train_matrix, report,
                      keep=_keep)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
