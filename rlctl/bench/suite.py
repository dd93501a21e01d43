"""``rlctl bench suite``: the MuJoCo v5 table — tasks × seeds with each task's preset, plus SB3 on some.

Every run is a separate process (see :func:`rlctl.bench.matrix.run_matrix`: resumable, lock-claimed, so a
bigger machine or a second invocation can share the work). The report, ``<out>/mujoco-v5.md``, gives per task
the CleanRL/Open RL Benchmark metric (mean of the last 100 training episodes) and a deterministic 10-episode
evaluation as mean ± sample std over seeds, wall time and SPS of the runs that had the machine to themselves,
the published anchors with their metric, version and seed count, and learning curves with seed bands. Across
tasks it aggregates normalized scores (one reference per task, of the table's own metric) with the
interquartile mean and a stratified-bootstrap 95% interval (:mod:`rlctl.bench.stats`).

The table and the preset screen never share a seed (:mod:`rlctl.bench.seeds`): the table trains seeds 101+,
the screens (``--preset NAME``, and ``--screen`` for each task's own entry) seeds 1+, in their own
``runs/suite-<name>/`` folders. The report sets aside any result from a screening seed or a screen, and says so.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.bench import checks
from rlctl.bench.anchors import ANCHORS, REFERENCE_SOURCE, REFERENCES, normalized_scores
from rlctl.bench.load import RULE, timing_issue
from rlctl.bench.seeds import SCREEN_SEEDS, is_table_seed, refusal, screen_seeds, span, table_seeds
from rlctl.bench.stats import SPREAD, difference_cells, iqm, mean_std, stratified_bootstrap_ci
from rlctl.errors import UserError

MUJOCO_V5 = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5", "Swimmer-v5",
             "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5", "Pusher-v5"]
TARGETS = {"HalfCheetah-v5": 5000, "Hopper-v5": 2500, "Walker2d-v5": 3500, "Ant-v5": 3000, "Humanoid-v5": 750}
ENTRY_SCREEN = "suite-entry"
"""where ``--screen`` puts each task's own entry on screening seeds (the screen's "(task's entry)" rows)"""

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
    is_screen = args.preset != "-" or args.screen
    runs = out / "runs" / (ENTRY_SCREEN if is_screen else "suite")
    if args.preset != "-":  # a candidate's runs go to their own directory, named after it: no preset files
        checks.preset(args.preset, tasks, files=False)
        runs = out / "runs" / f"suite-{args.preset}"
    seeds = screen_seeds(args.seeds) if is_screen else table_seeds(args.seeds)
    todo = [(lib, env, seed) for seed in seeds
            for env in tasks for lib in ("rlctl", "sb3") if lib == "rlctl" or env in sb3_tasks]
    # The entry's screen may take the entry's earlier runs on screening seeds (same name, same config); the
    # table reuses nothing, and refuses a result of its own that a screen made (copied in by hand).
    reuse = [out / "runs" / "suite"] if args.screen and args.preset == "-" else []
    if not is_screen and not args.report_only:
        _refuse_screen_results(todo, runs)
    # Also with --report-only: results of an older preset are set aside (moved to stale/).
    jobs = prepare_matrix(todo, args.preset, args.steps, runs, reuse, set_aside=not args.report_only,
                          parallel=args.jobs)
    if not args.report_only:
        if sb3_tasks:
            _require_sb3()
        run_claimed(jobs, args.jobs)
    if not is_screen:  # a screen's runs go to the screen page only; the table's command line is its own
        report(out, out / "runs" / "suite", args)
    screen(out)
    return 0


def _refuse_screen_results(todo: list[tuple[str, str, int]], runs: Path) -> None:
    """Stop before training when a finished table result came from a screen: the run would be kept as it is."""
    import json

    for lib, env, seed in todo:
        path = runs / f"{lib}__{env.replace('/', '_')}__s{seed}.json"
        why = refusal(json.loads(path.read_text())) if path.exists() else None
        if why:
            raise UserError(f"{path} cannot stand in the table: {why}. The table trains its own runs on seeds "
                            f"{span(table_seeds(1))}+; move the file out of {runs} and run the command again")


def screen(out: Path) -> None:
    """``mujoco-v5-screen.md``: per task, every preset that has rlctl runs on screening seeds (each task's own
    entry and the candidates run with ``--preset``), best mean last-100 return first — the evidence for choosing
    presets. Table seeds never enter it: the choice must not see them."""
    from rlctl.bench.sps import _load_runs
    from rlctl.bench.worker import result_fingerprint

    dirs = sorted(d for d in (out / "runs").glob("suite-*") if d.name != ENTRY_SCREEN)
    entry_dir = out / "runs" / ENTRY_SCREEN
    if not dirs and not entry_dir.exists():
        return
    table = out / "runs" / "suite"
    # the entry's runs on screening seeds: those the table held before issue 23, and the --screen ones
    entry = {(r["lib"], r["env"], r["seed"]): r for r in (_load_runs(table) if table.exists() else [])
             if not is_table_seed(r["seed"])}
    entry.update({(r["lib"], r["env"], r["seed"]): r for r in (_load_runs(entry_dir) if entry_dir.exists() else [])})
    earlier = [r for r in entry.values() if not is_current(r)]
    earlier += [r for r in (_load_runs(table / "stale") if (table / "stale").exists() else [])
                if not is_table_seed(r["seed"])]
    found = {"(task's entry)": [r for r in entry.values() if is_current(r)], "(an earlier entry)": earlier}
    for d in dirs:
        name = d.name.removeprefix("suite-")
        found[name] = [r for r in _load_runs(d) if is_current(r, name) and not is_table_seed(r["seed"])]
    tasks = [t for t in MUJOCO_V5 if any(r["env"] == t for rs in found.values() for r in rs)]
    lines = ["# MuJoCo v5 preset screen", "",
             "Each task's own preset entry (`rlctl bench suite --screen`) against candidate presets (`rlctl bench "
             "suite --preset NAME`), rlctl only, at the same budget, on screening seeds "
             f"({SCREEN_SEEDS[0]}–{SCREEN_SEEDS[-1]}; the table's seeds, {table_seeds(1)[0]}+, never enter this page). "
             "Per-task presets are chosen from this table (see README, *Benchmarks*). "
             f"Metric: the last-100 training return and `det. eval` as in mujoco-v5.md, {SPREAD} (the mean alone "
             "for one seed).", "",
             "| task | preset | n (seeds) | steps | last-100 return, mean ± sample std | "
             "det. eval, mean ± sample std | fingerprint |",
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
            lines.append(f"| {task} | {name} | {_n_seeds(same)} | {budget:,} | "
                         f"{mean_std([r['last100'] for r in same])} | {mean_std([r['eval_mean'] for r in same])} | "
                         f"{', '.join(prints)} |")
    (out / "mujoco-v5-screen.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _n_seeds(runs: list[dict[str, Any]]) -> str:
    return f"{len(runs)} ({span(r['seed'] for r in runs)})"


def is_current(run: dict[str, Any], preset: str = "-") -> bool:
    """Whether a result was trained with what ``preset`` resolves to today (results without a config count)."""
    from rlctl.bench.worker import fingerprint, result_fingerprint, worker_config

    found = result_fingerprint(run)
    if found is None:
        return True
    cfg, _ = worker_config(run["lib"], run["env"], preset, run["budget"], run["seed"], 1)
    return found == fingerprint(cfg)


def _sb3_unmatched(tasks: list[str]) -> dict[str, list[str]]:
    """Per task, the preset settings SB3's PPO cannot take (:func:`rlctl.bench.worker.sb3_unmatched`)."""
    from rlctl.bench.worker import sb3_unmatched
    from rlctl.resolve import resolve_config

    found = {task: sb3_unmatched(resolve_config(task)[0]) for task in tasks}
    return {task: items for task, items in found.items() if items}


