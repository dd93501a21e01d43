"""``rlctl bench uav``: PPO on the quadrotor tasks against the PID baseline, and the sim-to-real gap.

1. Train a tasks × training-sets × seeds matrix (each run a separate ``rlctl train`` process; runs are
   claimed with lock files, so the matrix is resumable and can be shared by two invocations).
2. Evaluate every run and the PID with the sim-to-real protocol (:mod:`rlctl.sim2real_eval`) on the
   same seeded episodes of the nominal, randomized and held-out sets.
3. Write ``uav.md`` (tables), learning curves and a flight strip (PNG) to ``--out``.

Run directories (checkpoints, TensorBoard) go to ``runs/bench-uav/``; the per-run summaries that the
report is built from go to ``<out>/runs/uav/``. Seeds start at 101, apart from the seeds screens and tuning use
(:mod:`rlctl.bench.seeds`); rows whose seeds are screening seeds are reported as provisional. Each training
run's summary keeps the load average while it trained (:mod:`rlctl.bench.load`), and the wall time reported
is that of the runs that had the machine to themselves.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlctl.bench import checks
from rlctl.bench.load import RULE, timing_issue
from rlctl.bench.seeds import SCREEN_SEEDS, is_table_seed, span, table_seeds
from rlctl.errors import UserError
from rlctl.rundir import CHECKPOINT, METRICS

TASKS = {"hover": "rlctl/QuadHover-v0", "waypoint": "rlctl/QuadWaypoint-v0", "gates": "rlctl/QuadGates-v0"}
EVAL_SETS = ["nominal", "randomized", "held-out"]
POLICIES = {"mlp": [], "lstm": ["policy.recurrent=lstm", "ppo.bptt_steps=32"], "gru": ["policy.recurrent=gru",
                                                                                       "ppo.bptt_steps=32"]}
"""``--policies``: the settings each policy kind trains with on top of the task's preset (a recurrent policy
trains on 32-step sequences: 8 per env and rollout, 16 to a minibatch of the preset's 512 steps)."""
RATE = 120 / 48
"""``rate120``: control steps per step of the presets' 48 Hz loop"""
TRAIN_SETS = {"nominal": ["env.kwargs.sim2real=nominal"], "randomized": ["env.kwargs.sim2real=randomized"],
              "ramped": ["env.kwargs.sim2real=randomized", "env.randomization_ramp=0.5"],
              "rate120": ["env.kwargs.sim2real=randomized", "env.kwargs.ctrl_hz=120"]}
"""``--train-sets``: what each trains on. ``ramped`` is the randomized set under a curriculum on its strength, from
the nominal vehicle to full over the first half of the budget (``env.randomization_ramp``; 0.5 chosen before any
run, not tuned). ``rate120`` is the randomized set flown at a 120 Hz control rate instead of 48 (the same
latencies in seconds, :meth:`~rlctl.envs.uav.sim2real.Sim2RealSet.delays_at`), with the discount, GAE λ, rollout
length and budget converted so that they cover the same seconds of flight as at 48 Hz."""
BUDGET_SCALE = {"rate120": RATE}
TRAINED_ON = {"nominal": "nominal", "randomized": "randomized", "ramped": "randomized, ramped 0→1 over ½",
              "rate120": "randomized, 120 Hz control"}
"""the table's *trained on* column"""
EVAL_SEED = 10_000


def run_cli(args: argparse.Namespace) -> int:
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise UserError(f"unknown --tasks {bad}; choose from {', '.join(TASKS)}")
    train_sets = [s for s in args.train_sets.split(",") if s]
    bad = [s for s in train_sets if s not in TRAIN_SETS]
    if bad or not train_sets:
        raise UserError(f"unknown --train-sets {bad}; choose from {', '.join(TRAIN_SETS)}" if bad
                        else f"--train-sets names no training set; choose from {', '.join(TRAIN_SETS)}")
    policies = [p for p in args.policies.split(",") if p]
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise UserError(f"unknown --policies {bad}; choose from {', '.join(POLICIES)}")
    checks.positive(seeds=args.seeds, steps=args.steps, jobs=args.jobs, episodes=args.episodes,
                    randomized_factor=args.randomized_factor)
    checks.env_ids([TASKS[t] for t in tasks], "--tasks")
    out, runs = Path(args.out), Path(args.runs_dir)
    summaries = out / "runs" / "uav"
    summaries.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    todo = [(task, _row(ts, policy), seed) for task in tasks for seed in table_seeds(args.seeds) for policy in policies
            for ts in train_sets]
    if args.report_only:
        report(out, summaries, runs, args)
        return 0
    train_matrix(todo, args.steps, args.randomized_factor, args.jobs, runs, summaries)
    evaluate_matrix(todo, tasks, args.episodes, runs, summaries)
    report(out, summaries, runs, args)
    return 0


