"""``rlctl bench``: rlctl against SB3 on the same machine, same hyperparameters, same run.

* ``rlctl bench sps`` — steps per second of both libraries, interleaved repeats, median and ratio.
* ``rlctl bench returns`` — a libs × envs × seeds matrix at a fixed budget; each run is a separate
  process writing one JSON. Jobs are claimed with lock files, so the matrix is resumable and a second
  ``rlctl bench returns`` started later shares the remaining work.
* ``rlctl bench report`` — rebuild the tables and plots from the run JSONs.

Outputs (Markdown, CSV, PNG) go to ``--out`` (``results/`` in the repo). Benchmarks are not tests.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from rlctl.bench import checks
from rlctl.bench.load import RULE, settled_mean, timing_issue
from rlctl.bench.matrix import run_matrix
from rlctl.bench.seeds import refusal, span, table_seeds
from rlctl.bench.stats import SPREAD, difference_cells, mean_std
from rlctl.bench.worker import WARMUP_ROLLOUTS, worker_config
from rlctl.errors import UserError

LIBS = ("rlctl", "rlctl-overlap", "rlctl-fast", "sb3")
"""rlctl-overlap: process sampler + overlap (policy lag 1); rlctl-fast: the same + ``run.compile`` (``train --fast``)"""


def _require_sb3() -> None:
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise UserError("rlctl bench compares against Stable-Baselines3: pip install 'rlctl[bench]'") from None


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import gymnasium
    import torch

    try:
        import stable_baselines3

        sb3 = stable_baselines3.__version__
    except ImportError:
        sb3 = "n/a"
    return (f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, torch {torch.__version__}, "
            f"gymnasium {gymnasium.__version__}, stable-baselines3 {sb3}")


def _worker(lib: str, env: str, preset: str, steps: int, seed: int, threads: int, out: Path,
            set_items: list[str]) -> dict[str, Any]:
    # throughput runs need no evaluation (10 Atari games take minutes)
    cmd = [sys.executable, "-m", "rlctl.bench.worker", lib, env, preset, str(steps), str(seed), str(threads),
           str(out), *set_items, "--eval-episodes", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


# ---------------------------------------------------------------------------------------------
# SPS
# ---------------------------------------------------------------------------------------------


SPS_VARIANTS = (
    ("rlctl", 1, "rlctl, inline sampler (default)"),
    ("rlctl+bf16", 1, "rlctl, inline sampler, bf16 CNN encoder"),
    ("rlctl-overlap", 1, "rlctl, process sampler + overlap"),
    ("rlctl-overlap+bf16", 1, "rlctl, process sampler + overlap, bf16 CNN encoder"),
    ("rlctl-overlap+bf16+envpool", 1, "rlctl, process sampler + overlap, bf16 CNN encoder, EnvPool"),
    ("rlctl-fast", 1, "rlctl, process sampler + overlap + compile"),
    ("sb3", 0, "SB3 (torch default threads)"),
    ("sb3", 1, "SB3 (1 torch thread)"),
    ("ceiling", 1, "env-step ceiling: random actions, no learning"),
    ("ceiling+envpool", 1, "EnvPool env-step ceiling: random actions, no learning"),
)
DEFAULT_SPS_LIBS = ("rlctl", "rlctl-overlap", "rlctl-fast", "sb3", "ceiling")
"""What ``bench sps`` runs unless ``--libs`` says otherwise (the bf16 variants need a CNN policy)."""


def bench_sps(env: str, preset: str, steps: int, repeats: int, out: Path, set_items: list[str], tag: str,
              workers: list[int] | None = None, libs: tuple[str, ...] = DEFAULT_SPS_LIBS,
              report_only: bool = False) -> None:
    """Measure each variant ``repeats`` times, interleaved, into ``sps_<env>_<preset>[_<tag>].csv``, then write
    its table and plot; ``report_only`` rebuilds those two from the CSV of the same command."""
    checks.positive(steps=steps, repeats=repeats)
    checks.env_ids([env], "--env")
    checks.preset(preset, [env])
    checks.set_items(set_items)
    from rlctl.resolve import resolve_config

    cfg, _ = resolve_config(env, preset, None, set_items)
    workers = workers or [1]
    bad = [w for w in workers if w < 1 or cfg.env.num_envs % w]
    if bad:
        raise UserError(f"--workers {bad} must be positive and divide env.num_envs ({cfg.env.num_envs})")
    known = {lib for lib, _, _ in SPS_VARIANTS}
    if set(libs) - known:
        raise UserError(f"unknown --libs {sorted(set(libs) - known)}; choose from {', '.join(sorted(known))}")
    libs = (*libs, "sb3", "ceiling")  # the ratios' denominators always run
    stem = f"sps_{env.replace('/', '_')}_{preset}" + (f"_{tag}" if tag else "")
    if report_only:
        rows = _read_sps_rows(out / f"{stem}.csv")
    else:
        rows = _measure_sps(env, preset, steps, repeats, out, set_items, workers, libs)
        with open(out / f"{stem}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
    labels = list(dict.fromkeys(r["variant"] for r in rows))
    medians = {label: statistics.median(r["sps"] for r in rows if r["variant"] == label) for label in labels}
    steady = {label: statistics.median(r["steady_sps"] for r in rows if r["variant"] == label) for label in labels}
    # the ratios' SB3 is its faster configuration (default threads or 1 thread), for each measure on its own
    sb3_labels = list(dict.fromkeys(r["variant"] for r in rows if r["lib"] == "sb3"))
    sb3_label, sb3_steady = max(sb3_labels, key=medians.__getitem__), max(sb3_labels, key=steady.__getitem__)
    ceiling_label = next(r["variant"] for r in rows if r["lib"] == "ceiling")
    sb3, ceiling = medians[sb3_label], medians[ceiling_label]
    lines = [
        f"# SPS: rlctl vs Stable-Baselines3 on {env} (preset `{preset}`)", "",
        f"Command: `rlctl bench sps --env {env} --preset {preset} --steps {steps} --repeats {repeats}"
        + "".join(f" --set {item}" for item in set_items) + (f" --tag {tag}" if tag else "")
        + (f" --workers {','.join(map(str, workers))}" if workers != [1] else "")
        + (f" --libs {','.join(lib for lib in dict.fromkeys(libs) if lib not in ('sb3', 'ceiling'))}"
           if tuple(dict.fromkeys(libs)) != (*DEFAULT_SPS_LIBS,) else "") + "`  ",
        f"Shared settings: {cfg.env.num_envs} env(s) × {cfg.ppo.num_steps} steps per rollout, minibatch "
        f"{cfg.ppo.minibatch_size}, {cfg.ppo.update_epochs} epochs, {_network(cfg)}, "
        f"normalization obs={cfg.policy.normalize_obs} reward={cfg.ppo.normalize_reward}.  ",
        f"Machine: {rows[0].get('machine') or _machine()}  ",
        f"Date: {rows[0].get('date') or time.strftime('%Y-%m-%d')}. Each measurement is a fresh process "
        f"training {steps} steps with the same resolved config (wall time includes env and model construction); "
        "variants are interleaved within each repeat; the table gives the median over repeats. *Whole run*: "
        "steps / wall time, start-up included. *Steady state*: steps / time from the end of update "
        f"{WARMUP_ROLLOUTS + 1} to the end of the last, the same window for every library (it leaves out start-up "
        "and `torch.compile`). *÷ SB3*: against SB3's faster configuration for that measure (whole run: "
        f"{sb3_label}; steady state: {sb3_steady}).", "",
        "| variant | whole run SPS | ÷ SB3 | ÷ ceiling | steady-state SPS | ÷ SB3 | ÷ ceiling | runs (whole run) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label in labels:
        runs = ", ".join(f"{r['sps']:,.0f}" + (" †" if r["contended"] else "") for r in rows if r["variant"] == label)
        lines.append(f"| {label} | {medians[label]:,.0f} | {medians[label] / sb3:.2f}× | "
                     f"{100 * medians[label] / ceiling:.0f}% | {steady[label]:,.0f} | "
                     f"{steady[label] / steady[sb3_steady]:.2f}× | "
                     f"{100 * steady[label] / steady[ceiling_label]:.0f}% | {runs} |")
    contended = [r for r in rows if r["contended"]]
    lines += ["", f"† contended: {len(contended)} of the {len(rows)} measurements ran while other work loaded "
              f"the machine ({RULE}; the CSV has each one's load); their SPS, and the medians and ratios that "
              "include them, are not comparable. Rerun on an idle machine." if contended else
              f"Every measurement had the machine to itself ({RULE}; the CSV has each one's load)."]
    lines += _perf_table(rows, cfg.batch_size)
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    _plot_sps(medians, steady, rows, out / f"{stem}.png", f"{env} ({preset}{', ' + tag if tag else ''})")
    print("\n".join(lines))


def _measure_sps(env: str, preset: str, steps: int, repeats: int, out: Path, set_items: list[str],
                 workers: list[int], libs: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per variant and repeat, the variants interleaved within each repeat."""
    variants = [v for v in SPS_VARIANTS if v[0] in libs]
    if "rlctl-fast" in libs:
        at = next(i for i, v in enumerate(variants) if v[0] == "rlctl-fast") + 1
        variants[at:at] = [(f"rlctl-fast@{w}", 1, f"rlctl, process sampler ({w} workers) + overlap + compile")
                           for w in workers if w != 1]
    for lib, threads, _ in variants:  # each variant's config, validated here rather than in its first worker
        worker_config(lib, env, preset, steps, 1, threads, set_items)
    _require_sb3()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    tmp, machine = out / ".sps.json", _machine()
    for rep in range(repeats):
        for lib, threads, label in variants:
            res = _worker(lib, env, preset, steps, 1 + rep, threads, tmp, set_items)
            rows.append({"variant": label, "lib": lib, "date": time.strftime("%Y-%m-%d"), "machine": machine,
                         "threads": res["threads"], "repeat": rep,
                         "steps": res["steps"], "wall_s": round(res["wall_s"], 3), "sps": round(res["sps"], 1),
                         "steady_sps": round(res.get("steady_sps", float("nan")), 1),
                         "load": round(settled_mean(res["load"]["samples"]), 2),
                         "contended": timing_issue(res) or "",
                         **{f"perf_{k}": round(v, 4) for k, v in res.get("perf", {}).items()}})
            print(f"[{rep + 1}/{repeats}] {label}: {res['sps']:,.0f} SPS "
                  f"(steady state {res.get('steady_sps', float('nan')):,.0f})", flush=True)
    tmp.unlink(missing_ok=True)
    return rows


