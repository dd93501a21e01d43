"""``rlctl eval`` and ``rlctl enjoy``: run a trained policy (or a baseline controller) for whole episodes."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rlctl.cli.train import safe_name
from rlctl.errors import UserError
from rlctl.runs import load_policy


def cmd_eval(args: argparse.Namespace) -> int:
    from rlctl.checkpoint import atomic_write_text, prepare_output
    from rlctl.evaluate import evaluate_policy

    if args.episodes <= 0:
        raise UserError("--episodes must be positive")
    if args.env_set:
        return _eval_env_sets(args)
    if args.target is None:
        raise UserError("rlctl eval needs a RUN or CKPT (or --env-set with --baseline and --env)")
    cfg, agent, adapter, ckpt_path, reward = load_policy(args.target)
    out = prepare_output(Path(args.out) if args.out else
                         ckpt_path.parent / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.json", args.force)
    if args.mixture:
        result = _eval_mixture(args, cfg, agent, adapter, ckpt_path)
    else:
        result = evaluate_policy(agent, adapter, cfg, args.episodes, args.deterministic, args.seed,
                                 reward_fn=reward.load() if reward is not None else None)
    result["checkpoint"] = str(ckpt_path)
    atomic_write_text(out, json.dumps(result, indent=2))
    kind = "deterministic" if args.deterministic and not args.mixture else "stochastic"
    if args.mixture:
        kind += f" baseline + learner (share {result['share']:.2f}, learner acted {result['learner_share']:.0%})"
    print(f"{cfg.env.id}: {result['mean_return']:.2f} ± {result['std_return']:.2f} over {args.episodes} "
          f"{kind} episodes (mean length {result['mean_length']:.0f}) → {out}")
    return 0


def _eval_mixture(args: argparse.Namespace, cfg: Any, agent: Any, adapter: Any, ckpt_path: Path) -> dict[str, Any]:
    """The run's baseline and learner under its arbitration, at ``--share`` (default: where training ended)."""
    from rlctl.checkpoint import load_checkpoint
    from rlctl.train.transfer import AgencyTransfer, evaluate_mixture

    if args.share is not None and not 0.0 <= args.share <= 1.0:
        raise UserError(f"--share must lie in [0, 1], got {args.share}")
    if args.deterministic:
        raise UserError("--mixture evaluates as training acts (sampling); drop --deterministic")
    share = args.share
    if share is None:
        transfer = AgencyTransfer(cfg)
        ckpt = load_checkpoint(ckpt_path)
        transfer.load_state_dict(ckpt.get("transfer"))
        share = transfer.share(int(ckpt["global_step"]))
    return evaluate_mixture(cfg, agent, adapter, args.episodes, share, args.seed)


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
        cfg, agent, adapter, ckpt_path, _ = load_policy(args.target)
        env_id, env_kwargs = cfg.env.id, without_set(cfg.env.kwargs)
        actors["policy"] = policy_actor(agent, adapter)
        default_out = ckpt_path.parent / f"eval-sets-{time.strftime('%Y%m%d-%H%M%S')}.json"
    elif args.env and args.baseline:
        env_id, env_kwargs = args.env, preset_env_kwargs(args.env)
        default_out = Path(f"eval-sets-{safe_name(env_id)}-{args.baseline}.json")
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

    cfg, agent, adapter, _, _ = load_policy(args.target)
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
