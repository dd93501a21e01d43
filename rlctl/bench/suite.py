"""``rlctl bench suite``: the MuJoCo v5 table — tasks × seeds with each task's preset, plus SB3 on some.

Every run is a separate process (see :func:`rlctl.bench.matrix.run_matrix`: resumable, lock-claimed, so a
bigger machine or a second invocation can share the work). The report, ``<out>/mujoco-v5.md``, gives
per task the CleanRL/Open RL Benchmark metric (mean of the last 100 training episodes) and a
deterministic 10-episode evaluation, mean ± std across seeds, wall time and SPS, the published
anchors with their metric, version and seed count, and learning curves with seed bands. Across tasks
it aggregates normalized scores with the interquartile mean and stratified-bootstrap 95% intervals
(Agarwal et al. 2021, the method of the ``rliable`` library, implemented here in NumPy).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.bench import checks
from rlctl.errors import UserError

MUJOCO_V5 = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5", "Swimmer-v5",
             "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5", "Pusher-v5"]
TARGETS = {"HalfCheetah-v5": 5000, "Hopper-v5": 2500, "Walker2d-v5": 3500, "Ant-v5": 3000, "Humanoid-v5": 750}

# Published PPO results near 1M steps (../shared/reference/anchors.md §1a), as (score, source). The
# reference score normalizes each task for the aggregate: 1.0 = that published PPO result.
ANCHORS: dict[str, list[tuple[float, str]]] = {
    "HalfCheetah-v5": [(1668.58, "baselines ppo2, v1, 6 seeds, training return"),
                       (1442.64, "CleanRL, v4, 3 seeds, last 100"), (5819.10, "SB3 zoo, v3, 1 seed, det. eval")],
    "Hopper-v5": [(2316.16, "baselines ppo2, v1, 6 seeds, training return"),
                  (2382.86, "CleanRL, v4, 3 seeds, last 100"), (2410.44, "SB3 zoo, v3, 1 seed, det. eval")],
    "Walker2d-v5": [(3424.95, "baselines ppo2, v1, 6 seeds, training return"),
                    (2287.95, "CleanRL, v4, 3 seeds, last 100"), (3478.80, "SB3 zoo, v3, 1 seed, det. eval")],
    "Ant-v5": [(3258.4, "Tianshou, v3, 10 seeds, max of training"), (1327.16, "SB3 zoo, v3, 1 seed, det. eval")],
    "Humanoid-v5": [(716.11, "CleanRL, v4, 3 seeds, last 100"), (787.1, "Tianshou, v3, 10 seeds, max of training")],
    "Swimmer-v5": [(111.19, "baselines ppo2, v1, 6 seeds, training return"),
                   (281.56, "SB3 zoo, v3, 1 seed, det. eval, gamma 0.9999")],
    "InvertedPendulum-v5": [(809.43, "baselines ppo2, v1, 6 seeds, training return"),
                            (963.09, "CleanRL, v4, 3 seeds, last 100")],
    "InvertedDoublePendulum-v5": [(7102.91, "baselines ppo2, v1, 6 seeds, training return"),
                                  (9231.3, "Tianshou, v2, 10 seeds, max of training")],
    "Reacher-v5": [(-6.71, "baselines ppo2, v1, 6 seeds, training return"),
                   (-4.1, "Tianshou, v2, 10 seeds, max of training")],
    "Pusher-v5": [(-40.38, "CleanRL, v4, 3 seeds, last 100")],
}


def run_cli(args: argparse.Namespace) -> int:
    from rlctl.bench.matrix import prepare_matrix, run_claimed
    from rlctl.bench.sps import _require_sb3

    tasks = [t for t in args.tasks.split(",") if t]
    sb3_tasks = [t for t in args.sb3_tasks.split(",") if t]
    checks.positive(seeds=args.seeds, steps=args.steps, jobs=args.jobs, bootstrap=args.bootstrap)
    checks.env_ids(tasks, "--tasks")
    if sb3_tasks:
        checks.env_ids(sb3_tasks, "--sb3-tasks")
    out = Path(args.out)
    runs = out / "runs" / "suite"
    if args.preset != "-":  # a candidate's runs go to their own directory, named after it: no preset files
        checks.preset(args.preset, tasks, files=False)
        runs = out / "runs" / f"suite-{args.preset}"
    todo = [(lib, env, seed) for seed in range(1, args.seeds + 1)
            for env in tasks for lib in ("rlctl", "sb3") if lib == "rlctl" or env in sb3_tasks]
    screens = sorted(d for d in (out / "runs").glob("suite-*") if d != runs) if args.preset == "-" else []
    # Also with --report-only: results of an older preset are set aside and adopted screen runs taken in.
    jobs = prepare_matrix(todo, args.preset, args.steps, runs, screens, set_aside=not args.report_only)
    if not args.report_only:
        if sb3_tasks:
            _require_sb3()
        run_claimed(jobs, args.jobs)
    if args.preset == "-":  # a candidate's runs go to the screen only; the table's command line is its own
        report(out, out / "runs" / "suite", args)
    screen(out)
    return 0


def screen(out: Path) -> None:
    """``mujoco-v5-screen.md``: per task, every preset that has rlctl runs (each task's own entry and the
    candidates run with ``--preset``), best mean last-100 return first — the evidence for choosing presets."""
    from rlctl.bench.sps import _load_runs, mean_std
    from rlctl.bench.worker import result_fingerprint

    dirs = sorted((out / "runs").glob("suite-*"))
    if not dirs:
        return
    table = out / "runs" / "suite"
    entry = _load_runs(table) if table.exists() else []
    earlier = [r for r in entry if not is_current(r)]
    earlier += _load_runs(table / "stale") if (table / "stale").exists() else []
    found = {"(task's entry)": [r for r in entry if is_current(r)], "(an earlier entry)": earlier}
    for d in dirs:
        name = d.name.removeprefix("suite-")
        found[name] = [r for r in _load_runs(d) if is_current(r, name)]
    tasks = [t for t in MUJOCO_V5 if any(r["env"] == t for rs in found.values() for r in rs)]
    lines = ["# MuJoCo v5 preset screen", "",
             "Each task's own preset entry against candidate presets (`rlctl bench suite --preset NAME`), rlctl "
             "only, at the same budget. Per-task presets are chosen from this table (see README, *Benchmarks*). "
             "Metric: mean ± std across seeds of the last-100 training return; `det. eval` as in mujoco-v5.md.", "",
             "| task | preset | seeds | steps | last-100 return | det. eval | fingerprint |",
             "|---|---|---:|---:|---:|---:|---|"]
    for task in tasks:
        rows = []
        for name, rs in found.items():
            mine = [r for r in rs if r["env"] == task and r["lib"] == "rlctl"]
            for budget in sorted({r["budget"] for r in mine}):
                same = [r for r in mine if r["budget"] == budget]
                prints = sorted({result_fingerprint(r) or "?" for r in same})
                rows.append((statistics.mean(r["last100"] for r in same), name, same, budget, prints))
        for _, name, same, budget, prints in sorted(rows, key=lambda row: -row[0]):
            lines.append(f"| {task} | {name} | {len(same)} | {budget:,} | {mean_std([r['last100'] for r in same])} | "
                         f"{mean_std([r['eval_mean'] for r in same])} | {', '.join(prints)} |")
    (out / "mujoco-v5-screen.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def is_current(run: dict[str, Any], preset: str = "-") -> bool:
    """Whether a result was trained with what ``preset`` resolves to today (results without a config count)."""
    from rlctl.bench.worker import fingerprint, result_fingerprint, worker_config

    found = result_fingerprint(run)
    if found is None:
        return True
    cfg, _ = worker_config(run["lib"], run["env"], preset, run["budget"], run["seed"], 1)
    return found == fingerprint(cfg)


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (robust to outlier runs, unlike the mean)."""
    x = np.sort(np.asarray(scores, dtype=float).reshape(-1))
    n = len(x)
    cut = n // 4
    return float(x[cut:n - cut].mean()) if n - 2 * cut > 0 else float(x.mean())