_SPS_TEXT_COLUMNS = ("variant", "lib", "date", "machine", "contended")


def _read_sps_rows(path: Path) -> list[dict[str, Any]]:
    """The rows :func:`_measure_sps` wrote to ``path``, numbers as numbers (a variant's missing ``perf_*``
    cells, empty in the CSV, left out)."""
    if not path.exists():
        raise UserError(f"no measurements at {path}: run the same command without --report-only first")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise UserError(f"{path} holds no measurements")
    return [{k: v if k in _SPS_TEXT_COLUMNS else float(v) for k, v in row.items()
             if k in _SPS_TEXT_COLUMNS or v != ""} for row in rows]


def _network(cfg: Any) -> str:
    if cfg.env.id.startswith("ALE/") or cfg.policy.encoder in ("nature", "impala"):
        name = "Nature" if cfg.policy.encoder in ("auto", "nature") else "IMPALA"
        return f"{name} CNN on uint8 4×84×84 frames (SB3: CnnPolicy, the same env stack)"
    return f"{cfg.policy.hidden_sizes} {cfg.policy.activation} networks"


def _perf_table(rows: list[dict[str, Any]], batch: int) -> list[str]:
    """Seconds per rollout in each phase for the rlctl variants (medians over repeats)."""
    keys = [("perf_env_s", "sampler: env.step"),
            ("perf_policy_and_bookkeeping_s", "sampler: policy + bookkeeping"),
            ("perf_learner_wait_s", "learner: waiting for the rollout"),
            ("perf_learner_update_s", "learner: GAE + update")]
    labels = list(dict.fromkeys(r["variant"] for r in rows if "perf_env_s" in r))
    if not labels:
        return []
    out = ["", f"Where the time goes, seconds per rollout of {batch} steps (median over repeats; the sampler's "
           "phases run in parallel with the learner's update when overlapped):", "",
           "| variant | " + " | ".join(name for _, name in keys) + " |", "|---|" + "---:|" * len(keys)]
    for label in labels:
        cells = [statistics.median(r[k] for r in rows if r["variant"] == label and k in r) for k, _ in keys]
        out.append(f"| {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return out


def _plot_sps(medians: dict[str, float], steady: dict[str, float], rows: list[dict[str, Any]], path: Path,
              title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(medians) + 1.8))
    labels = list(medians)
    y = np.arange(len(labels))
    colors = ["tab:blue" if k.startswith("rlctl") else "tab:green" if "ceiling" in k else "tab:gray" for k in labels]
    ax.barh(y - 0.2, [steady[k] for k in labels], height=0.4, color=colors, label="steady state")
    ax.barh(y + 0.2, [medians[k] for k in labels], height=0.4, color=colors, alpha=0.45, label="whole run")
    for i, label in enumerate(labels):
        pts = [r["sps"] for r in rows if r["variant"] == label]
        ax.plot(pts, [i + 0.2] * len(pts), "k.", ms=4)
    ax.set_yticks(y, labels)
    ax.xaxis.set_major_formatter(lambda x, _pos: f"{x / 1000:g}k")
    ax.set_xlabel("training steps per second (medians; dots: each whole-run repeat)")
    ax.set_title(f"PPO throughput, {title}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# returns
# ---------------------------------------------------------------------------------------------


def _runs_dir(out: Path, preset: str) -> Path:
    return out / "runs" / preset


def bench_returns(envs: list[str], preset: str, seeds: int, steps: int, jobs: int, libs: list[str],
                  out: Path) -> None:
    checks.positive(seeds=seeds, steps=steps, jobs=jobs)
    checks.env_ids(envs, "--envs")
    checks.preset(preset, envs)
    bad = [lib for lib in libs if lib not in LIBS]
    if bad or not libs:
        raise UserError(f"unknown --libs {bad}; choose from {', '.join(LIBS)}" if bad else "--libs names no library")
    for lib in libs:  # each run's config, validated here rather than in its worker
        for env in envs:
            worker_config(lib, env, preset, steps, 1, 1)
    _require_sb3()
    todo = [(lib, env, seed) for seed in table_seeds(seeds) for env in envs for lib in libs]
    run_matrix(todo, preset, steps, jobs, _runs_dir(out, preset))


def _load_runs(runs: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))]


