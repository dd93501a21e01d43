"""``python -m rlctl.bench.recurrent``: recurrent against feed-forward policies, on the memory task and the UAV.

``memory`` trains ``rlctl/MemoryCue-v0`` (a cue shown at the first step, to be named at the last) with the
feed-forward policy (``mlp``) and the two recurrent cores (``gru``, ``lstm``), one ``rlctl train`` process per
variant and seed (claimed with lock files, resumable), each ending with a deterministic evaluation. The
page, ``recurrent.md`` with a PNG, also summarises the quadrotor runs that ``rlctl bench uav --policies mlp,lstm``
left in ``<out>/runs/uav/`` (feed-forward vs LSTM on the same seeds and budget; the full table is ``uav.md``).
Seeds are table seeds (101, …, :mod:`rlctl.bench.seeds`). ``pong`` (one frame per observation) is not in the
default list: ~1 h per run on a 2-core CPU; ``--tasks pong --seeds 3 --episodes 10``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlctl.bench.experiment import curve, keep_runs, matrix_parser, plot_band, report_header, run_matrix, wall_ratio
from rlctl.bench.stats import mean_std
from rlctl.rundir import FINAL_EVAL

if TYPE_CHECKING:
    from rlctl.bench.experiment import Command

TASKS: dict[str, tuple[str, int, list[str], str]] = {  # env id, default step budget, settings, final metric
    # the README's MemoryCue command
    "memory": ("rlctl/MemoryCue-v0", 16_384, ["env.num_envs=8", "ppo.num_steps=64", "ppo.bptt_steps=16",
                                              "ppo.minibatch_size=128", "ppo.learning_rate=0.001",
                                              "policy.recurrent_size=32"], "success_rate"),
    # the preset (InvertedPendulum-v5's) with advantages computed once per update, for both variants (the table
    # was set up before recurrent policies could recompute them)
    "pendulum-p": ("rlctl/InvertedPendulumP-v5", 200_000, ["ppo.recompute_adv=false", "ppo.bptt_steps=32"],
                   "mean_return"),
    # one frame per observation, so the ball's velocity is only in memory (CleanRL's ppo_atari_lstm setting:
    # whole 128-step rollouts as sequences, 2 per minibatch of 256); the atari preset otherwise, with its LR and
    # clip annealed over this budget (the 4-frame preset reaches a last-20 mean of +2.8 at 3M, results/atari.md)
    "pong": ("ALE/Pong-v5", 3_000_000, ["env.kwargs.frame_stack=1", "ppo.bptt_steps=128"], "mean_return"),
}
"""every variant of a task trains with the task's settings (``bptt_steps`` only matters to the recurrent ones)"""
VARIANTS = ("mlp", "gru", "lstm")
CURVES = {"success_rate": "charts/success_rate", "mean_return": "charts/episodic_return"}


def _name(task: str, variant: str, seed: int) -> str:
    return f"{task}__{variant}__s{seed}"


def train_matrix(tasks: list[str], variants: list[str], seeds: list[int], steps: int, eval_every: int,
                 episodes: int, jobs: int, runs: Path) -> None:
    from rlctl.bench.matrix import run_claimed, train_job

    runs.mkdir(parents=True, exist_ok=True)
    claimed = []
    for seed in seeds:  # interleaved per seed, so the wall-time ratios compare runs that shared the machine alike
        for task in tasks:
            env_id, default_steps, settings, _ = TASKS[task]
            for variant in variants:
                name = _name(task, variant, seed)
                sets = [*settings, f"policy.recurrent={'none' if variant == 'mlp' else variant}", f"run.seed={seed}",
                        f"ppo.total_timesteps={steps or default_steps}", f"run.eval_episodes={episodes}"]
                claimed.append(train_job(name, env_id, sets, runs / name, runs / name / FINAL_EVAL, runs))
    run_claimed(claimed, jobs)