def _name(task: str, row: str, seed: int) -> str:
    return f"{task}__{row}__s{seed}"


def _row(train_set: str, policy: str) -> str:
    """A table row's key: the training set, suffixed with the policy kind unless it is the feed-forward ``mlp``
    (``randomized``, ``randomized-lstm``); run and summary names carry it."""
    return train_set if policy == "mlp" else f"{train_set}-{policy}"


ROWS = [_row(train_set, policy) for policy in POLICIES for train_set in TRAIN_SETS]
"""the table's PPO rows, in order"""


def _kind(row: str) -> str:
    """What a row's name adds for its policy: ``""`` (feed-forward), `` (LSTM)``."""
    policy = _split_row(row)[1]
    return "" if policy == "mlp" else f" ({policy.upper()})"


def _label(row: str) -> str:
    """The controller column: ``PPO`` (feed-forward), ``PPO (LSTM)``."""
    return "PPO" + _kind(row)


def _split_row(row: str) -> tuple[str, str]:
    """``randomized-lstm`` → (``randomized``, ``lstm``)."""
    train_set, _, policy = row.partition("-")
    return train_set, policy or "mlp"


def _env_kwargs(task: str) -> dict[str, Any]:
    from rlctl.sim2real_eval import preset_env_kwargs

    return preset_env_kwargs(TASKS[task])


def _budget(task: str, train_set: str, steps: int | None, factor: float) -> int:
    from rlctl.resolve import resolve_config

    base = steps or resolve_config(TASKS[task])[0].ppo.total_timesteps
    return round((base if train_set == "nominal" else base * factor) * BUDGET_SCALE.get(train_set, 1.0))


def _same_seconds(task: str, rate: float) -> list[str]:
    """Settings that keep the preset's horizons in seconds of flight at ``rate`` times its control rate: the
    discount, GAE λ and rollout length (none at the preset's own rate)."""
    from rlctl.resolve import resolve_config

    if rate == 1.0:
        return []
    ppo = resolve_config(TASKS[task])[0].ppo
    return [f"ppo.gamma={ppo.gamma ** (1 / rate):.5f}", f"ppo.gae_lambda={ppo.gae_lambda ** (1 / rate):.5f}",
            f"ppo.num_steps={round(ppo.num_steps * rate)}"]


def train_matrix(todo: list[tuple[str, str, int]], steps: int | None, factor: float, jobs: int, runs: Path,
                 summaries: Path) -> None:
    """One ``rlctl train`` process per run; ``<name>.train.json`` marks it finished (:func:`run_claimed`)."""
    from rlctl.bench.matrix import run_claimed, train_job
    from rlctl.checkpoint import atomic_write_text
    from rlctl.resolve import resolve_config
    from rlctl.runs import saved_config_diff

    claimed = []
    for task, row, seed in todo:
        name = _name(task, row, seed)
        train_set, policy = _split_row(row)
        budget = _budget(task, train_set, steps, factor)
        done = summaries / f"{name}.train.json"
        # what the run is given, and what a finished one is checked against
        sets = [f"run.seed={seed}", f"ppo.total_timesteps={budget}", *TRAIN_SETS[train_set], "run.eval_episodes=0",
                *_same_seconds(task, BUDGET_SCALE.get(train_set, 1.0)), *POLICIES[policy]]
        cfg = resolve_config(TASKS[task], set_items=sets)[0]
        # a finished run whose directory is gone (only its summary is left) is not checked
        changed = (saved_config_diff(runs / name, cfg) or []) if done.exists() else []
        if changed:
            raise UserError(f"{name} finished with a config that differs from what this bench trains now "
                            f"({', '.join(changed)}); delete {done} and {done.with_name(name + '.eval.json')} to "
                            "retrain it, or choose another --out")

        def record(wall_s: float, load: dict[str, Any], done: Path = done, budget: int = budget) -> None:
            atomic_write_text(done, json.dumps({"wall_s": wall_s, "steps": budget, "load": load}))

        claimed.append(train_job(name, TASKS[task], sets, runs / name, done, summaries, record, cfg=cfg))
    run_claimed(claimed, jobs)


