"""``rlctl train``: a new run from an env id, preset and overrides, or ``--resume`` of an interrupted one."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlctl.errors import UserError
from rlctl.rundir import BEST_LEARNER, CHECKPOINT, CONFIG, FINAL_EVAL, METRICS, RESUMES

# Files a run directory may contain that rlctl itself wrote (removed by --force, nothing else is).
_RUN_FILES = (CHECKPOINT, CONFIG, METRICS, FINAL_EVAL, RESUMES, BEST_LEARNER)


def safe_name(env_id: str) -> str:
    return env_id.replace("/", "_").replace(":", "_")


def _prepare_run_dir(path: Path, force: bool) -> None:
    if path.exists() and not path.is_dir():
        raise UserError(f"--run-dir {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise UserError(f"run directory {path} already holds files; pass --force to replace the run, "
                            f"or --resume {path} to continue it")
        for child in path.iterdir():
            if child.name in _RUN_FILES or child.name.startswith("events.out.tfevents"):
                child.unlink()


def cmd_train(args: argparse.Namespace) -> int:
    from rlctl.envs.ids import check_env_id
    from rlctl.resolve import resolve_config
    from rlctl.runs import load_run_config
    from rlctl.train import train

    if args.resume:
        given = [flag for flag, value in (("--env", args.env), ("--preset", args.preset), ("--steps", args.steps),
                                          ("--seed", args.seed), ("--num-envs", args.num_envs),
                                          ("--backend", args.backend), ("--num-workers", args.num_workers),
                                          ("--run-dir", args.run_dir), ("--baseline-policy", args.baseline_policy),
                                          ("--arbiter", args.arbiter), ("--demo", args.demo))
                 if value is not None] + \
            (["--set"] if args.set else []) + (["--fast"] if args.fast else [])
        if given:
            raise UserError(f"--resume continues a run with its saved config; drop {', '.join(given)}")
        run_dir = Path(args.resume)
        cfg = load_run_config(run_dir)
        if not (run_dir / CHECKPOINT).is_file():
            raise UserError(f"{run_dir} has no {CHECKPOINT} to resume from")
        return _run(lambda: train(cfg, run_dir, resume=True, progress=not args.quiet,
                                          device=args.device, force=args.force), run_dir)

    if args.env is None:
        raise UserError("rlctl train needs --env ID (or --resume RUN_DIR)")
    overrides: dict[str, Any] = {}
    if args.steps is not None:
        overrides.setdefault("ppo", {})["total_timesteps"] = args.steps
    if args.seed is not None:
        overrides.setdefault("run", {})["seed"] = args.seed
    if args.num_envs is not None:
        overrides.setdefault("env", {})["num_envs"] = args.num_envs
    if args.device is not None:
        overrides.setdefault("run", {})["device"] = args.device
    if args.fast:
        if args.backend in ("inline", "envpool"):
            raise UserError(f"--fast collects in sampler processes while the learner updates; it does not combine "
                            f"with --backend {args.backend} (drop one of them)")
        overrides.setdefault("run", {}).update(sampler=args.backend or "process", overlap=True, compile=True)
    if args.backend == "envpool":  # Atari stepped by EnvPool, collected inline
        overrides.setdefault("env", {})["vectorization"] = "envpool"
        args.backend = None
    for flag, key in (("baseline_policy", "baseline"), ("arbiter", "mode")):
        if getattr(args, flag) is not None:
            overrides.setdefault("arbiter", {})[key] = getattr(args, flag)
    if args.arbiter is not None and args.baseline_policy is None:
        raise UserError("--arbiter decides between a baseline and the learned policy: give --baseline-policy SPEC")
    if args.demo:
        overrides["curriculum"] = {"demos": list(args.demo)}
    for flag, key in (("backend", "sampler"), ("num_workers", "num_workers"), ("ray_address", "ray_address")):
        if getattr(args, flag) is not None:
            overrides.setdefault("run", {})[key] = getattr(args, flag)
    cfg, preset = resolve_config(args.env, args.preset, overrides, args.set)
    check_env_id(cfg.env.id)
    run_dir = Path(args.run_dir) if args.run_dir else \
        Path("runs") / safe_name(cfg.env.id) / f"ppo_s{cfg.run.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    _prepare_run_dir(run_dir, args.force)
    print(f"rlctl: preset {preset!r}", flush=True)
    return _run(lambda: train(cfg, run_dir, progress=not args.quiet), run_dir)


def _run(start: Callable[[], Any], run_dir: Path) -> int:
    """Train; a second Ctrl-C (the first one checkpoints and stops cleanly) says what is left to resume."""
    try:
        start()
    except KeyboardInterrupt:
        if (run_dir / CHECKPOINT).is_file():
            print(f"\naborted; the last checkpoint is intact (continue with: rlctl train --resume {run_dir})",
                  file=sys.stderr)
        else:
            print(f"\naborted before the first checkpoint; {run_dir} has nothing to resume", file=sys.stderr)
        return 130
    return 0