def report(tasks: list[str], variants: list[str], seeds: list[int], episodes: int, runs: Path, out: Path,
           command: Command) -> None:
    """``recurrent.md`` and ``recurrent_memory.png`` from the finished runs, plus the UAV summary."""
    lines = [*report_header("Recurrent (LSTM/GRU) against feed-forward PPO", command, seeds),
             f"*Final*: the final policy's success rate or mean return, deterministic (the mean action), {episodes} "
             "episodes (seeds 10000 + seed + i). *Training*: the mean of the last 100 logged values of the training "
             "curve (the stochastic policy as it explored; for returns, its last 100 episodes). *Wall ÷ mlp*: a "
             "run's wall time over the `mlp` run's of the same seed, median over seeds (the runs shared the 2-core "
             "machine, so only this ratio is reported).", ""]
    for task in tasks:
        env_id, _, settings, metric = TASKS[task]
        lines += [f"## {task}: {env_id}", "", "Settings (every variant, on top of the preset): "
                  + ", ".join(f"`{s}`" for s in settings) + ".", "",
                  f"| policy | final {metric.replace('_', ' ')} | training (`{CURVES[metric]}`) | wall ÷ mlp | seeds |",
                  "|---|---:|---:|---:|---:|"]
        curves: dict[str, list[tuple[list[int], list[float]]]] = {}
        for variant in variants:
            success, training, ratios, done = [], [], [], 0
            for seed in seeds:
                run = runs / _name(task, variant, seed)
                if not (run / FINAL_EVAL).is_file():
                    continue
                done += 1
                success.append(json.loads((run / FINAL_EVAL).read_text()).get(metric) or 0.0)
                timed = wall_ratio(run, runs / _name(task, "mlp", seed))
                if timed is not None:
                    ratios.append(timed)
                curves.setdefault(variant, []).append(curve(run, CURVES[metric]))
                training.append(float(np.mean(curves[variant][-1][1][-100:])))
            if not done:  # a variant this task was not run with
                continue
            ratio = f"{statistics.median(ratios):.2f}" if ratios else "—"
            digits = 2 if metric == "success_rate" else 0
            cells = f"{mean_std(success, digits)} | {mean_std(training, digits)}"
            lines.append(f"| {variant} | {cells} | {ratio} | {done} |")
        lines += ["", f"![{task}](recurrent_{task}.png)", ""]
        _plot(curves, out / f"recurrent_{task}.png", env_id, metric)
    lines += uav_summary(out / "runs" / "uav")
    (out / "recurrent.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def uav_summary(summaries: Path) -> list[str]:
    """Feed-forward against LSTM on the quadrotor tasks, from ``rlctl bench uav``'s per-run summaries: the seeds
    both policies finished (table seeds only), held-out ÷ nominal per seed, and the wall-time ratio."""
    from rlctl.bench.seeds import is_table_seed
    from rlctl.bench.uav import TASKS as UAV_TASKS
    from rlctl.bench.uav import _seed

    lines = ["## UAV: feed-forward vs LSTM, trained on the randomized set", ""]
    rows = []
    for task in UAV_TASKS:
        def evals(row: str, task: str = task) -> dict[int, dict[str, Any]]:
            found = {}
            for path in summaries.glob(f"{task}__{row}__s*.eval.json"):
                seed = _seed(path)
                if is_table_seed(seed):
                    found[seed] = json.loads(path.read_text())["results"]["policy"]
            return found

        mlp, lstm = evals("randomized"), evals("randomized-lstm")
        seeds = sorted(set(mlp) & set(lstm))
        if not seeds:
            continue
        for label, runs, row in (("feed-forward", mlp, "randomized"), ("LSTM", lstm, "randomized-lstm")):
            gaps = [runs[s]["held-out"]["success_rate"] / runs[s]["nominal"]["success_rate"] for s in seeds
                    if runs[s]["nominal"]["success_rate"] > 0]
            walls = [json.loads((summaries / f"{task}__{row}__s{s}.train.json").read_text())["wall_s"] for s in seeds]
            rows.append(f"| {task} | {label} | {len(seeds)} ({', '.join(map(str, seeds))}) | "
                        f"{mean_std([runs[s]['nominal']['success_rate'] for s in seeds], 2)} | "
                        f"{mean_std([runs[s]['held-out']['success_rate'] for s in seeds], 2)} | {mean_std(gaps, 2)} | "
                        f"{statistics.mean(walls) / 60:.0f} |")
    if not rows:
        return [*lines, "No seed has finished with both policies yet (`rlctl bench uav --policies mlp,lstm`).", ""]
    return [
        *lines,
        "From `rlctl bench uav --train-sets randomized --policies mlp,lstm` (full table with intervals and failure "
        "causes: [uav.md](uav.md)); the same seeds, budget, preset (CAPS included) and evaluation episodes for both. "
        "Wall minutes: mean per run, two runs at a time on the 2-core machine with other work alongside (compare "
        "them only with each other).", "",
        "| task | policy | seeds | nominal | held-out | held-out ÷ nominal | wall (min) |",
        "|---|---|---|---:|---:|---:|---:|", *rows, ""]


def _plot(curves: dict[str, list[tuple[list[int], list[float]]]], path: Path, title: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for variant, runs in curves.items():
        plot_band(ax, runs, variant, f"C{VARIANTS.index(variant)}")
    if metric == "success_rate":
        ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xlabel("env steps")
    ax.set_ylabel("training success rate" if metric == "success_rate" else "training episodic return")
    ax.set_title(f"{title}: mean and min–max over seeds", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _keep(tasks: list[str], variants: list[str], seeds: list[int], runs: Path, dest: Path) -> None:
    for task in tasks:  # each task's own curve: the one its report reads
        names = [_name(task, variant, seed) for variant in variants for seed in seeds]
        keep_runs(names, runs, dest, (CURVES[TASKS[task][3]],))


def main(argv: list[str] | None = None) -> int:
    p = matrix_parser("python -m rlctl.bench.recurrent", __doc__.split("\n\n")[0], list(TASKS), list(VARIANTS),
                      "memory,pendulum-p", (0, "training budget per run (default: the task's, "
                                          + ", ".join(f"{t} {spec[1]}" for t, spec in TASKS.items()) + ")"),
                      "unused (no periodic evaluation)", 100, "runs/bench-recurrent")
    return run_matrix("rlctl.bench.recurrent", p, argv, list(TASKS), list(VARIANTS), train_matrix, report,
                      keep=_keep)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
