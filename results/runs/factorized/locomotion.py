"""The locomotion part of results/factorized-baselines.md: 1M-step PPO on MuJoCo tasks with the state critic
against factorized baselines, and the variance decomposition at three checkpoints of one factorized run.

Run from the repository root with rlctl installed:

    python results/runs/factorized/locomotion.py train --env HalfCheetah-v5 --arms regress,state --seeds 101-105 \\
        --runs /tmp/fb --jobs 2
    python results/runs/factorized/locomotion.py decompose --run /tmp/fb/HalfCheetah-v5/regress_s101 \\
        --steps 100000,500000,1000000
    python results/runs/factorized/locomotion.py collect --runs /tmp/fb
    python results/runs/factorized/locomotion.py report

``train`` runs ``rlctl train`` with each env's preset as shipped (one process per run, ``--jobs`` at a time, runs
of one seed side by side so that their wall times see the same load); a run whose ``final_eval.json`` exists is
skipped, one held by a live process (``<run>.lock``) too, so the command resumes and two invocations share the
queue. Every run keeps its checkpoints (``run.keep_checkpoints``, every 100k steps). ``decompose`` runs
``rlctl variance --decompose`` at the kept checkpoints nearest to the given steps (the factorized run's
checkpoint holds its critic and its factorized baselines, trained side by side). ``collect`` compacts each run's
``metrics.jsonl`` into ``runs/factorized/loco/<env>_<arm>_s<seed>.json``; ``report`` reads only those files and
the variance JSONs and writes ``factorized-baselines_locomotion.md`` and its plot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parents[1]
LOCO = HERE / "loco"
VARIANCE = HERE / "variance"
ARMS = {"state": [], "state_pd": ["--set", "ppo.per_dim_ratio=true"],
        "regress": ["--set", "baseline.type=factorized", "--set", "baseline.mode=regress"],
        "q_mean": ["--set", "baseline.type=factorized", "--set", "baseline.mode=q_mean"]}
LABELS = {"state": "state V(s)", "state_pd": "state V(s), per-dim ratios", "regress": "factorized regress",
          "q_mean": "factorized q_mean"}


def _ints(text: str) -> list[int]:
    if "-" in text and "," not in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",")]


def _alive(lock: Path) -> bool:
    try:
        os.kill(int(lock.read_text()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _claim(run: Path) -> bool:
    """Take a run for this process unless it is finished or another live process holds it."""
    lock = run.with_name(run.name + ".lock")
    if (run / "final_eval.json").exists() or _alive(lock):
        return False
    run.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    return True


def train_one(env: str, arm: str, seed: int, steps: int, run: Path) -> int:
    cmd = [sys.executable, "-m", "rlctl.cli", "train", "--env", env, "--steps", str(steps), "--seed", str(seed),
           "--run-dir", str(run), "--quiet", "--set", "run.keep_checkpoints=true",
           "--set", "run.checkpoint_every=100000", *ARMS[arm]]
    if (run / "checkpoint.pt").exists():
        cmd = [sys.executable, "-m", "rlctl.cli", "train", "--resume", str(run), "--quiet"]
    with open(run.with_name(run.name + ".log"), "a") as log:
        return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)


def cmd_train(args: argparse.Namespace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(seed, arm) for seed in _ints(args.seeds) for arm in args.arms.split(",")]
    runs = Path(args.runs) / args.env

    def work(_: int) -> None:
        for seed, arm in jobs:
            run = runs / f"{arm}_s{seed}"
            if _claim(run):
                rc = train_one(args.env, arm, seed, args.steps, run)
                print(f"{args.env} {arm} seed {seed}: exit {rc}", flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(work, range(args.jobs)))


def _kept(run: Path, step: int) -> Path:
    kept = sorted((run / "checkpoints").glob("step_*.pt"))
    if not kept:
        raise SystemExit(f"{run}: no kept checkpoints")
    return min(kept, key=lambda p: abs(int(p.stem.split("_")[1]) - step))


def cmd_decompose(args: argparse.Namespace) -> None:
    run = Path(args.run)
    env, name = run.parent.name, run.name
    for step in _ints(args.steps):
        ckpt = _kept(run, step)
        out = VARIANCE / f"{env}_{name}_{ckpt.stem}.json"
        if out.exists():
            continue
        subprocess.check_call([sys.executable, "-m", "rlctl.cli", "variance", str(ckpt),
                               "--baselines", "none,state,factorized", "--fit-batches", "5", "--batches", "30",
                               "--reference", "100", "--decompose", "--states", "20", "--seed", "0", "--quiet",
                               "--out", str(out), "--force"])
        print(f"{ckpt}: {out}", flush=True)


def cmd_collect(args: argparse.Namespace) -> None:
    LOCO.mkdir(parents=True, exist_ok=True)
    for metrics in sorted(Path(args.runs).glob("*/*_s*/metrics.jsonl")):
        run = metrics.parent
        arm, seed = run.name.rsplit("_s", 1)
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        t0 = rows[0]["time"] - rows[0]["step"] / next(r["value"] for r in rows if r["tag"] == "charts/SPS")
        episodes = [[r["step"], round(r["value"], 2), round(r["time"] - t0, 1)]
                    for r in rows if r["tag"] == "charts/episodic_return"]
        update = [r["value"] for r in rows if r["tag"] == "perf/learner_update_s"]
        bev = [r["value"] for r in rows if r["tag"] == "losses/baseline_explained_variance"]
        ev = [r["value"] for r in rows if r["tag"] == "losses/explained_variance"]
        final = json.loads((run / "final_eval.json").read_text()) if (run / "final_eval.json").exists() else None
        out = {"env": run.parent.name, "arm": arm, "seed": int(seed), "steps": episodes[-1][0] if episodes else 0,
               "finished": final is not None, "episodes": episodes,
               "median_update_s": statistics.median(update) if update else None,
               "critic_explained_variance_last10": statistics.fmean(ev[-10:]) if ev else None,
               "baseline_explained_variance_last10": statistics.fmean(bev[-10:]) if bev else None,
               "final_eval": {k: final[k] for k in ("mean_return", "std_return", "episodes") if k in final}
               if final else None}
        path = LOCO / f"{out['env']}_{arm}_s{seed}.json"
        path.write_text(json.dumps(out, separators=(",", ":")))
        print(f"{path}: {out['steps']} steps, finished {out['finished']}")


MARK = 500_000


def _before(episodes: list[list[float]], step: int) -> float:
    return statistics.fmean(e[1] for e in [e for e in episodes if e[0] <= step][-100:])


def _last100(episodes: list[list[float]]) -> float:
    return statistics.fmean(e[1] for e in episodes[-100:])


def cmd_report(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = [json.loads(p.read_text()) for p in sorted(LOCO.glob("*.json"))]
    envs = sorted({r["env"] for r in runs})
    lines = ["# Factorized baselines on locomotion (generated by `results/runs/factorized/locomotion.py report`)",
             "", "Statistic: mean ± sample std over the finished runs (n in each cell); per seed in brackets.",
             "Last-100: the mean return of the last 100 training episodes at 1M steps; eval: the deterministic",
             "policy's mean return over 10 episodes at the end. Update time: the median `Learner.update` wall time.",
             "Runs of one seed trained side by side, so the update-time ratio is from interleaved runs.", ""]
    for env in envs:
        mine = [r for r in runs if r["env"] == env and r["finished"]]
        arms = [a for a in ARMS if any(r["arm"] == a for r in runs if r["env"] == env)]
        lines += [f"## {env}", "", f"At {MARK:,} steps (the 100 episodes before it; every run that got there, "
                  "finished or not):", "", "| arm | n | return at 500k |", "|---|---:|---|"]
        for arm in arms:
            at = [_before(r["episodes"], MARK) for r in runs if r["env"] == env and r["arm"] == arm
                  and r["steps"] >= MARK]
            if at:
                each = ", ".join(f"{x:.0f}" for x in at)
                lines.append(f"| {LABELS[arm]} | {len(at)} | {statistics.fmean(at):.0f} [{each}] |")
        lines += ["", "At 1M steps (finished runs):", "",
                  "| arm | n | last-100 | eval | update s (÷ state) | baseline expl. var. (last 10 updates) |",
                  "|---|---:|---|---|---|---|"]
        base = [r["median_update_s"] for r in mine if r["arm"] == "state"]
        for arm in arms:
            rs = sorted((r for r in mine if r["arm"] == arm), key=lambda r: r["seed"])
            if not rs:
                continue
            last = [_last100(r["episodes"]) for r in rs]
            ev = [r["final_eval"]["mean_return"] for r in rs]
            upd = statistics.fmean(r["median_update_s"] for r in rs)

            def ms(xs: list[float]) -> str:
                each = ", ".join(f"{x:.0f}" for x in xs)
                return f"{statistics.fmean(xs):.0f} ± {statistics.stdev(xs):.0f} [{each}]" if len(xs) > 1 \
                    else f"{xs[0]:.0f} (one seed)"

            ratio = f" ({upd / statistics.fmean(base):.2f}×)" if base else ""
            bev = [b for r in rs if (b := r["baseline_explained_variance_last10"]) is not None]
            shown = f"{statistics.fmean(bev):.3f}" if bev else "—"
            lines.append(f"| {LABELS[arm]} | {len(rs)} | {ms(last)} | {ms(ev)} | {upd:.2f}{ratio} | {shown} |")
        lines.append("")
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for i, arm in enumerate(arms):
            for r in (r for r in runs if r["env"] == env and r["arm"] == arm):
                e = np.array(r["episodes"])
                smooth = np.convolve(e[:, 1], np.ones(20) / 20, mode="valid")
                label = f"{LABELS[arm]} s{r['seed']}" + ("" if r["finished"] else " (stopped early)")
                axes[0].plot(e[19:, 0], smooth, color=f"C{i}", alpha=0.8, label=label)
                axes[1].plot(e[19:, 2] / 60, smooth, color=f"C{i}", alpha=0.8, label=label)
        axes[0].set_xlabel("environment steps")
        axes[1].set_xlabel("wall time (min, contended 2-core VM)")
        for ax in axes:
            ax.set_ylabel("episodic return (20-episode mean)")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{env}: state critic vs factorized baselines")
        fig.tight_layout()
        png = RESULTS / f"factorized-baselines_{env.split('-')[0].lower()}.png"
        fig.savefig(png, dpi=110)
        plt.close(fig)
        lines += [f"![{env} curves]({png.name})", ""]
        dec = sorted(VARIANCE.glob(f"{env}_*_step_*.json"))
        if dec:
            lines += ["Variance at the kept checkpoints of one factorized run (per-sample traces / #params of the "
                      "unnormalized estimator, mean ± s.e. over the re-rolled states):", "",
                      "| step | SNR state | SNR factorized | 1/SNR factorized ÷ state [95% CI] | critic expl. var. | "
                      "Σ_a none | Σ_a state | Σ_a factorized | Σ_τ | Σ_s (bound) |",
                      "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
            rows = sorted((json.loads(p.read_text()) for p in dec), key=lambda v: v["global_step"])
            lines += [_decomposition_row(v) for v in rows]
            lines.append("")
    (RESULTS / "factorized-baselines_locomotion.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _decomposition_row(v: dict[str, Any]) -> str:
    """One checkpoint of ``rlctl variance --decompose``: SNR, the factorized ÷ state inverse-SNR ratio with its
    bootstrap interval, and the per-sample Σ_a of each baseline against Σ_τ and the Σ_s bound."""
    est, dec = v["estimators"], v["decomposition"]
    fac = next(k for k in est if k.startswith("factorized"))
    rel = est[fac]["relative_variance_vs_state"]

    def sig(key: str) -> str:
        return f"{dec[key]['mean']:.3g} ± {dec[key]['se']:.1g}"

    return (f"| {v['global_step']:,} | {est['state']['snr']:.3g} | {est[fac]['snr']:.3g} | "
            f"{rel['ratio']:.3f} [{rel['low']:.3f}, {rel['high']:.3f}] | {est['state']['explained_variance']:.3f} | "
            f"{sig('sigma_a:none')} | {sig('sigma_a:state')} | {sig('sigma_a:' + fac)} | {sig('sigma_tau')} | "
            f"{sig('sigma_s_bound')} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--arms", default="regress,state")
    p.add_argument("--seeds", default="101-105")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--runs", required=True)
    p.add_argument("--jobs", type=int, default=2)
    p = sub.add_parser("decompose")
    p.add_argument("--run", required=True)
    p.add_argument("--steps", default="100000,500000,1000000")
    p = sub.add_parser("collect")
    p.add_argument("--runs", required=True)
    sub.add_parser("report")
    args = ap.parse_args(argv)
    {"train": cmd_train, "decompose": cmd_decompose, "collect": cmd_collect, "report": cmd_report}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