def evaluate_matrix(todo: list[tuple[str, str, int]], tasks: list[str], episodes: int, runs: Path,
                    summaries: Path) -> None:
    from rlctl.checkpoint import atomic_write_text
    from rlctl.runs import load_policy
    from rlctl.sim2real_eval import baseline_actor, evaluate_sets, policy_actor, without_set

    for task in tasks:
        path = summaries / f"{task}__pid.eval.json"
        if not _evaluated(path, episodes):
            print(f"evaluate PID on {task}", flush=True)
            result = evaluate_sets(TASKS[task], _env_kwargs(task), {"pid": baseline_actor("pid")}, EVAL_SETS, episodes,
                                   EVAL_SEED)
            atomic_write_text(path, json.dumps(result, indent=2))
    for task, train_set, seed in todo:
        name = _name(task, train_set, seed)
        path = summaries / f"{name}.eval.json"
        if _evaluated(path, episodes) or not (summaries / f"{name}.train.json").exists():
            continue
        print(f"evaluate {name}", flush=True)
        cfg, agent, adapter, _, _ = load_policy(str(runs / name))
        result = evaluate_sets(TASKS[task], without_set(cfg.env.kwargs), {"policy": policy_actor(agent, adapter)},
                               EVAL_SETS, episodes, EVAL_SEED)
        atomic_write_text(path, json.dumps(result, indent=2))


def _evaluated(path: Path, episodes: int) -> bool:
    """Whether ``path`` holds an evaluation with ``episodes`` per set (one with another count is redone,
    so that a bench rerun with a new ``--episodes`` never reports old evaluations under it)."""
    return path.exists() and _set_episodes(json.loads(path.read_text())["results"].values()) <= {episodes}


def _set_episodes(controllers: Iterable[dict[str, Any]]) -> set[int]:
    """The episode counts of the evaluation sets of these controllers' results (one per controller)."""
    return {summary["episodes"] for sets in controllers for level, summary in sets.items() if level in EVAL_SETS}