def _versus_sb3(runs: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """Per task that both libraries ran (2+ seeds each): rlctl's mean minus SB3's, with a permutation p-value."""
    parts = []
    for task in tasks:
        by_lib = {lib: [r for r in runs if r["env"] == task and r["lib"] == lib] for lib in ("rlctl", "sb3")}
        if min(len(rs) for rs in by_lib.values()) < 2:
            continue
        parts.append(f"{task} {difference_cells(by_lib['rlctl'], by_lib['sb3'])}")
    if not parts:
        return []
    return ["", "rlctl − SB3, difference of the means over seeds, with the two-sided p-value of a permutation test "
            "(seed labels shuffled: every relabelling up to 20,000 of them, else 20,000 seeded random ones): "
            + "; ".join(parts) + ". Above 0.05, these seeds do not show a difference at the usual 5% level."]


def _aside_summary(aside: list[tuple[dict[str, Any], str]]) -> str:
    """The set-aside results, grouped by why (:func:`rlctl.bench.seeds.refusal`)."""
    parts = []
    seeds = [r["seed"] for r, _ in aside if not is_table_seed(r["seed"])]
    if seeds:
        parts.append(f"{len(seeds)} ran on screening seeds ({span(seeds)}; screens and tuning use "
                     f"{SCREEN_SEEDS[0]}–{SCREEN_SEEDS[-1]}, tables {table_seeds(1)[0]}+)")
    reused = [r for r, _ in aside if r.get("reused_from")]
    if reused:
        parts.append(f"{len(reused)} are screen runs that the table had adopted (`reused_from`: "
                     + ", ".join(f"{r['env']} seed {r['seed']}" for r in reused) + ")")
    screened = [r for r, _ in aside if r.get("preset", "-") != "-" and not r.get("reused_from")]
    if screened:
        parts.append(f"{len(screened)} were trained by a screen's candidate preset")
    return "; ".join(parts)


def _timing_cells(rs: list[dict[str, Any]]) -> str:
    """Mean wall minutes and SPS over the runs whose timing counts (:func:`rlctl.bench.load.timing_issue`)."""
    ok = [r for r in rs if timing_issue(r) is None]
    if not ok:
        return "— | —"
    of = "" if len(ok) == len(rs) else f" ({len(ok)} of {len(rs)})"
    return (f"{statistics.mean(r['wall_s'] for r in ok) / 60:.1f}{of} | "
            f"{statistics.mean(r['sps'] for r in ok):,.0f}{of}")


def _timing_note(runs: list[dict[str, Any]]) -> str:
    issues = [timing_issue(r) for r in runs]
    unrecorded = sum(i == "no load record" for i in issues)
    contended = sum(i is not None for i in issues) - unrecorded
    left = [f"{unrecorded} run(s) with no load record (trained before the bench kept one, so nothing shows that "
            "they had the machine to themselves)"] if unrecorded else []
    left += [f"{contended} contended run(s)"] if contended else []
    return ("Wall time and SPS are means over the runs that had the machine to themselves (each run records the "
            f"load average while it trains; {RULE}). " +
            (f"Left out: {' and '.join(left)}; `—` where a row has no run left." if left else
             "No run was left out."))


def report(out: Path, runs_dir: Path, args: argparse.Namespace) -> None:
    """``mujoco-v5.md`` and the learning curves, from the finished results in ``runs_dir``.

    The table takes only results that may stand in one (:func:`rlctl.bench.seeds.refusal`). While none is
    finished, it shows the set-aside ones instead, under a heading that says they are not a result.
    """
    from rlctl.bench.sps import _load_runs, _machine, _plot_returns

    loaded = _load_runs(runs_dir) if runs_dir.exists() else []
    current = [r for r in loaded if is_current(r)]
    stale = len(loaded) - len(current)
    if not current:
        raise UserError(f"no finished runs of the current presets under {runs_dir}")
    aside = [(r, why) for r in current if (why := refusal(r))]
    accepted = [r for r in current if refusal(r) is None]
    provisional = not accepted
    runs = accepted or [r for r, _ in aside]
    tasks = [t for t in MUJOCO_V5 if any(r["env"] == t for r in runs)]
    tasks += sorted({r["env"] for r in runs} - set(tasks))
    steps = max(r["budget"] for r in runs)
    unmatched = _sb3_unmatched(sorted({r["env"] for r in runs if r["lib"] == "sb3"}))
    planned_tasks = [t for t in args.tasks.split(",") if t]
    planned = args.seeds * (len(planned_tasks) + len([t for t in args.sb3_tasks.split(",") if t]))
    seeds = span(table_seeds(args.seeds))
    command = (f"rlctl bench suite --tasks {args.tasks} --seeds {args.seeds} --steps {args.steps} "
               f"--sb3-tasks {args.sb3_tasks!r} --jobs {args.jobs}")
    lines = ["# MuJoCo v5: rlctl PPO with each task's preset", "",
             f"Command: `{command}` (table seeds {seeds})  ", f"Machine: {_machine()}  "]
    if provisional:
        lines += ["", f"**Not a benchmark result: none of the {planned} table runs (seeds {seeds}) is finished.** "
                  f"The rows below are the {len(runs)} runs that the rules for tables set aside (results/README.md), "
                  f"shown for reference only: {_aside_summary(aside)}. A screen picked each task's preset on these "
                  "seeds, so the rows carry its selection. The table is the command above, which trains every run "
                  "on table seeds and reuses none (resumable).", ""]
    lines += [
        "Metric: per run, the mean raw return of the last 100 training episodes (CleanRL / Open RL Benchmark) "
        f"and of a 10-episode deterministic evaluation with frozen normalization; per row, {SPREAD} (the seeds "
        "column). Each task trains with its entry in `rlctl/presets/ppo.yaml` (chosen by the screen in "
        "mujoco-v5-screen.md, on screening seeds); "
        f"SB3 runs the same settings{' (where its PPO has them: see below the table)' if unmatched else ''} at "
        "the same budget. The anchors are published PPO results: mind their "
        "metric, version and seed count before comparing.", "",
        "| task | lib | n (seeds) | last-100 return, mean ± sample std | det. eval, mean ± sample std | target | "
        "wall (min) | SPS | published anchors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for task in tasks:
        anchors = "; ".join(f"{score:g} ({src})" for score, src in ANCHORS.get(task, []))
        for lib in ("rlctl", "sb3"):
            rs = [r for r in runs if r["env"] == task and r["lib"] == lib]
            if not rs:
                continue
            target = TARGETS.get(task) if lib == "rlctl" else None
            mean = statistics.mean(r["last100"] for r in rs)
            verdict = "" if target is None or provisional else (": met" if mean >= target else ": missed")
            lines.append(
                f"| {task} | {lib} | {_n_seeds(rs)} | {mean_std([r['last100'] for r in rs])} | "
                f"{mean_std([r['eval_mean'] for r in rs])} | {target or ''}{verdict} | {_timing_cells(rs)} | "
                f"{anchors if lib == 'rlctl' else ''} |")
        _plot_returns([r for r in runs if r["env"] == task], out / f"mujoco-v5_{task}.png", task, "per-task preset")
    lines += ["", _timing_note(runs)]
    lines += _versus_sb3(runs, tasks)
    if unmatched:
        lines += ["", "SB3 has no equivalent for some preset settings, so its runs do without them: " +
                  "; ".join(f"{task}: {', '.join(items)}" for task, items in unmatched.items()) + "."]
    normalized = normalized_scores(runs, tasks)
    if normalized:
        low, high = stratified_bootstrap_ci([x for x, _ in normalized.values()], args.bootstrap)
        score = iqm(np.concatenate([x for x, _ in normalized.values()]))
        refs = "; ".join(f"{task} {REFERENCES[task]:g} (random {rnd:.1f})" for task, (_, rnd) in normalized.items())
        left = [t for t in tasks if t not in normalized and any(r["lib"] == "rlctl" and r["env"] == t for r in runs)]
        lines += ["", f"Aggregate over {len(normalized)} task(s): IQM of the normalized last-100 return "
                  f"**{score:.2f}** (95% stratified-bootstrap interval [{low:.2f}, {high:.2f}], {args.bootstrap} "
                  "resamples of each task's runs). Normalized = (last-100 return − random) / (reference − random): "
                  "0 = uniform random actions (10 seeded episodes), 1 = one reference per task, all from one source "
                  f"of the same metric: {REFERENCE_SOURCE}. References: {refs}."
                  + (f" Left out for want of a reference of that metric: {', '.join(left)}." if left else "")]
    if aside and not provisional:
        lines += ["", f"Set aside, not in the table ({len(aside)} results): {_aside_summary(aside)}."]
    if stale:
        lines += ["", f"{stale} finished run(s) trained with an older preset are left out (moved to "
                  f"`{runs_dir}/stale/` by the next run of the matrix)."]
    if not provisional and len(runs) < planned:
        lines += ["", f"**Incomplete: {len(runs)} of the {planned} planned runs are finished** "
                  "(the matrix is resumable: run the command again to add the rest)."]
    lines += ["", f"Budget: {steps:,} steps per run. Learning curves: `mujoco-v5_<task>.png`."]
    (out / "mujoco-v5.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
