"""``rlctl`` command line: train, eval, enjoy, presets, bench.

User mistakes raise :class:`UserError` (or the env layer's ``EnvError``) and end here as one line on
stderr with exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

from envs.errors import EnvError
from rlctl import __version__
from rlctl.errors import UserError

# Files a run directory may contain that rlctl itself wrote (removed by --force, nothing else is).
_RUN_FILES = ("checkpoint.pt", "config.yaml", "metrics.jsonl", "final_eval.json")


def _safe(env_id: str) -> str:
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
    from rlctl.config import resolve_config
    from rlctl.trainer import load_run_config, train

    if args.resume:
        given = [flag for flag, value in (("--env", args.env), ("--preset", args.preset), ("--steps", args.steps),
                                          ("--seed", args.seed), ("--num-envs", args.num_envs),
                                          ("--backend", args.backend), ("--num-workers", args.num_workers),
                                          ("--run-dir", args.run_dir)) if value is not None] + \
            (["--set"] if args.set else [])
        if given:
            raise UserError(f"--resume continues a run with its saved config; drop {', '.join(given)}")
        run_dir = Path(args.resume)
        cfg = load_run_config(run_dir)
        if args.device is not None:
            cfg.run.device = args.device
        if not (run_dir / "checkpoint.pt").is_file():
            raise UserError(f"{run_dir} has no checkpoint.pt to resume from")
        train(cfg, run_dir, resume=True, progress=not args.quiet)
        return 0

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
    if args.backend == "envpool":  # Atari stepped by EnvPool, collected inline
        overrides.setdefault("env", {})["vectorization"] = "envpool"
        args.backend = None
    for flag, key in (("backend", "sampler"), ("num_workers", "num_workers"), ("ray_address", "ray_address")):
        if getattr(args, flag) is not None:
            overrides.setdefault("run", {})[key] = getattr(args, flag)
    cfg, preset = resolve_config(args.env, args.preset, overrides, args.set)
    from envs.make import check_env_id

    check_env_id(cfg.env.id)
    run_dir = Path(args.run_dir) if args.run_dir else \
        Path("runs") / _safe(cfg.env.id) / f"ppo_s{cfg.run.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    _prepare_run_dir(run_dir, args.force)
    print(f"rlctl: preset {preset!r}", flush=True)
    train(cfg, run_dir, progress=not args.quiet)
    return 0


def _load_policy(target: str) -> tuple[Any, Any, Any, Path]:
    import torch

    from envs.make import make_env
    from rlctl.checkpoint import load_checkpoint
    from rlctl.config import load_yaml
    from rlctl.spaces import adapter_for_env
    from rlctl.trainer import build_agent

    path = Path(target)
    if not path.exists():
        raise UserError(f"{target}: no such run directory or checkpoint")
    ckpt_path = path / "checkpoint.pt" if path.is_dir() else path
    ckpt = load_checkpoint(ckpt_path)
    cfg = load_yaml(ckpt["config"])
    env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
    adapter = adapter_for_env(env)
    env.close()
    agent = build_agent(cfg, adapter, torch.device("cpu"))
    try:
        agent.load_state_dict(ckpt["agent"])
    except RuntimeError as exc:
        raise UserError(f"{ckpt_path}: weights do not match its config ({str(exc).splitlines()[0]})") from None
    agent.eval()
    return cfg, agent, adapter, ckpt_path


def cmd_eval(args: argparse.Namespace) -> int:
    from rlctl.checkpoint import atomic_write_text, prepare_output
    from rlctl.evaluate import evaluate_policy

    if args.episodes <= 0:
        raise UserError("--episodes must be positive")
    if args.env_set:
        return _eval_env_sets(args)
    if args.target is None:
        raise UserError("rlctl eval needs a RUN or CKPT (or --env-set with --baseline and --env)")
    cfg, agent, adapter, ckpt_path = _load_policy(args.target)
    out = prepare_output(Path(args.out) if args.out else
                         ckpt_path.parent / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.json", args.force)
    result = evaluate_policy(agent, adapter, cfg, args.episodes, args.deterministic, args.seed)
    result["checkpoint"] = str(ckpt_path)
    atomic_write_text(out, json.dumps(result, indent=2))
    kind = "deterministic" if args.deterministic else "stochastic"
    print(f"{cfg.env.id}: {result['mean_return']:.2f} ± {result['std_return']:.2f} over {args.episodes} "
          f"{kind} episodes (mean length {result['mean_length']:.0f}) → {out}")
    return 0


def _eval_env_sets(args: argparse.Namespace) -> int:
    """The sim-to-real protocol: the deterministic policy (and/or a baseline) on named env sets."""
    from rlctl.checkpoint import atomic_write_text, prepare_output
    from rlctl.sim2real_eval import (
        baseline_actor,
        evaluate_sets,
        format_table,
        policy_actor,
        preset_env_kwargs,
        without_set,
    )

    sets = [s for s in args.env_set.split(",") if s]
    actors: dict[str, Any] = {}
    if args.target is not None:
        cfg, agent, adapter, ckpt_path = _load_policy(args.target)
        env_id, env_kwargs = cfg.env.id, without_set(cfg.env.kwargs)
        actors["policy"] = policy_actor(agent, adapter)
        default_out = ckpt_path.parent / f"eval-sets-{time.strftime('%Y%m%d-%H%M%S')}.json"
    elif args.env and args.baseline:
        env_id, env_kwargs = args.env, preset_env_kwargs(args.env)
        default_out = Path(f"eval-sets-{_safe(env_id)}-{args.baseline}.json")
    else:
        raise UserError("--env-set needs a RUN/CKPT, or --baseline with --env")
    if args.baseline:
        actors[args.baseline] = baseline_actor(args.baseline)
    out = prepare_output(Path(args.out) if args.out else default_out, args.force)
    result = evaluate_sets(env_id, env_kwargs, actors, sets, args.episodes, args.seed)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(format_table(result))
    print(f"→ {out}")
    return 0


def cmd_enjoy(args: argparse.Namespace) -> int:
    from rlctl.checkpoint import prepare_output
    from rlctl.evaluate import evaluate_policy, record_video

    cfg, agent, adapter, _ = _load_policy(args.target)
    if args.video is None:
        result = evaluate_policy(agent, adapter, cfg, args.episodes, True, args.seed)
        print(f"{cfg.env.id}: returns {', '.join(f'{r:.1f}' for r in result['returns'])} "
              "(pass --video out.mp4 to record frames)")
        return 0
    out = Path(args.video)
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise UserError(f"--video must end in .mp4 or .gif, got {out.name}")
    prepare_output(out, args.force)
    try:
        result = record_video(agent, adapter, cfg, out, args.episodes, args.seed)
    except (ImportError, RuntimeError, AttributeError) as exc:
        if "GL" in str(exc) or "EGL" in str(exc) or "display" in str(exc).lower():
            raise UserError(f"cannot render {cfg.env.id} headlessly ({exc}); install an off-screen GL "
                            "(Debian: apt-get install libegl1 libgl1-mesa-dri) or set MUJOCO_GL=osmesa") from None
        raise
    print(f"wrote {result['frames']} frames at {result['fps']} fps to {out} "
          f"(returns: {', '.join(f'{r:.1f}' for r in result['returns'])})")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from rlctl.config import load_presets

    presets = load_presets()
    if args.name:
        if args.name not in presets:
            raise UserError(f"unknown preset {args.name!r}; known: {', '.join(presets)}")
        print(yaml.safe_dump({args.name: presets[args.name]}, sort_keys=False), end="")
        return 0
    for name, values in presets.items():
        steps = values.get("ppo", {}).get("total_timesteps", "")
        print(f"{name:28s} {steps}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlctl", description="PPO for classic control, MuJoCo, Atari and robots.")
    parser.add_argument("--version", action="version", version=f"rlctl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    p = sub.add_parser("train", help="train PPO on an environment",
                       description="Train PPO. Config = preset for the env id (see `rlctl presets`) + flags + --set.")
    p.add_argument("--env", help="gymnasium id, e.g. HalfCheetah-v5, CartPole-v1, or module:Env-v0")
    p.add_argument("--preset", help="preset name (default: the entry for --env, else 'default')")
    p.add_argument("--steps", type=int, help="total environment steps (ppo.total_timesteps)")
    p.add_argument("--seed", type=int, help="run seed (run.seed); one seed gives one run")
    p.add_argument("--num-envs", type=int, help="parallel environment copies (env.num_envs)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="learner device (run.device)")
    p.add_argument("--backend", choices=("inline", "process", "ray", "envpool"),
                   help="where rollouts are collected (run.sampler; see README 'Samplers'); envpool: Atari games "
                        "stepped by EnvPool (env.vectorization=envpool)")
    p.add_argument("--num-workers", type=int, help="sampler workers for process/ray (run.num_workers)")
    p.add_argument("--ray-address", help="Ray cluster to join, HOST:6379 (run.ray_address); default: local")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set ppo.gamma=0.98 --set policy.hidden_sizes=[256,256]")
    p.add_argument("--run-dir", help="where to write the run (default runs/<env>/ppo_s<seed>_<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing run in --run-dir")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained policy",
                       description="Run full episodes and report the return.")
    p.add_argument("target", metavar="RUN|CKPT", nargs="?", help="a run directory or a checkpoint file")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (default 10)")
    p.add_argument("--deterministic", action="store_true", help="act with the policy's mode instead of sampling")
    p.add_argument("--env-set", metavar="SETS",
                   help="sim-to-real protocol on these sets, e.g. nominal,randomized,held-out (rlctl/Quad* envs): "
                        "success rate with 95%% CI, time to goal, failure causes; deterministic policy")
    p.add_argument("--baseline", choices=("pid", "ik"),
                   help="with --env-set: also evaluate the env's scripted controller on the same episodes")
    p.add_argument("--env", help="with --env-set and --baseline but no RUN: the env to evaluate the baseline on")
    p.add_argument("--seed", type=int, default=10_000, help="episode i is reset with seed+i (default 10000)")
    p.add_argument("--out", help="JSON result path (default next to the checkpoint, eval-<time>.json)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("enjoy", help="watch a policy or record it to a video",
                       description="Roll out the deterministic policy; --video renders frames headlessly to a file.")
    p.add_argument("target", metavar="RUN|CKPT", help="a run directory or a checkpoint file")
    p.add_argument("--video", metavar="OUT.mp4", help="write rgb_array frames to this .mp4 (or .gif)")
    p.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    p.add_argument("--seed", type=int, default=10_000, help="episode i is reset with seed+i")
    p.add_argument("--force", action="store_true", help="overwrite the video file if it exists")
    p.set_defaults(func=cmd_enjoy)

    p = sub.add_parser("presets", help="list presets or show one", description="List presets, or print one as YAML.")
    p.add_argument("name", nargs="?", help="preset to show")
    p.set_defaults(func=cmd_presets)

    from rlctl.bench import add_parser as add_bench
    from rlctl.export_cli import add_parser as add_export
    from rlctl.plot import add_parser as add_plot
    from rlctl.tune import add_parser as add_tune

    add_bench(sub)
    add_plot(sub)
    add_tune(sub)
    add_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, EnvError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is intact (continue with rlctl train --resume RUN_DIR)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