def gap_interval(evals: list[dict[str, Any]], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean over seeds of held-out ÷ nominal success.

    Two levels, because both are noise: seeds are resampled with replacement, and each resampled seed's
    two success counts are redrawn from binomials at its observed rates (its finite episodes). Resamples
    in which a seed has no nominal success are dropped, as such a seed is in the table.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    nominal = np.array([[e["nominal"]["successes"], e["nominal"]["episodes"]] for e in evals], dtype=float)
    held = np.array([[e["held-out"]["successes"], e["held-out"]["episodes"]] for e in evals], dtype=float)
    pick = rng.integers(0, len(evals), size=(resamples, len(evals)))
    n_nom, n_held = nominal[pick, 1], held[pick, 1]
    nom = rng.binomial(n_nom.astype(int), nominal[pick, 0] / n_nom) / n_nom
    out = rng.binomial(n_held.astype(int), held[pick, 0] / n_held) / n_held
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(nom > 0, out / nom, np.nan)
    means = np.nanmean(ratios, axis=1)
    means = means[np.isfinite(means)]
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _no_crash(summary: dict[str, Any]) -> float:
    crashes = sum(n for reason, n in summary["failures"].items() if reason != "timeout")
    return 1.0 - crashes / summary["episodes"]


def _cell(rates: list[float]) -> str:
    """Mean ± sample std (ddof = 1) over seeds, as every bench table (:func:`rlctl.bench.stats.mean_std`)."""
    from rlctl.bench.stats import mean_std

    return mean_std(rates, digits=2)


def _seed(path: Path) -> int:
    """The seed in a summary's name, ``hover__randomized__s101.eval.json`` → 101."""
    return int(path.name.split(".")[0].rpartition("__s")[2])


def _row_files(summaries: Path, task: str, train_set: str) -> tuple[list[Path], bool]:
    """A row's evaluation files: those of table seeds, or, while there are none, those of screening seeds (then
    the row is provisional: True)."""
    files = sorted(summaries.glob(f"{task}__{train_set}__s*.eval.json"), key=_seed)
    table = [f for f in files if is_table_seed(_seed(f))]
    return (table, False) if table else (files, bool(files))


def report(out: Path, summaries: Path, runs: Path, args: argparse.Namespace) -> None:
    from rlctl.envs.uav.model import QuadParams
    from rlctl.envs.uav.sim2real import HELD_OUT_DYNAMICS, RANDOMIZED_DYNAMICS, SETS

    rnd, held = SETS["randomized"], SETS["held-out"]
    assert rnd is not None and held is not None

    def steps(r: tuple[int, int]) -> str:
        return f"{r[0]}–{r[1]}"
    from rlctl.bench.sps import _machine
    from rlctl.sim2real_eval import wilson_interval

    def lag(r: Any) -> str:
        return f"{r.low * QuadParams().motor_tau * 1e3:.0f}–{r.high * QuadParams().motor_tau * 1e3:.0f} ms"

    interface = ", ".join(f"{k}={v}" for k, v in _env_kwargs("hover").items()) or "the env defaults"
    lines = [
        "# UAV: PPO vs the PID baseline, and the sim-to-real gap", "",
        "Produced by `rlctl bench uav` (see README, *Robots and UAVs*); the training matrix behind these tables:"
        " " + "; ".join(_matrix_summary(summaries)) + ". Runs in parallel: 2.  ",
        f"Machine: {_machine()}  ",
        "Protocol: every controller flies the same seeded episodes (episode i reset with seed "
        f"{EVAL_SEED}+i) of each set; deterministic policy (mean action). *nominal*: the Crazyflie model, no "
        "noise; *randomized*: the training distribution (mass, inertia, kf, km, per-motor thrust, motor lag "
        f"{lag(RANDOMIZED_DYNAMICS['motor_tau'])}, thrust noise, drag, sensor noise, {steps(rnd.obs_delay)} steps "
        f"observation delay, {steps(rnd.action_delay)} steps action delay, pushes); *held-out*: wider ranges than "
        f"training (motor lag {lag(HELD_OUT_DYNAMICS['motor_tau'])}), stronger pushes, twice the sensor noise, and "
        f"always {steps(held.obs_delay)} steps observation and {steps(held.action_delay)} steps action delay "
        "(a proxy for the real vehicle; steps of the 48 Hz control loop, the same times at another rate). Success: "
        "held within 0.1 m and 0.2 m/s of the "
        "final target for one "
        "second, and no crash. PPO cells: mean ± sample std (ddof = 1) over seeds of each seed's success rate "
        "(seeds column: n and which), and for held-out ÷ nominal a 95% bootstrap interval of that mean (seeds "
        "resampled, and each seed's successes redrawn from its episodes); PID: one controller, with the Wilson "
        "95% interval.  ",
        f"Interface (the presets' env kwargs; PPO and PID fly the same one): {interface}.  ", "",
    ]
    note_at = len(lines) - 1  # where the provisional note goes, once the rows are known
    provisional: set[tuple[str, str]] = set()  # (task, training set) rows shown on screening seeds
    provisional_seeds: dict[str, int] = {}
    for task in TASKS:
        pid_path = summaries / f"{task}__pid.eval.json"
        if not pid_path.exists():
            continue
        pid = json.loads(pid_path.read_text())["results"]["pid"]
        files = {row: _row_files(summaries, task, row) for row in ROWS}
        evals_by_set = {train_set: [json.loads(p.read_text())["results"]["policy"] for p in paths]
                        for train_set, (paths, _) in files.items()}
        seeds_of = {train_set: [_seed(p) for p in paths] for train_set, (paths, _) in files.items()}
        provisional |= {(task, ts) for ts, (_, flag) in files.items() if flag and evals_by_set[ts]}
        if any(t == task for t, _ in provisional):
            provisional_seeds[task] = max(len(paths) for paths, _ in files.values())
        counts = _set_episodes([pid, *(e for evals in evals_by_set.values() for e in evals)])
        episodes = f"{min(counts)}" if len(counts) == 1 else f"{min(counts)}–{max(counts)}"
        lines += [f"## {task} (`{TASKS[task]}`)", "", f"Each controller flies {episodes} episodes of each set.", "",
                  "| controller | trained on | seeds | nominal | randomized | held-out | held-out ÷ nominal | "
                  "time to goal (s, nominal) | failures (held-out, all seeds) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        cells = []
        for level in EVAL_SETS:
            s = pid[level]
            low, high = wilson_interval(s["successes"], s["episodes"])
            cells.append(f"{s['success_rate']:.2f} [{low:.2f}, {high:.2f}]")
        gap = pid.get("gap_held_out_over_nominal", float("nan"))
        fails = ", ".join(f"{k} {v}" for k, v in pid["held-out"]["failures"].items()) or "—"
        lines.append(f"| PID (nominal gains) | — | — | {' | '.join(cells)} | {gap:.2f} | "
                     f"{pid['nominal']['mean_time_to_goal_s']:.2f} | {fails} |")
        for train_set, evals in evals_by_set.items():
            if not evals:
                continue
            rates = {lv: [e[lv]["success_rate"] for e in evals] for lv in EVAL_SETS}
            gaps = [e[lv2]["success_rate"] / e[lv1]["success_rate"]
                    for e in evals for lv1, lv2 in [("nominal", "held-out")] if e[lv1]["success_rate"] > 0]
            times = [t for e in evals if math.isfinite(t := e["nominal"]["mean_time_to_goal_s"])]  # successes only
            fail_total: dict[str, int] = {}
            for e in evals:
                for k, v in e["held-out"]["failures"].items():
                    fail_total[k] = fail_total.get(k, 0) + v
            fails = ", ".join(f"{k} {v}" for k, v in sorted(fail_total.items())) or "—"
            interval = " [{:.2f}, {:.2f}]".format(*gap_interval(evals)) if len(gaps) > 1 else ""
            mark = " ‡" if (task, train_set) in provisional else ""
            lines.append(f"| {_label(train_set)} | {TRAINED_ON[_split_row(train_set)[0]]} | "
                         f"{len(evals)} ({span(seeds_of[train_set])}){mark} | {_cell(rates['nominal'])} | "
                         f"{_cell(rates['randomized'])} | {_cell(rates['held-out'])} | {_cell(gaps)}{interval} | "
                         f"{f'{statistics.mean(times):.2f}' if times else '—'} | {fails} |")
        lines += ["", "Episodes without a crash (any failure but the time limit), same episodes:", "",
                  "| controller | trained on | nominal | randomized | held-out |", "|---|---|---:|---:|---:|",
                  f"| PID (nominal gains) | — | {' | '.join(f'{_no_crash(pid[lv]):.2f}' for lv in EVAL_SETS)} |"]
        for train_set, evals in evals_by_set.items():
            if evals:
                cells = [_cell([_no_crash(e[lv]) for e in evals]) for lv in EVAL_SETS]
                lines.append(f"| {_label(train_set)} | {TRAINED_ON[_split_row(train_set)[0]]} | {' | '.join(cells)} |")
        lines.append("")
        _plot_curves(task, runs, out / f"uav_{task}_curves.png")
        lines.append(f"Learning curves (training success rate on the training set): `uav_{task}_curves.png`")
        lines.append("")
    strip = _flight_strip(runs, out / "uav_hover_flight.png")
    if not strip and (out / "uav_hover_flight.png").exists() and (out / "uav.md").exists():
        # no training runs here: the plot stays as the last rebuild that had them drew it, and so does its caption
        strip = next((line.removeprefix("Flight: ") for line in (out / "uav.md").read_text().splitlines()
                      if line.startswith("Flight: ")), "")
    if strip:
        lines += ["Flight: " + strip, ""]
    trained = [json.loads(p.read_text()) for p in summaries.glob("*.train.json")]
    walls = [t["wall_s"] for t in trained if timing_issue(t) is None]
    if walls:
        lines.append(f"Training wall time per run: {statistics.mean(walls) / 60:.1f} min on average over the "
                     f"{len(walls)} of {len(trained)} runs that had the machine to themselves ({args.jobs} in "
                     f"parallel on the machine above; {RULE}).")
    elif trained:
        lines.append(f"Training wall time: not reported. None of the {len(trained)} runs has a load record showing "
                     f"that it had the machine to itself ({RULE}).")
    if provisional:
        lines.insert(note_at, (
            f"**Provisional rows (‡): no run on table seeds ({table_seeds(1)[0]}+) is finished for them**, so they "
            f"show runs on screening seeds ({SCREEN_SEEDS[0]}–{SCREEN_SEEDS[-1]}), which screens and development "
            "runs also used (results/README.md). The table: "
            + ", then ".join(f"`rlctl bench uav --tasks {task} --seeds {n} --jobs {args.jobs}`"
                             for task, n in sorted(provisional_seeds.items()))
            + f" (seeds from {table_seeds(1)[0]}; resumable).  "))
    (out / "uav.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _matrix_summary(summaries: Path) -> list[str]:
    """``task, trained on SET: N seeds x STEPS`` for each group of finished training runs."""
    groups: dict[tuple[str, str], list[int]] = {}
    for path in sorted(summaries.glob("*.train.json")):
        task, train_set, _ = path.name.removesuffix(".train.json").split("__")
        groups.setdefault((task, train_set), []).append(int(json.loads(path.read_text()).get("steps", 0)))
    return [f"{task}{_kind(ts)} trained on {TRAINED_ON[_split_row(ts)[0]]}: {len(steps)} "
            f"seed{'s' * (len(steps) > 1)} × {max(steps):,} steps"
            for (task, ts), steps in groups.items()]


def _plot_curves(task: str, runs: Path, path: Path) -> None:
    """Training success curves of the runs in ``runs``; without any (the runs are not kept with the results),
    ``path`` is left as the last rebuild that had them drew it, rather than blanked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rlctl.logger import read_metrics

    found: dict[str, list[np.ndarray]] = {}
    for train_set in ROWS:
        curves = found.setdefault(train_set, [])
        dirs = [d for d in runs.glob(f"{task}__{train_set}__s*") if d.is_dir()]
        for run in sorted([d for d in dirs if is_table_seed(_seed(d))] or dirs):  # the table's seeds, as its rows
            if not (run / METRICS).exists():
                continue
            pts = [(r["step"], r["value"]) for r in read_metrics(run / METRICS)
                   if r["tag"] == "charts/success_rate"]
            if len(pts) > 1:
                curves.append(np.array(pts, dtype=float))
    if not any(found.values()):
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = [f"C{i}" for i in range(len(ROWS))]
    for train_set, color in zip(ROWS, colors, strict=True):
        curves = found[train_set]
        if not curves:
            continue
        grid = np.linspace(0, min(c[-1, 0] for c in curves), 60)
        # a 5-point moving average, edges padded with their own values (zero padding would dip at the ends)
        smooth = [np.convolve(np.pad(c[:, 1], 2, mode="edge"), np.ones(5) / 5, mode="valid") for c in curves]
        arr = np.vstack([np.interp(grid, c[:, 0], y) for c, y in zip(curves, smooth, strict=True)])
        label = f"{_label(train_set)} trained on {TRAINED_ON[_split_row(train_set)[0]]} ({len(curves)} seeds)"
        ax.plot(grid, arr.mean(0), color=color, label=label)
        ax.fill_between(grid, arr.min(0), arr.max(0), color=color, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{TASKS[task]}: mean and min–max over seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _flight_strip(runs: Path, path: Path) -> str:
    """Frames of one nominal hover episode flown by the first seed's policy (a table seed where there is one),
    plus its position vs the PID's; "" without a checkpoint."""
    kept = sorted((d for d in runs.glob("hover__randomized__s*") if (d / CHECKPOINT).exists()),
                  key=lambda d: (not is_table_seed(_seed(d)), _seed(d)))
    if not kept:
        return ""
    run, seed = kept[0], _seed(kept[0])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rlctl.envs.make import make_env
    from rlctl.evaluate import act
    from rlctl.runs import load_policy
    from rlctl.sim2real_eval import baseline_for, without_set

    cfg, agent, adapter, _, _ = load_policy(str(run))
    kwargs = without_set(cfg.env.kwargs)
    traces: dict[str, np.ndarray] = {}
    frames = []
    hz = 48
    for who in ("PPO", "PID"):
        env = make_env(TASKS["hover"], kwargs, render_mode="rgb_array")
        ctrl = baseline_for("pid", env)
        obs, _ = env.reset(seed=EVAL_SEED)
        base: Any = env.unwrapped
        hz = base.ctrl_hz
        pos, done, t = [base.pos.copy()], False, 0
        while not done:
            action = act(agent, adapter, obs, True) if who == "PPO" else ctrl.act(obs)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            t += 1
            pos.append(base.pos.copy())
            if who == "PPO" and t % base.ctrl_hz == 1:
                frames.append((t * base.dt, env.render()))
        traces[who] = np.array(pos)
        env.close()
    fig = plt.figure(figsize=(12, 5.2))
    n = min(len(frames), 5)
    for i in range(n):
        ax = fig.add_subplot(2, n, i + 1)
        ax.imshow(np.asarray(frames[i][1]))
        ax.set_title(f"t = {frames[i][0]:.1f} s")
        ax.axis("off")
    ax = fig.add_subplot(2, 1, 2)
    for who, style in (("PPO", "-"), ("PID", "--")):
        tr = traces[who]
        ts = np.arange(len(tr)) / hz
        for k, axis in enumerate("xyz"):
            goal = 1.0 if axis == "z" else 0.0
            ax.plot(ts, tr[:, k] - goal, style, color=f"C{k}", label=f"{who} {axis} error")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("position − goal (m)")
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"`{path.name}` (PPO trained on randomized, seed {seed}, nominal episode seed {EVAL_SEED}; PID dashed)"
