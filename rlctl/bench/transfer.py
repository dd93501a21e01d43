"""``rlctl bench transfer``: agency transfer from a working controller against plain PPO and the controller alone.

For each task (env + its controller) and variant (``ppo``: no baseline; ``prob``, ``calf``, ``jsrl``,
``residual``: ``--baseline-policy`` with that arbiter and a linear transfer), one ``rlctl train`` process per
seed (claimed with lock files, resumable). Every run evaluates the learner alone (baseline disconnected) every
``--eval-every`` steps during training and, at the end, deterministically on ``--episodes`` seeded episodes;
the controller alone is evaluated on the same episodes. The report, ``agency-transfer.md`` with learning-curve
PNGs, is built from the runs' ``metrics.jsonl`` and ``final_eval.json``. Seeds are table seeds (101, …,
:mod:`rlctl.bench.seeds`).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.bench.experiment import curve, matrix_parser, plot_band, report_header, run_matrix
from rlctl.bench.stats import mean_std

TASKS: dict[str, tuple[str, str]] = {
    "pendulum": ("Pendulum-v1", "controller:energy"),
    "waypoint": ("rlctl/QuadWaypoint-v0", "controller:pid"),
    "push": ("rlctl/ArmPush-v0", "controller:push"),
}
VARIANTS = ("ppo", "prob", "calf", "jsrl", "residual")
TRANSFER_END = 0.8  # arbiter.transfer_end of every run here (the default)
EVAL_SEED = 10_000  # the final evaluation's episodes: seed + 10000 + i, as rlctl train's


def _name(task: str, variant: str, seed: int) -> str:
    return f"{task}__{variant}__s{seed}"


def _command(task: str, variant: str, seed: int, steps: int, eval_every: int, episodes: int, run: Path) -> list[str]:
    env_id, baseline = TASKS[task]
    sets = [f"run.seed={seed}", f"ppo.total_timesteps={steps}", f"run.eval_episodes={episodes}"]
    if variant != "ppo":
        sets += [f"arbiter.baseline={baseline}", f"arbiter.mode={variant}", f"arbiter.eval_every={eval_every}",
                 "arbiter.eval_episodes=10"]
    return [sys.executable, "-m", "rlctl.cli", "train", "--env", env_id, "--run-dir", str(run), "--force", "--quiet",
            *(arg for item in sets for arg in ("--set", item))]


def train_matrix(tasks: list[str], variants: list[str], seeds: list[int], steps: int, eval_every: int,
                 episodes: int, jobs: int, runs: Path) -> None:
    from rlctl.bench.matrix import ClaimedJob, run_claimed

    runs.mkdir(parents=True, exist_ok=True)
    claimed = [ClaimedJob(name, _command(task, variant, seed, steps, eval_every, episodes, runs / name),
                          runs / name / "final_eval.json", runs / f"{name}.lock", runs / f"{name}.log")
               for task in tasks for variant in variants for seed in seeds
               for name in [_name(task, variant, seed)]]
    run_claimed(claimed, jobs)


def baseline_alone(task: str, episodes: int, seed: int) -> dict[str, Any]:
    """The controller alone on the episodes a run's final evaluation plays (seed + 10000 + i)."""
    from rlctl.envs.controllers import make_controller
    from rlctl.envs.make import make_env
    from rlctl.evaluate import play_episode

    env_id, spec = TASKS[task]
    env = make_env(env_id)
    controller = make_controller(spec.removeprefix("controller:"), env)
    returns, record = [], {}  # type: ignore[var-annotated]
    for i in range(episodes):
        controller.reset()
        returns.append(play_episode(env, controller.act, seed + EVAL_SEED + i, record=record)[0])
    env.close()
    successes = [s for s in record.get("success", []) if s is not None]
    return {"returns": returns, "success_rate": float(np.mean(successes)) if successes else None}


def report(tasks: list[str], variants: list[str], seeds: list[int], episodes: int, runs: Path, out: Path,
           command: str) -> None:
    """``agency-transfer.md`` and one learning-curve PNG per task, from the finished runs."""
    lines = [*report_header("Agency transfer: a working controller first, the learned policy after", command, seeds),
             f"*Learner alone*: the final policy with the baseline disconnected, deterministic, {episodes} episodes "
             "(seeds 10000 + seed + i).",
             "*Mixture, transfer phase*: the mean training return of the episodes that ended before the baseline "
             "was disconnected (80% of the budget), baseline and learner acting under the arbiter, the policy "
             "sampling; for `ppo`, the same steps of its own training.",
             "*Last 20, training*: the last 20 training episodes (the learner alone by then).",
             "The machine was shared with other work while these ran: no timings are reported.", ""]
    for task in tasks:
        env_id, baseline = TASKS[task]
        alone = [baseline_alone(task, episodes, seed) for seed in seeds]
        lines += [f"## {task}: {env_id}, baseline `{baseline}`", "",
                  "| variant | learner alone: return | learner alone: success | mixture, transfer phase: return "
                  "| last 20, training: return | seeds |",
                  "|---|---:|---:|---:|---:|---:|"]
        base_returns = [statistics.mean(a["returns"]) for a in alone]
        base_success = [a["success_rate"] for a in alone if a["success_rate"] is not None]
        lines.append(f"| baseline alone | {mean_std(base_returns, 1)} | "
                     f"{mean_std(base_success, 2) if base_success else '—'} | — | — | {len(seeds)} |")
        curves: dict[str, list[tuple[list[int], list[float]]]] = {}
        for variant in variants:
            finals, successes, mixture, last, done = [], [], [], [], 0
            for seed in seeds:
                run = runs / _name(task, variant, seed)
                if not (run / "final_eval.json").is_file():
                    continue
                done += 1
                final = json.loads((run / "final_eval.json").read_text())
                finals.append(final["mean_return"])
                if final.get("success_rate") is not None:
                    successes.append(final["success_rate"])
                steps, train_returns = curve(run, "charts/episodic_return")
                end = TRANSFER_END * steps[-1]
                mixture.append(statistics.mean(r for s, r in zip(steps, train_returns, strict=True) if s <= end))
                last.append(statistics.mean(train_returns[-20:]))
                tag = "charts/episodic_return" if variant == "ppo" else "eval/learner_return"
                curves.setdefault(variant, []).append(curve(run, tag))
            lines.append(f"| {variant} | {mean_std(finals, 1)} | {mean_std(successes, 2) if successes else '—'} | "
                         f"{mean_std(mixture, 1)} | {mean_std(last, 1)} | {done} |")
        lines += ["", f"![{task} learning curves](agency-transfer_{task}.png)", ""]
        _plot(curves, out / f"agency-transfer_{task}.png", f"{env_id}: learner alone (ppo: training return)",
              statistics.mean(base_returns))
    (out / "agency-transfer.md").write_text("\n".join(lines) + "\n")


def _plot(curves: dict[str, list[tuple[list[int], list[float]]]], path: Path, title: str, baseline: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, runs in curves.items():
        plot_band(ax, runs, variant)
    ax.axhline(baseline, color="k", linestyle="--", label="baseline alone")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = matrix_parser("python -m rlctl.bench.transfer", __doc__.split("\n\n")[0], list(TASKS), list(VARIANTS),
                      "pendulum", (100_000, "training budget per run (default 100000)"),
                      "learner-alone evaluations", 20, "runs/bench-transfer")
    return run_matrix("rlctl.bench.transfer", p, argv, list(TASKS), list(VARIANTS), train_matrix, report, min_steps=1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
