"""The target-matching study of results/factorized-baselines.md (state vs factorized baselines, Wu et al. 2018 §5).

Run from the repository root with rlctl installed:

    python results/runs/factorized/study.py train --dims 10,100,500 --seeds 101-105 --arms state,regress,q_mean,q_mc
    python results/runs/factorized/study.py train --dims 2000 --seeds 101-105 --arms state,regress,q_mean
    python results/runs/factorized/study.py train --dims 10,100,500,2000 --seeds 101-105 --arms state_pd
    python results/runs/factorized/study.py overhead --dims 10,100,500,2000 --repeats 5
    python results/runs/factorized/study.py report

``train`` writes one compact JSON per run to ``results/runs/factorized/tm/`` (the per-iteration mean return per
dimension, the update's wall time, and the first iteration whose batch mean reaches the threshold; training stops
there). Existing results are skipped, so the command resumes. ``report`` reads only those files (and the
``rlctl variance`` results in ``results/runs/factorized/variance/``) and writes the tables and plots.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parents[1]
THRESHOLD = -0.25  # batch mean return per dimension, −mean_i[(μ_i − c_i)² + σ_i²]; −1.33 at the initial policy
CAP = 300  # iterations before a run counts as not solved
ARMS = {"state": ("state", "regress"), "regress": ("factorized", "regress"), "q_mean": ("factorized", "q_mean"),
        "q_mc": ("factorized", "q_mc"), "state_pd": ("state", "regress")}
"""state_pd: the state baseline with per-dimension ratios (``ppo.per_dim_ratio``), the ablation that separates the
per-dimension clipping from the per-dimension baselines"""


def overrides(dim: int, arm: str, seed: int, cap: int = CAP) -> dict[str, Any]:
    """The run's config: 256 one-step episodes per iteration (16 envs × 16 steps), rlctl's defaults otherwise,
    except the reward clip (at m = 2000 the default clip at 10 would clip every scaled reward)."""
    kind, mode = ARMS[arm]
    return {"env": {"kwargs": {"dim": dim}, "num_envs": 16},
            "ppo": {"total_timesteps": 256 * cap, "num_steps": 16, "minibatch_size": 64, "update_epochs": 10,
                    "learning_rate": 1e-3, "clip_reward": 1e9, "per_dim_ratio": arm == "state_pd"},
            "baseline": {"type": kind, "mode": mode},
            "run": {"seed": seed, "eval_episodes": 0, "device": "cpu", "checkpoint_every": 10**9, "log_every": 1}}


def train_one(dim: int, arm: str, seed: int, out: Path) -> dict[str, Any]:
    from rlctl.resolve import resolve_config
    from rlctl.train import train

    cfg, _ = resolve_config("rlctl/TargetMatching-v0", None, overrides(dim, arm, seed))
    curve: list[dict[str, float]] = []

    def on_update(s: dict[str, Any]) -> bool:
        per_dim = s["recent_return"] / dim  # the last 100 episodes: all from this iteration's batch
        curve.append({"return_per_dim": per_dim, "update_s": s["perf/learner_update_s"],
                      "baseline_s": s.get("losses/baseline_s", 0.0), "clipfrac": s["losses/clipfrac"],
                      "approx_kl": s["losses/approx_kl"],
                      "baseline_ev": s.get("losses/baseline_explained_variance", float("nan"))})
        return per_dim >= THRESHOLD

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run", on_update=on_update, progress=False)
    solved = next((i + 1 for i, c in enumerate(curve) if c["return_per_dim"] >= THRESHOLD), None)
    result = {"dim": dim, "arm": arm, "seed": seed, "threshold": THRESHOLD, "cap": CAP, "solved_at": solved,
              "iterations": len(curve), "wall_s": time.perf_counter() - start,
              "curve": [{k: round(v, 5) for k, v in c.items() if v == v} for c in curve],
              "config": overrides(dim, arm, seed)}
    out.write_text(json.dumps(result))
    return result


def _ints(text: str) -> list[int]:
    if "-" in text and "," not in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",")]


def cmd_train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for dim in _ints(args.dims):
        for seed in _ints(args.seeds):
            for arm in args.arms.split(","):
                path = out / f"m{dim}_{arm}_s{seed}.json"
                if path.exists():
                    continue
                r = train_one(dim, arm, seed, path)
                print(f"m={dim} {arm} seed {seed}: solved at {r['solved_at']} ({r['wall_s']:.0f} s)", flush=True)


def cmd_overhead(args: argparse.Namespace) -> None:
    """Wall time of one update (advantage stage + PPO epochs) per arm, interleaved on the same rollouts."""
    import torch

    from rlctl.envs.make import make_env
    from rlctl.resolve import resolve_config
    from rlctl.runs import build_agent
    from rlctl.sampling import make_sampler
    from rlctl.spaces import adapter_for_env, rollout_for
    from rlctl.train.learner import Learner

    torch.set_num_threads(1)
    rows = []
    for dim in _ints(args.dims):
        arms = args.arms.split(",")
        learners, rollouts = {}, []
        for arm in arms:
            cfg, _ = resolve_config("rlctl/TargetMatching-v0", None, overrides(dim, arm, 1))
            env = make_env(cfg.env.id, cfg.env.kwargs)
            adapter = adapter_for_env(env)
            env.close()
            torch.manual_seed(1)
            agent = build_agent(cfg, adapter, torch.device("cpu"))
            learners[arm] = Learner(cfg, agent)
            if not rollouts:
                sampler = make_sampler(cfg, agent, adapter, rollout_for(adapter, 16, 16, torch.device("cpu")),
                                       torch.device("cpu"))
                for _ in range(args.repeats + 1):
                    sampler.launch(0)
                    rollouts.append(sampler.wait()[0].to(torch.device("cpu")))
                    rollouts[-1] = type(rollouts[-1])(**{k: v.clone() for k, v in vars(rollouts[-1]).items()})
                sampler.close()
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        for rep in range(args.repeats + 1):
            for arm in arms:  # round-robin: every arm sees the same machine load within a repeat
                t = time.perf_counter()
                learners[arm].update(rollouts[rep])
                if rep > 0:  # the first update warms up allocations
                    times[arm].append(time.perf_counter() - t)
        base = statistics.median(times["state"])
        for arm in arms:
            med = statistics.median(times[arm])
            rows.append({"dim": dim, "arm": arm, "median_update_s": med, "ratio_vs_state": med / base,
                         "repeats": args.repeats})
            print(f"m={dim} {arm}: {med:.3f} s per update, {med / base:.2f}x state", flush=True)
    (HERE / "overhead.json").write_text(json.dumps(rows, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("train")
    p.add_argument("--dims", default="10,100,500,2000")
    p.add_argument("--seeds", default="101-105")
    p.add_argument("--arms", default="state,regress,q_mean,q_mc")
    p.add_argument("--out", default=str(HERE / "tm"))
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("overhead")
    p.add_argument("--dims", default="10,100,500,2000")
    p.add_argument("--arms", default="state,regress,q_mean,q_mc")
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=cmd_overhead)
    p = sub.add_parser("report")
    p.set_defaults(func=lambda a: __import__("report").main())
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