def report_returns(preset: str, out: Path) -> None:
    """``returns_<preset>.md`` and ``.csv``: the table takes the runs on table seeds (101+); while there are none
    it shows the others, and says that they ran on screening seeds (:mod:`rlctl.bench.seeds`)."""
    checks.preset(preset)
    loaded = _load_runs(_runs_dir(out, preset))
    if not loaded:
        raise UserError(f"no finished runs under {_runs_dir(out, preset)}")
    accepted = [r for r in loaded if refusal(r, preset) is None]
    runs = accepted or loaded
    envs = sorted({r["env"] for r in runs})
    stem = f"returns_{preset}"
    with open(out / f"{stem}.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["lib", "env", "seed", "steps", "last100_train_return", "det_eval_mean", "wall_s", "sps",
                         "set_aside", "timing_issue"])
        for r in loaded:
            writer.writerow([r["lib"], r["env"], r["seed"], r["steps"], round(r["last100"], 2),
                             round(r["eval_mean"], 2), round(r["wall_s"], 1), round(r["sps"], 1),
                             refusal(r, preset) or "", timing_issue(r) or ""])
    steps = max(r["steps"] for r in runs)
    budget = max(r.get("budget", r["steps"]) for r in runs)
    n_seeds = len({r["seed"] for r in runs})
    command = f"rlctl bench returns --envs {','.join(envs)} --preset {preset} --steps {budget} --seeds {n_seeds}"
    lines = [
        f"# Returns: rlctl vs Stable-Baselines3 (preset `{preset}`, identical hyperparameters)", "",
        f"Command: `{command}` (table seeds {span(table_seeds(n_seeds))}; whole rollouts only: {steps:,} steps per "
        "run)  ",
        f"Machine: {_machine()}  ",
    ]
    if not accepted:
        lines += ["", f"**Provisional: no run on table seeds is finished.** The rows show the runs on seeds "
                  f"{span(r['seed'] for r in runs)}, which the rules count as screening seeds (results/README.md); "
                  "the table is the command above.", ""]
    elif len(accepted) < len(loaded):
        lines += ["", f"Set aside, not in the table: {len(loaded) - len(accepted)} run(s) "
                  f"({'; '.join(sorted({refusal(r, preset) or '' for r in loaded} - {''}))}).", ""]
    lines += [
        "Metric: per run, the mean raw return of the last 100 training episodes (CleanRL / Open RL Benchmark "
        "metric) and the mean of a 10-episode deterministic evaluation with frozen normalization; per row, "
        f"{SPREAD}. SPS: the mean over the runs that had the machine to themselves ({RULE}); `—` where none "
        "did or the runs have no load record. Throughput is measured by `rlctl bench sps`.", "",
        "| env | lib | n (seeds) | last-100 train return, mean ± sample std | deterministic eval, mean ± sample std "
        "| SPS |", "|---|---|---:|---:|---:|---:|",
    ]
    for env in envs:
        for lib in LIBS:
            rs = [r for r in runs if r["env"] == env and r["lib"] == lib]
            if not rs:
                continue
            timed = [r["sps"] for r in rs if timing_issue(r) is None]
            sps = "—" if not timed else f"{statistics.mean(timed):,.0f}" + (
                f" ({len(timed)} of {len(rs)})" if len(timed) < len(rs) else "")
            lines.append(f"| {env} | {lib} | {len(rs)} ({span(r['seed'] for r in rs)}) | "
                         f"{mean_std([r['last100'] for r in rs])} | {mean_std([r['eval_mean'] for r in rs])} | {sps} |")
        _plot_returns([r for r in runs if r["env"] == env], out / f"{stem}_{env.replace('/', '_')}.png", env, preset)
    lines += _against_inline(runs, envs)
    lines += ["", "Learning curves: " + ", ".join(f"`{stem}_{env.replace('/', '_')}.png`" for env in envs)]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _against_inline(runs: list[dict[str, Any]], envs: list[str]) -> list[str]:
    """Each faster rlctl variant against the inline sampler on the same seeds: the difference of the means and a
    two-sided permutation test, so that "level within the seed spread" is a number, not a reading of the table."""
    lines = []
    for env in envs:
        inline = {r["seed"]: r for r in runs if r["env"] == env and r["lib"] == "rlctl"}
        for lib in ("rlctl-overlap", "rlctl-fast"):
            other = {r["seed"]: r for r in runs if r["env"] == env and r["lib"] == lib}
            seeds = sorted(inline.keys() & other.keys())
            if len(seeds) < 2:
                continue
            cells = difference_cells([other[s] for s in seeds], [inline[s] for s in seeds])
            lines.append(f"- {env}, {lib} − rlctl over seeds {span(seeds)}: {cells}")
    if lines:
        lines = ["", "Faster variants against the inline sampler (difference of means; two-sided permutation test "
                 "over the seeds both ran):", *lines]
    return lines


def _plot_returns(runs: list[dict[str, Any]], path: Path, env: str, preset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    grid = np.linspace(0, max(r["steps"] for r in runs), 100)
    for lib, color in zip(LIBS, ("tab:blue", "tab:green", "tab:red", "tab:orange"), strict=True):
        curves = []
        for r in (r for r in runs if r["lib"] == lib):
            ep = np.asarray(r["episodes"], dtype=float)
            if len(ep) < 2:
                continue
            window = max(1, min(20, len(ep) // 5))
            smooth = np.convolve(ep[:, 1], np.ones(window) / window, mode="valid")
            curves.append(np.interp(grid, ep[window - 1:, 0], smooth, left=np.nan))
        if not curves:
            continue
        arr = np.vstack(curves)
        with warnings.catch_warnings():  # grid points before any seed's first smoothed value are NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(arr, axis=0)
        ax.plot(grid, mean, color=color, label=f"{lib} ({len(curves)} seeds)")
        if len(curves) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                low, high = np.nanmin(arr, axis=0), np.nanmax(arr, axis=0)
            ax.fill_between(grid, low, high, color=color, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training episode return (smoothed)")
    ax.set_title(f"{env}, preset {preset}: mean and min–max over seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
