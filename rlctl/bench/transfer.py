"""``python -m rlctl.bench.transfer``: agency transfer from a working controller against plain PPO and the
controller alone.

For each task (env + its controller) and variant (``ppo``: no baseline; ``prob``, ``calf``, ``jsrl``,
``residual``: ``--baseline-policy`` with that arbiter and a linear transfer; ``prob-bc``, ``calf-bc``,
``jsrl-bc``: the same, imitating the baseline's steps; ``prob-gated-bc``: the share gated on success;
``prob-bc-end``: no stage with the baseline disconnected; see :data:`VARIANTS`), one ``rlctl train`` process per
seed (claimed with lock files, resumable). Every run evaluates the learner alone (baseline disconnected) every
``--eval-every`` steps during training and, at the end, deterministically on ``--episodes`` seeded episodes; the
controller alone is evaluated on the same episodes.
Tasks with a goal also report success (the learner alone's, the mixture's during transfer against the baseline's
interval, time to goal), and the waypoint task's final policies fly the sim-to-real sets, where the PID fails
(``sets_eval.json`` in each run). The report, ``agency-transfer_tables.md`` with learning-curve PNGs
(``agency-transfer.md`` is the written page that reads them), is built from the runs' ``metrics.jsonl``,
``final_eval.json`` and ``sets_eval.json``. Seeds are table seeds (101, …, :mod:`rlctl.bench.seeds`).
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlctl.bench.experiment import counted_curve, curve, keep_runs, matrix_parser, plot_band, report_header, run_matrix
from rlctl.bench.stats import mean_std
from rlctl.rundir import BEST_LEARNER, CONFIG, FINAL_EVAL

if TYPE_CHECKING:
    from rlctl.bench.experiment import Command

TASKS: dict[str, tuple[str, str]] = {
    "pendulum": ("Pendulum-v1", "controller:energy"),
    "waypoint": ("rlctl/QuadWaypoint-v0", "controller:pid"),
    "push": ("rlctl/ArmPush-v0", "controller:push"),
}
GOAL_TASKS = ("waypoint", "push")
"""the tasks whose env reports success (``info["is_success"]``), which the success-gated variants need"""
VARIANTS = ("ppo", "prob", "calf", "jsrl", "residual", "prob-bc", "calf-bc", "jsrl-bc", "prob-gated-bc",
            "prob-bc-end")
"""``ppo``: no baseline; ``MODE``: that arbiter with a linear transfer, the baseline's steps trained on
off-policy (the default ``arbiter.baseline_steps``); ``MODE-bc``: the baseline's steps masked from the policy
loss and imitated (``arbiter.baseline_steps=bc`` with ``arbiter.bc_coef`` = :data:`BC_COEF`); ``-gated``: the
share moves with the learner alone's success (``arbiter.schedule=success_gated``; :data:`GOAL_TASKS` only);
``-end``: the share reaches 1 at the end of the budget (``arbiter.transfer_end=1.0``), with no stage of training
with the baseline disconnected"""
DEFAULT_VARIANTS = VARIANTS[:5]
BC_COEF = 1.0
"""the imitation weight of the ``-bc`` variants, chosen on screening seed 1 (results/agency-transfer.md)"""
EVAL_SEED = 10_000  # the final evaluation's episodes: seed + 10000 + i, as rlctl train's
EPISODES = "charts/episodic_return"
"""one row per training episode (merged per 2048 steps in kept runs, apart at the transfer phase's end)"""


def _name(task: str, variant: str, seed: int) -> str:
    return f"{task}__{variant}__s{seed}"


def _sets(task: str, variant: str, seed: int, steps: int, eval_every: int, episodes: int) -> list[str]:
    baseline = TASKS[task][1]
    sets = [f"run.seed={seed}", f"ppo.total_timesteps={steps}", f"run.eval_episodes={episodes}"]
    mode, *options = variant.split("-")
    if mode != "ppo":
        sets += [f"arbiter.baseline={baseline}", f"arbiter.mode={mode}", f"arbiter.eval_every={eval_every}",
                 "arbiter.eval_episodes=10"]
    if "gated" in options:
        sets.append("arbiter.schedule=success_gated")
    if "end" in options:
        sets.append("arbiter.transfer_end=1.0")
    if "bc" in options:
        sets += ["arbiter.baseline_steps=bc", f"arbiter.bc_coef={BC_COEF}"]
    return sets


SETS_TASKS = {"waypoint": "pid"}
"""Tasks whose final policies also fly the sim-to-real sets, against which baseline (where the PID fails)."""
SETS = ["randomized", "held-out"]
SETS_EVAL = {False: "sets_eval.json", True: "best_sets_eval.json"}
"""where :func:`evaluate_on_sets` writes the final (False) and the best (True) learner alone's results"""
BEST_EVAL = "best_eval.json"
"""where :func:`evaluate_best` writes the best learner alone's fresh evaluation"""


def train_matrix(tasks: list[str], variants: list[str], seeds: list[int], steps: int, eval_every: int,
                 episodes: int, jobs: int, runs: Path) -> None:
    from rlctl.bench.matrix import run_claimed, train_job
    from rlctl.errors import UserError

    if gated := [f"{t}/{v}" for t in tasks for v in variants if "gated" in v.split("-") and t not in GOAL_TASKS]:
        raise UserError(f"{', '.join(gated)}: a success-gated variant needs a task with a goal "
                        f"({', '.join(GOAL_TASKS)})")
    runs.mkdir(parents=True, exist_ok=True)
    claimed = [train_job(name, TASKS[task][0], _sets(task, variant, seed, steps, eval_every, episodes), runs / name,
                         runs / name / FINAL_EVAL, runs)
               for task in tasks for variant in variants for seed in seeds
               for name in [_name(task, variant, seed)]]
    run_claimed(claimed, jobs)
    for task, variant, seed in itertools.product(tasks, variants, seeds):
        evaluate_best(runs / _name(task, variant, seed))
    for task, variant, seed in itertools.product([t for t in tasks if t in SETS_TASKS], variants, seeds):
        for best in (False, True):
            evaluate_on_sets(runs / _name(task, variant, seed), task, episodes, best)


def evaluate_best(run: Path) -> None:
    """The run's best learner alone (``best_learner.pt``, chosen on the training-time evaluations' episodes,
    seed + 50000 + i) on the final evaluation's episodes (seed + 10000 + i, as many), written to
    ``best_eval.json``: a fresh measurement of the selected policy, not the score that selected it."""
    from rlctl.checkpoint import atomic_write_text, load_checkpoint
    from rlctl.evaluate import evaluate_policy
    from rlctl.runs import load_policy

    if (run / BEST_EVAL).exists() or not (run / BEST_LEARNER).exists() or not (run / FINAL_EVAL).exists():
        return
    cfg, agent, adapter, checkpoint, _ = load_policy(run / BEST_LEARNER)
    step = int(load_checkpoint(checkpoint)["global_step"])
    result = evaluate_policy(agent, adapter, cfg, cfg.run.eval_episodes, deterministic=True,
                             seed=cfg.run.seed + EVAL_SEED)
    atomic_write_text(run / BEST_EVAL, json.dumps({"step": step, **result}, indent=2))


def evaluate_on_sets(run: Path, task: str, episodes: int, best: bool = False) -> None:
    """The final learner alone (or with ``best``, ``best_learner.pt``) on :data:`SETS` (:data:`SETS_EVAL` in the
    run; kept once written), on the episodes its final evaluation played (seed + 10000 + i)."""
    from rlctl.checkpoint import atomic_write_text
    from rlctl.runs import load_policy
    from rlctl.sim2real_eval import evaluate_sets, policy_actor, without_set

    path, source = run / SETS_EVAL[best], run / BEST_LEARNER if best else run
    if path.exists() or not (run / FINAL_EVAL).exists() or not source.exists():
        return
    cfg, agent, adapter, _, _ = load_policy(source)
    result = evaluate_sets(TASKS[task][0], without_set(cfg.env.kwargs), {"policy": policy_actor(agent, adapter)},
                           SETS, episodes, cfg.run.seed + EVAL_SEED)
    atomic_write_text(path, json.dumps(result, indent=2))


def baseline_alone(task: str, episodes: int, seed: int) -> dict[str, Any]:
    """The controller alone on the episodes a run's final evaluation plays (seed + 10000 + i)."""
    from rlctl.envs.controllers import make_controller
    from rlctl.envs.make import make_env
    from rlctl.evaluate import goal_summary, play_episode

    env_id, spec = TASKS[task]
    env = make_env(env_id)
    controller = make_controller(spec.removeprefix("controller:"), env)
    returns, record = [], {}  # type: ignore[var-annotated]
    for i in range(episodes):
        controller.reset()
        returns.append(play_episode(env, controller.act, seed + EVAL_SEED + i, record=record)[0])
    env.close()
    return {"returns": returns, **goal_summary(record)}


def _baseline_on_sets(task: str, episodes: int, seeds: list[int]) -> dict[str, list[dict[str, Any]]]:
    """The baseline on :data:`SETS`, on the episodes each seed's policy flew there."""
    from rlctl.sim2real_eval import baseline_actor, evaluate_sets, preset_env_kwargs

    env_id = TASKS[task][0]
    out: dict[str, list[dict[str, Any]]] = {level: [] for level in SETS}
    for seed in seeds:
        result = evaluate_sets(env_id, preset_env_kwargs(env_id), {"pid": baseline_actor(SETS_TASKS[task])}, SETS,
                               episodes, seed + EVAL_SEED)["results"]["pid"]
        for level in SETS:
            out[level].append(result[level])
    return out


class _Seeds:
    """One variant's finished runs of one task, and what the tables read from them."""

    def __init__(self, runs: Path, task: str, variant: str, seeds: list[int]) -> None:
        self.dirs = [run for s in seeds if ((run := runs / _name(task, variant, s)) / FINAL_EVAL).is_file()]
        self.finals = [json.loads((d / FINAL_EVAL).read_text()) for d in self.dirs]
        self.transfer_end = {d: self.transfer_end_of(d) for d in self.dirs}

    @staticmethod
    def transfer_end_of(run: Path) -> float:
        """The run's ``arbiter.transfer_end`` (for ``ppo``, the default: the same steps of its own training)."""
        from rlctl.config import load_yaml

        return load_yaml((run / CONFIG).read_text()).arbiter.transfer_end

    def phase(self, tag: str, before: bool) -> list[float]:
        """Per seed, the mean of ``tag``'s rows up to the end of the transfer phase (``before``) or of the last
        20 rows (episodes, for ``charts/episodic_return``); seeds without such rows are left out."""
        values = []
        for run in self.dirs:
            steps, ys, counts = counted_curve(run, tag)  # kept runs merge a step's episodes into one row
            if not steps:
                continue
            end = self.transfer_end[run] * steps[-1]
            kept = [(y, n) for s, y, n in zip(steps, ys, counts, strict=True) if s <= end] if before else \
                [(y, 1) for y in ys[-20:]]  # the last 20 rows are single episodes (keep_runs' tail)
            if kept:
                values.append(sum(y * n for y, n in kept) / sum(n for _, n in kept))
        return values

    def lowest_mean(self, tag: str) -> float | None:
        """The lowest point of the across-seed mean of ``tag`` over the transfer phase (each seed's rows
        interpolated onto 50 common steps: a seed logs a success rate only where episodes ended), or None."""
        curves = {run: c for run in self.dirs if len((c := curve(run, tag))[0]) > 1}
        if not curves:
            return None
        low = max(c[0][0] for c in curves.values())
        high = min(self.transfer_end[run] * c[0][-1] for run, c in curves.items())
        if high <= low:
            return None
        grid = np.linspace(low, high, 50)
        return float(np.mean([np.interp(grid, s, v) for s, v in curves.values()], axis=0).min())


def report(tasks: list[str], variants: list[str], seeds: list[int], episodes: int, runs: Path, out: Path,
           command: Command) -> None:
    """``agency-transfer_tables.md`` and learning-curve PNGs per task (return; success where the task has a goal), from
    the finished runs."""
    from rlctl.sim2real_eval import wilson_interval

    lines = [*report_header("Agency transfer: a working controller first, the learned policy after", command, seeds),
             f"*Learner alone*: the final policy with the baseline disconnected, deterministic, {episodes} episodes "
             "(seeds 10000 + seed + i); time to goal: mean over its successful episodes, in seconds.",
             "*Mixture, transfer phase*: the training episodes that ended before the baseline was disconnected (80% "
             "of the budget; all of it for `-end` variants), baseline and learner acting under the arbiter, the "
             "policy sampling: their mean return, and the success rate of each logged rollout's episodes; *lowest*: "
             "the minimum over the transfer phase of that rate's mean over seeds. For `ppo`, the first 80% of its own "
             "training.",
             "*Last 20, training*: the last 20 training episodes (the learner alone by then; for `-end` variants, "
             "the learner in nearly every step).",
             "The machine was shared with other work while these ran: no timings are reported.", ""]
    for task in tasks:
        env_id, baseline = TASKS[task]
        alone = [baseline_alone(task, episodes, seed) for seed in seeds]
        base_returns = [statistics.mean(a["returns"]) for a in alone]
        base_success = [a["success_rate"] for a in alone if "success_rate" in a]
        goal = bool(base_success)
        lines += [f"## {task}: {env_id}, baseline `{baseline}`", "", f"Budget: {_budgets(runs, task, variants, seeds)} "
                  "env steps per run.", ""]
        if goal:
            pooled = [s for a in alone for s in a["successes"]]
            low, high = wilson_interval(sum(pooled), len(pooled))
            lines += [f"Baseline alone over all {len(pooled)} episodes: success {np.mean(pooled):.2f} "
                      f"[{low:.2f}, {high:.2f}] (Wilson 95%). The target: the mixture's lowest success stays above "
                      f"{low:.2f}.", "",
                      "| variant | learner alone: success | return | time to goal (s) | mixture, transfer phase: "
                      "success | lowest | return | last 20, training: return | seeds |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            times = [a["mean_time_to_goal_s"] for a in alone if "mean_time_to_goal_s" in a]
            lines.append(f"| baseline alone | {mean_std(base_success, 2)} | {mean_std(base_returns, 1)} | "
                         f"{mean_std(times, 2)} | — | — | — | — | {len(seeds)} |")
        else:
            lines += ["| variant | learner alone: return | mixture, transfer phase: return "
                      "| last 20, training: return | seeds |",
                      "|---|---:|---:|---:|---:|",
                      f"| baseline alone | {mean_std(base_returns, 1)} | — | — | {len(seeds)} |"]
        curves: dict[str, list[tuple[list[int], list[float]]]] = {}
        success_curves: dict[str, list[tuple[list[int], list[float]]]] = {}
        for variant in variants:
            done = _Seeds(runs, task, variant, seeds)
            finals = [f["mean_return"] for f in done.finals]
            mixture = mean_std(done.phase(EPISODES, before=True), 1)
            last = mean_std(done.phase(EPISODES, before=False), 1)
            if goal:
                successes = [f["success_rate"] for f in done.finals if f.get("success_rate") is not None]
                times = [f["mean_time_to_goal_s"] for f in done.finals if f.get("mean_time_to_goal_s") is not None]
                lowest = done.lowest_mean("charts/success_rate")
                lines.append(f"| {variant} | {mean_std(successes, 2)} | {mean_std(finals, 1)} | {mean_std(times, 2)} | "
                             f"{mean_std(done.phase('charts/success_rate', before=True), 2)} | "
                             f"{'—' if lowest is None else f'{lowest:.2f}'} | {mixture} | {last} | {len(done.dirs)} |")
            else:
                lines.append(f"| {variant} | {mean_std(finals, 1)} | {mixture} | {last} | {len(done.dirs)} |")
            tag = EPISODES if variant == "ppo" else "eval/learner_return"
            curves[variant] = [curve(run, tag) for run in done.dirs]
            if goal:
                success_curves[f"{variant}: mixture" if variant != "ppo" else "ppo"] = [
                    curve(run, "charts/success_rate") for run in done.dirs]
                if variant != "ppo":
                    success_curves[f"{variant}: learner alone"] = [curve(run, "eval/learner_success_rate")
                                                                    for run in done.dirs]
        lines += ["", f"![{task} learning curves](agency-transfer_{task}.png)", ""]
        _plot(curves, out / f"agency-transfer_{task}.png", f"{env_id}: learner alone (ppo: training return)",
              statistics.mean(base_returns), "return")
        if goal:
            lines += [f"![{task} success](agency-transfer_{task}_success.png)", ""]
            _plot(success_curves, out / f"agency-transfer_{task}_success.png",
                  f"{env_id}: success rate (mixture: training episodes)", float(np.mean(base_success)), "success rate")
        lines += _best_table(task, variants, seeds, runs, goal)
        if task in SETS_TASKS:
            lines += _sets_table(task, variants, seeds, episodes, runs)
    (out / "agency-transfer_tables.md").write_text("\n".join(lines) + "\n")


def _budgets(runs: Path, task: str, variants: list[str], seeds: list[int]) -> str:
    """The training budgets (``ppo.total_timesteps``) of a task's finished runs, from their saved configs: tasks
    ran at different budgets, and the page's command line names only the report's own."""
    from rlctl.config import load_yaml

    budgets = sorted({load_yaml(config.read_text()).ppo.total_timesteps for variant in variants for seed in seeds
                      if (config := runs / _name(task, variant, seed) / CONFIG).is_file()})
    return " and ".join(f"{b:,}" for b in budgets) or "—"


def _best_table(task: str, variants: list[str], seeds: list[int], runs: Path, goal: bool) -> list[str]:
    """The best learner alone of each variant whose runs kept one (:func:`evaluate_best`); none: no lines."""
    rows = []
    for variant in variants:
        found = [json.loads(path.read_text()) for s in seeds
                 if (path := runs / _name(task, variant, s) / BEST_EVAL).is_file()]
        if found:
            steps = ", ".join(f"{r['step'] // 1000}k" for r in found)
            times = [r["mean_time_to_goal_s"] for r in found if r.get("mean_time_to_goal_s") is not None]
            success = f"{mean_std([r['success_rate'] for r in found], 2)} | {mean_std(times, 2)} | " if goal else ""
            rows.append(f"| {variant} | {success}{mean_std([r['mean_return'] for r in found], 1)} | {steps} | "
                        f"{len(found)} |")
    if not rows:
        return []
    head = ("| variant | success | time to goal (s) | return | chosen at | seeds |" if goal else
            "| variant | return | chosen at | seeds |")
    return ["The best learner alone (`best_learner.pt`: the learner at its best training-time evaluation, which "
            "plays other episodes), measured afresh on the final evaluation's episodes:", "", head,
            "|---|" + "---:|" * (head.count("|") - 2), *rows, ""]


def _sets_table(task: str, variants: list[str], seeds: list[int], episodes: int, runs: Path) -> list[str]:
    """The final learner alone and the baseline on the sim-to-real sets (success rate)."""
    base = _baseline_on_sets(task, episodes, seeds)
    lines = [f"On the sim-to-real sets (the final learner alone, the best learner alone where runs kept one, and "
             f"`{SETS_TASKS[task]}`, {episodes} episodes per set and seed, the seeds of the final evaluation; success "
             "rate):", "",
             f"| variant | {' | '.join(SETS)} | seeds |", "|---|" + "---:|" * (len(SETS) + 1),
             f"| baseline alone | {' | '.join(mean_std([r['success_rate'] for r in base[s]], 2) for s in SETS)} | "
             f"{len(seeds)} |"]
    for variant, best in itertools.product(variants, (False, True)):
        found = [runs / _name(task, variant, s) / SETS_EVAL[best] for s in seeds]
        evals = [json.loads(f.read_text())["results"]["policy"] for f in found if f.is_file()]
        if best and not evals:
            continue
        cells = [mean_std([e[level]["success_rate"] for e in evals], 2) for level in SETS]
        lines.append(f"| {variant}{', best learner alone' if best else ''} | {' | '.join(cells)} | {len(evals)} |")
    return [*lines, ""]


def _plot(curves: dict[str, list[tuple[list[int], list[float]]]], path: Path, title: str, baseline: float,
          ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    # one colour per variant (its mixture solid, its learner alone dashed): more lines than a colour cycle holds
    colors = {v: f"C{i % 10}" for i, v in enumerate(dict.fromkeys(label.split(":")[0] for label in curves))}
    for label, runs in curves.items():
        plot_band(ax, runs, label, colors[label.split(":")[0]], "--" if label.endswith("learner alone") else "-")
    ax.axhline(baseline, color="k", linestyle="--", label="baseline alone")
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


REPORT_TAGS = (EPISODES, "eval/learner_return", "charts/success_rate", "eval/learner_success_rate")
"""the metric rows the report reads (``--keep``)"""


def _keep(tasks: list[str], variants: list[str], seeds: list[int], runs: Path, dest: Path) -> None:
    keep_runs([_name(task, variant, seed) for task in tasks for variant in variants for seed in seeds], runs, dest,
              REPORT_TAGS, (FINAL_EVAL, *SETS_EVAL.values(), BEST_EVAL, CONFIG), per_step=(EPISODES,),
              splits=_transfer_split)


def _transfer_split(run: Path) -> list[float]:
    """Where :meth:`_Seeds.phase` ends a run's transfer phase (its transfer end × its last episode's step)."""
    steps, _ = curve(run, EPISODES)
    return [_Seeds.transfer_end_of(run) * steps[-1]] if steps else []


def main(argv: list[str] | None = None) -> int:
    p = matrix_parser("python -m rlctl.bench.transfer", __doc__.split("\n\n")[0], list(TASKS), list(VARIANTS),
                      "pendulum", (100_000, "training budget per run (default 100000)"),
                      "learner-alone evaluations", 20, "runs/bench-transfer")
    p.set_defaults(variants=",".join(DEFAULT_VARIANTS))
    return run_matrix("rlctl.bench.transfer", p, argv, list(TASKS), list(VARIANTS), train_matrix, report, min_steps=1,
                      keep=_keep)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