def stratified_bootstrap_ci(per_task: list[np.ndarray], reps: int, seed: int = 0) -> tuple[float, float]:
    """95% interval of the IQM when each task's runs are resampled with replacement, task by task."""
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(reps):
        sample = [runs[rng.integers(0, len(runs), len(runs))] for runs in per_task]
        stats.append(iqm(np.concatenate(sample)))
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def permutation_p(a: list[float], b: list[float], max_exact: int = 20_000, samples: int = 20_000,
                  seed: int = 0) -> float:
    """Two-sided p-value of the difference of means of ``a`` and ``b`` under a permutation test.

    The null hypothesis is that the seed's library label does not matter. The test makes no normality
    assumption, which suits 5 seeds of a bimodal task. It is exact (every relabelling) when there are at most
    ``max_exact`` of them; otherwise it draws ``samples`` seeded random ones.
    """
    x = np.asarray(list(a) + list(b), dtype=float)
    n, k = len(x), len(a)
    if k == 0 or k == n:
        raise ValueError("both groups need at least one value")
    observed = abs(float(np.mean(a)) - float(np.mean(b)))
    total = x.sum()

    def gap(idx: np.ndarray) -> np.ndarray:  # |mean of the a-labelled − mean of the rest|, per relabelling
        first = x[idx].sum(axis=-1)
        return np.abs(first / k - (total - first) / (n - k))

    if math.comb(n, k) <= max_exact:
        idx = np.array(list(itertools.combinations(range(n), k)))
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((samples, n)), axis=1)[:, :k]
    return float(np.mean(gap(idx) >= observed - 1e-9 * max(1.0, observed)))


