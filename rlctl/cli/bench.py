"""``rlctl bench``'s arguments and dispatch; the benchmarks themselves live in :mod:`rlctl.bench`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlctl.bench.sps import DEFAULT_SPS_LIBS, LIBS, SPS_VARIANTS, bench_returns, bench_sps, report_returns
from rlctl.bench.suite import MUJOCO_V5
from rlctl.bench.uav import TASKS
from rlctl.errors import UserError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmark rlctl against Stable-Baselines3",
                       description="Benchmarks (not tests): SPS and returns of rlctl vs SB3 with identical settings.")
    bsub = p.add_subparsers(dest="bench_verb", metavar="KIND", required=True)

    s = bsub.add_parser("sps", help="throughput of rlctl vs SB3")
    s.add_argument("--env", default="HalfCheetah-v5", help="env id (default HalfCheetah-v5)")
    s.add_argument("--preset", default="sb3-default", help="shared hyperparameters (default sb3-default)")
    s.add_argument("--steps", type=int, default=102400, help="steps per measurement (default 102400)")
    s.add_argument("--repeats", type=int, default=3, help="interleaved repeats per library (default 3)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to both libraries, e.g. env.num_envs=8")
    s.add_argument("--tag", default="", help="suffix for the output file names (e.g. 8env)")
    s.add_argument("--workers", default="1",
                   help="sampler worker counts for the process+overlap+compile variant, e.g. 1,2,4 (must divide "
                        "env.num_envs; default 1)")
    s.add_argument("--libs", default="",
                   help=f"variants to run (SB3 and the env-step ceiling always run), from "
                        f"{','.join(lib for lib, _, _ in SPS_VARIANTS if lib not in ('sb3', 'ceiling'))} "
                        f"(default {','.join(DEFAULT_SPS_LIBS[:3])}; the +bf16 ones need a CNN policy, e.g. Atari)")
    s.add_argument("--out", default="results", help="output directory (default results/)")
    s.add_argument("--report-only", action="store_true",
                   help="only rebuild the table and plot from the CSV that the same command wrote")

    r = bsub.add_parser("returns", help="learning curves and final returns of rlctl vs SB3")
    r.add_argument("--envs", default="HalfCheetah-v5,Hopper-v5", help="comma-separated env ids")
    r.add_argument("--preset", default="default", help="shared hyperparameters (default 'default')")
    r.add_argument("--seeds", type=int, default=3, help="seeds per (lib, env), from 101 (default 3: 101-103)")
    r.add_argument("--steps", type=int, default=1_000_000, help="budget per run (default 1M)")
    r.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1; each uses 1 thread)")
    r.add_argument("--libs", default="rlctl,sb3",
                   help=f"libraries to run, from {','.join(LIBS)} (default rlctl,sb3)")
    r.add_argument("--out", default="results", help="output directory (default results/)")

    _add_uav(bsub)
    g = bsub.add_parser("gpu", help="the CUDA path: its tests, GPU vs CPU learner, GPU training runs (gpu.md)",
                        description="Runs pytest -m cuda, times PPO updates on CPU and GPU (MLP and Nature CNN), and "
                                    "trains HalfCheetah and Pong with process samplers and the GPU learner; writes "
                                    "gpu.md. Exits 2 without a CUDA device.")
    g.add_argument("--out", default="results", help="output directory (default results/)")
    g.add_argument("--quick", action="store_true", help="only the first two training runs (about 3 minutes)")
    _add_suite(bsub)

    q = bsub.add_parser("report", help="rebuild returns tables and plots from finished runs")
    q.add_argument("--preset", default="default", help="which returns matrix (default 'default')")
    q.add_argument("--out", default="results", help="output directory (default results/)")
    p.set_defaults(func=lambda args: run_cli(args))


def run_cli(args: argparse.Namespace) -> int:
    if args.bench_verb == "gpu":
        from rlctl.bench.gpu import gpu_check

        result = gpu_check(Path(args.out), Path.cwd(), args.quick)
        print((Path(args.out) / "gpu.md").read_text(), end="")
        return 0 if result["tests"].get("passed", True) else 1
    if args.bench_verb == "uav":
        from rlctl.bench.uav import run_cli as run_uav

        return run_uav(args)
    if args.bench_verb == "suite":
        from rlctl.bench.suite import run_cli as run_suite

        return run_suite(args)
    out = Path(args.out)  # each verb checks its input before it makes this directory
    if args.bench_verb == "sps":
        try:
            workers = sorted({int(w) for w in args.workers.split(",") if w})
        except ValueError:
            raise UserError(f"--workers must be comma-separated integers, got {args.workers!r}") from None
        sps_libs = tuple(x for x in args.libs.split(",") if x) if args.libs else DEFAULT_SPS_LIBS
        bench_sps(args.env, args.preset, args.steps, args.repeats, out, args.set, args.tag, workers or [1], sps_libs,
                  report_only=args.report_only)
    elif args.bench_verb == "returns":
        libs = [x for x in args.libs.split(",") if x]
        envs = [e for e in args.envs.split(",") if e]
        bench_returns(envs, args.preset, args.seeds, args.steps, args.jobs, libs, out)
        report_returns(args.preset, out)
    else:
        report_returns(args.preset, out)
    return 0


def _add_suite(bsub: Any) -> None:
    s = bsub.add_parser("suite", help="the MuJoCo v5 table: tasks × seeds, each task's preset, SB3 alongside")
    s.add_argument("--tasks", default=",".join(MUJOCO_V5), help="comma-separated env ids (default: 10 MuJoCo v5)")
    s.add_argument("--seeds", type=int, default=5,
                   help="seeds per task: the table's from 101 (default 5: 101-105); a screen's from 1")
    s.add_argument("--steps", type=int, default=1_000_000, help="budget per run (default 1M)")
    s.add_argument("--sb3-tasks", default="HalfCheetah-v5,Hopper-v5,Walker2d-v5",
                   help="tasks SB3 also runs, with the same preset and budget (default HalfCheetah-v5, Hopper-v5 and "
                        "Walker2d-v5; '' for none)")
    s.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1; each uses 1 thread)")
    s.add_argument("--preset", default="-",
                   help="a candidate preset for every task instead of each task's own entry: its runs go to "
                        "runs/suite-<preset>/ and into the preset screen (mujoco-v5-screen.md), not the table; "
                        "screens run on seeds from 1, the table from 101, so no table seed is ever screened")
    s.add_argument("--screen", action="store_true",
                   help="screen each task's own entry: screening seeds from 1, runs/suite-entry/, the screen page")
    s.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the IQM interval")
    s.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    s.add_argument("--out", default="results", help="output directory (default results/)")


def _add_uav(bsub: Any) -> None:
    u = bsub.add_parser("uav", help="PPO vs PID on the quadrotor tasks, with the sim-to-real gap")
    u.add_argument("--tasks", default="hover,waypoint", help=f"comma-separated, from {','.join(TASKS)}")
    u.add_argument("--train-sets", default="nominal,randomized",
                   help="training env sets: nominal, randomized, ramped (randomized, its strength ramped up from "
                        "nominal over the first half of the budget), rate120 (randomized, 120 Hz control)")
    u.add_argument("--seeds", type=int, default=3,
                   help="seeds per (task, training set), from 101 (default 3: 101-103)")
    u.add_argument("--steps", type=int, help="training budget per run (default: each task's preset)")
    u.add_argument("--randomized-factor", type=float, default=2.0,
                   help="budget multiplier for training on the randomized (or ramped) set (default 2: it learns "
                        "under noise, latency and pushes)")
    u.add_argument("--policies", default="mlp",
                   help="policy kinds, comma-separated, from mlp (feed-forward), lstm, gru (default mlp)")
    u.add_argument("--jobs", type=int, default=2, help="training runs in parallel (default 2)")
    u.add_argument("--episodes", type=int, default=200,
                   help="evaluation episodes per set (default 200: a 95%% interval of about ±0.06 on a seed's success)")
    u.add_argument("--runs-dir", default="runs/bench-uav", help="where the training runs go")
    u.add_argument("--out", default="results", help="output directory (default results/)")
    u.add_argument("--report-only", action="store_true", help="only rebuild uav.md and the plots from finished runs")
