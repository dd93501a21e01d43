"""``python -m rlctl.bench.recurrent``: recurrent against feed-forward policies, on the memory task and the UAV.

``memory`` trains ``rlctl/MemoryCue-v0`` (a cue shown at the first step, to be named at the last) with the
feed-forward policy (``mlp``) and the two recurrent cores (``gru``, ``lstm``), one ``rlctl train`` process per
variant and seed (claimed with lock files, resumable), each ending with a deterministic evaluation. The
page, ``recurrent.md`` with a PNG, also summarises the quadrotor runs that ``rlctl bench uav --policies mlp,lstm``
left in ``<out>/runs/uav/`` (feed-forward vs LSTM on the same seeds and budget; the full table is ``uav.md``).
Seeds are table seeds (101, …, :mod:`rlctl.bench.seeds`).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from rlctl.bench.experiment import curve, matrix_parser, plot_band, report_header, run_matrix
from rlctl.bench.stats import mean_std

TASKS = {"memory": ("rlctl/MemoryCue-v0", 16_384)}  # env id, default step budget
VARIANTS = ("mlp", "gru", "lstm")
SETTINGS = ["env.num_envs=8", "ppo.num_steps=64", "ppo.bptt_steps=16", "ppo.minibatch_size=128",
            "ppo.learning_rate=0.001", "policy.recurrent_size=32"]
"""the README's MemoryCue command, for every variant (``bptt_steps`` only matters to the recurrent ones)"""


def _name(task: str, variant: str, seed: int) -> str:
    return f"{task}__{variant}__s{seed}"


def train_matrix(tasks: list[str], variants: list[str], seeds: list[int], steps: int, eval_every: int,
                 episodes: int, jobs: int, runs: Path) -> None:
    from rlctl.bench.matrix import ClaimedJob, run_claimed

    runs.mkdir(parents=True, exist_ok=True)
    claimed = []
    for seed in seeds:  # interleaved per seed, so the wall-time ratios compare runs that shared the machine alike
        for task in tasks:
            env_id, default_steps = TASKS[task]
            for variant in variants:
                name = _name(task, variant, seed)
                sets = [*SETTINGS, f"policy.recurrent={'none' if variant == 'mlp' else variant}", f"run.seed={seed}",
                        f"ppo.total_timesteps={steps or default_steps}", f"run.eval_episodes={episodes}"]
                cmd = [sys.executable, "-m", "rlctl.cli", "train", "--env", env_id, "--run-dir", str(runs / name),
                       "--force", "--quiet", *(arg for item in sets for arg in ("--set", item))]
                claimed.append(ClaimedJob(name, cmd, runs / name / "final_eval.json", runs / f"{name}.lock",
                                          runs / f"{name}.log"))
    run_claimed(claimed, jobs)


def _wall_s(run: Path) -> float:
    from rlctl.logger import read_metrics

    times = [float(r["time"]) for r in read_metrics(run / "metrics.jsonl")]
    return max(times) - min(times)


def report(tasks: list[str], variants: list[str], seeds: list[int], episodes: int, runs: Path, out: Path,
           command: str) -> None:
    """``recurrent.md`` and ``recurrent_memory.png`` from the finished runs, plus the UAV summary."""
    lines = [*report_header("Recurrent (LSTM/GRU) against feed-forward PPO", command, seeds),
             f"*Success*: the final policy, deterministic, {episodes} episodes. *Wall ÷ mlp*: a run's wall time over "
             "the `mlp` run's of the same seed, median over seeds (the runs shared the 2-core machine, so only this "
             "ratio is reported).", ""]
    for task in tasks:
        env_id, _ = TASKS[task]
        lines += [f"## {task}: {env_id}", "", "Settings (every variant): " + ", ".join(f"`{s}`" for s in SETTINGS)
                  + ".", "", "| policy | success | wall ÷ mlp | seeds |", "|---|---:|---:|---:|"]
        curves: dict[str, list[tuple[list[int], list[float]]]] = {}
        for variant in variants:
            success, ratios, done = [], [], 0
            for seed in seeds:
                run = runs / _name(task, variant, seed)
                if not (run / "final_eval.json").is_file():
                    continue
                done += 1
                success.append(json.loads((run / "final_eval.json").read_text()).get("success_rate") or 0.0)
                plain = runs / _name(task, "mlp", seed)
                if (plain / "metrics.jsonl").is_file():
                    ratios.append(_wall_s(run) / _wall_s(plain))
                curves.setdefault(variant, []).append(curve(run, "charts/success_rate"))
            ratio = f"{statistics.median(ratios):.2f}" if ratios else "—"
            lines.append(f"| {variant} | {mean_std(success, 2)} | {ratio} | {done} |")
        lines += ["", f"![{task}](recurrent_{task}.png)", ""]
        _plot(curves, out / f"recurrent_{task}.png", env_id)
    lines += uav_summary(out / "runs" / "uav")
    (out / "recurrent.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def uav_summary(summaries: Path) -> list[str]:
    """Feed-forward against LSTM on the quadrotor tasks, from ``rlctl bench uav``'s per-run summaries: the seeds
    both policies finished (table seeds only), held-out ÷ nominal per seed, and the wall-time ratio."""
    from rlctl.bench.seeds import is_table_seed
    from rlctl.bench.uav import TASKS as UAV_TASKS

    lines = ["## UAV: feed-forward vs LSTM, trained on the randomized set", ""]
    rows = []
    for task in UAV_TASKS:
        def evals(row: str, task: str = task) -> dict[int, dict[str, Any]]:
            found = {}
            for path in summaries.glob(f"{task}__{row}__s*.eval.json"):
                seed = int(path.name.split(".")[0].rpartition("__s")[2])
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


def _plot(curves: dict[str, list[tuple[list[int], list[float]]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for variant, runs in curves.items():
        plot_band(ax, runs, variant, f"C{VARIANTS.index(variant)}")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xlabel("env steps")
    ax.set_ylabel("training success rate")
    ax.set_title(f"{title}: mean and min–max over seeds", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = matrix_parser("python -m rlctl.bench.recurrent", __doc__.split("\n\n")[0], list(TASKS), list(VARIANTS),
                      ",".join(TASKS), (0, "training budget per run (default: memory 16384)"),
                      "unused (no periodic evaluation)", 100, "runs/bench-recurrent")
    return run_matrix("rlctl.bench.recurrent", p, argv, list(TASKS), list(VARIANTS), train_matrix, report)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