def _random_score(env_id: str, episodes: int = 10) -> float:
    """Mean return of uniform random actions (the 0 of the normalized score), seeded."""
    from rlctl.envs.make import make_env

    env = make_env(env_id)
    env.action_space.seed(0)
    total = 0.0
    for i in range(episodes):
        env.reset(seed=i)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
    env.close()
    return total / episodes


def _sb3_unmatched(tasks: list[str]) -> dict[str, list[str]]:
    """Per task, the preset settings SB3's PPO cannot take (:func:`rlctl.bench.worker.sb3_unmatched`)."""
    from rlctl.bench.worker import sb3_unmatched
    from rlctl.config import resolve_config

    found = {task: sb3_unmatched(resolve_config(task)[0]) for task in tasks}
    return {task: items for task, items in found.items() if items}


def _versus_sb3(runs: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """Per task that both libraries ran (2+ seeds each): rlctl's mean minus SB3's, with a permutation p-value."""
    parts = []
    for task in tasks:
        by_lib = {lib: [r for r in runs if r["env"] == task and r["lib"] == lib] for lib in ("rlctl", "sb3")}
        if min(len(rs) for rs in by_lib.values()) < 2:
            continue
        cells = []
        for key, label in (("last100", "last-100"), ("eval_mean", "eval")):
            a, b = ([r[key] for r in by_lib[lib]] for lib in ("rlctl", "sb3"))
            cells.append(f"{label} {statistics.mean(a) - statistics.mean(b):+.0f} (p = {permutation_p(a, b):.2f})")
        parts.append(f"{task} {', '.join(cells)}")
    if not parts:
        return []
    return ["", "rlctl − SB3, difference of the means over seeds, with the two-sided p-value of a permutation test "
            "(seed labels shuffled: every relabelling up to 20,000 of them, else 20,000 seeded random ones): "
            + "; ".join(parts) + ". Above 0.05, these seeds do not show a difference at the usual 5% level."]


def report(out: Path, runs_dir: Path, args: argparse.Namespace) -> None:
    from rlctl.bench.sps import _load_runs, _machine, _plot_returns, mean_std

    runs = _load_runs(runs_dir) if runs_dir.exists() else []
    current = [r for r in runs if is_current(r)]
    stale = len(runs) - len(current)
    runs = current
    if not runs:
        raise UserError(f"no finished runs of the current presets under {runs_dir}")
    tasks = [t for t in MUJOCO_V5 if any(r["env"] == t for r in runs)]
    tasks += sorted({r["env"] for r in runs} - set(tasks))
    steps = max(r["budget"] for r in runs)
    unmatched = _sb3_unmatched(sorted({r["env"] for r in runs if r["lib"] == "sb3"}))
    lines = [
        "# MuJoCo v5: rlctl PPO with each task's preset", "",
        f"Command: `rlctl bench suite --tasks {args.tasks} --seeds {args.seeds} --steps {args.steps} "
        f"--sb3-tasks {args.sb3_tasks!r} --jobs {args.jobs}`  ",
        f"Machine: {_machine()}  ",
        "Metric: per run, the mean raw return of the last 100 training episodes (CleanRL / Open RL Benchmark) "
        "and of a 10-episode deterministic evaluation with frozen normalization; mean ± std across seeds. Each "
        "task trains with its entry in `rlctl/presets/ppo.yaml` (chosen by the screen in mujoco-v5-screen.md); "
        f"SB3 runs the same settings{' (where its PPO has them: see below the table)' if unmatched else ''} at "
        "the same budget. The anchors are published PPO results: mind their "
        "metric, version and seed count before comparing.", "",
        "| task | lib | seeds | last-100 return | det. eval | target | wall (min) | SPS | published anchors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    normalized: list[np.ndarray] = []
    for task in tasks:
        anchors = "; ".join(f"{score:g} ({src})" for score, src in ANCHORS.get(task, []))
        for lib in ("rlctl", "sb3"):
            rs = [r for r in runs if r["env"] == task and r["lib"] == lib]
            if not rs:
                continue
            target = TARGETS.get(task)
            lines.append(
                f"| {task} | {lib} | {len(rs)} | {mean_std([r['last100'] for r in rs])} | "
                f"{mean_std([r['eval_mean'] for r in rs])} | {target if target and lib == 'rlctl' else ''} | "
                f"{statistics.mean(r['wall_s'] for r in rs) / 60:.1f} | {statistics.mean(r['sps'] for r in rs):,.0f} | "
                f"{anchors if lib == 'rlctl' else ''} |")
        rl = [r["last100"] for r in runs if r["env"] == task and r["lib"] == "rlctl"]
        if rl and task in ANCHORS:
            low, ref = _random_score(task), ANCHORS[task][0][0]
            normalized.append((np.array(rl) - low) / (ref - low))
        _plot_returns([r for r in runs if r["env"] == task], out / f"mujoco-v5_{task}.png", task, "per-task preset")
    lines += _versus_sb3(runs, tasks)
    if unmatched:
        lines += ["", "SB3 has no equivalent for some preset settings, so its runs do without them: " +
                  "; ".join(f"{task}: {', '.join(items)}" for task, items in unmatched.items()) + "."]
    if normalized:
        low, high = stratified_bootstrap_ci(normalized, args.bootstrap)
        lines += ["", f"Aggregate over {len(normalized)} tasks: IQM of the normalized last-100 score "
                  f"**{iqm(np.concatenate(normalized)):.2f}** (95% stratified-bootstrap CI [{low:.2f}, {high:.2f}], "
                  f"{args.bootstrap} resamples). Normalized score = (score − random) / (anchor − random), with the "
                  "first anchor listed for the task as 1.0 and uniform random actions (10 seeded episodes) as 0."]
    if stale:
        lines += ["", f"{stale} finished run(s) trained with an older preset are left out (moved to "
                  f"`{runs_dir}/stale/` by the next run of the matrix)."]
    planned_tasks = [t for t in args.tasks.split(",") if t]
    planned = args.seeds * (len(planned_tasks) + len([t for t in args.sb3_tasks.split(",") if t]))
    if len(runs) < planned:
        lines += ["", f"**Incomplete: {len(runs)} of the {planned} planned runs are finished** "
                  "(the matrix is resumable: run the command again to add the rest)."]
    lines += ["", f"Budget: {steps:,} steps per run. Learning curves: `mujoco-v5_<task>.png`."]
    (out / "mujoco-v5.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
