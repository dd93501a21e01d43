"""``rlctl demo record`` and ``rlctl demo show``: demonstrations for demo-seeded curricula (``rlctl train --demo``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rlctl.errors import UserError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="record or inspect demonstrations (for rlctl train --demo)",
                       description="Demonstrations hold, per step, the exact simulator state, observation, action, "
                                   "reward, running return and success; rlctl train --demo starts episodes from them.")
    verbs = p.add_subparsers(dest="demo_verb", metavar="record|show")
    r = verbs.add_parser("record", help="run a controller or policy and save its episodes as a demo",
                         description="Record N episodes of a controller or a trained policy.")
    r.add_argument("--env", required=True, help="gymnasium id the demo is for")
    r.add_argument("--from", dest="source", required=True, metavar="SPEC",
                   help="who acts: controller:NAME (pid, ik, push, energy, reacher), an rlctl run directory or "
                        "checkpoint, sb3:PATH.zip, or random (uniform actions)")
    r.add_argument("--episodes", type=int, default=1, help="episodes to keep (default 1)")
    r.add_argument("--out", required=True, help="the demo file to write (.npz)")
    r.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i (default 0)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="env settings the training run will use: env.kwargs.NAME=..., env.max_episode_steps=N")
    r.add_argument("--only-successful", action="store_true",
                   help="keep only episodes in which the env reported success (up to 10x more attempts)")
    r.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    r.set_defaults(func=cmd_record)
    s = verbs.add_parser("show", help="summarize a demo file")
    s.add_argument("path", help="a demo file")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_show)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_record(args: argparse.Namespace) -> int:
    from rlctl.demos import record_demo
    from rlctl.envs.ids import check_env_id
    from rlctl.resolve import parse_set

    out = Path(args.out)
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; pass --force to overwrite it")
    settings = parse_set(args.set)
    unknown = [k for k in settings if k != "env"] + [f"env.{k}" for k in settings.get("env", {})
                                                    if k not in ("kwargs", "max_episode_steps")]
    if unknown:
        raise UserError(f"rlctl demo record --set takes env.kwargs.* and env.max_episode_steps, not {unknown[0]}")
    env = settings.get("env", {})
    check_env_id(args.env)
    done = record_demo(args.env, args.source, args.episodes, out, args.seed, env.get("kwargs"),
                       env.get("max_episode_steps"), args.only_successful)
    print(f"recorded {len(done.lengths)} episode(s) of {args.source} on {args.env} ({done.attempts} run) → {out}")
    for i, (n, ret, ok) in enumerate(zip(done.lengths, done.returns, done.successes, strict=True)):
        print(f"  episode {i}: {n} steps, return {ret:.2f}, success {ok}")
    return 0


def summary(path: str) -> dict[str, Any]:
    from rlctl.envs.demo import load_demo

    demo = load_demo(path)
    return {"path": path, "env_id": demo.env_id, "env_kwargs": demo.env_kwargs,
            "max_episode_steps": demo.max_episode_steps, "source": demo.source, "rlctl_version": demo.rlctl_version,
            "bytes": Path(path).stat().st_size,
            "episodes": [{"length": ep.length, "return": float(ep.returns[-1]), "success": ep.succeeded,
                          "terminated": ep.terminated} for ep in demo.episodes]}


def cmd_show(args: argparse.Namespace) -> int:
    info = summary(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: {len(info['episodes'])} episode(s) of {info['env_id']} by {info['source']} "
          f"(rlctl {info['rlctl_version']}, {info['bytes'] / 1e6:.1f} MB)")
    if info["env_kwargs"] or info["max_episode_steps"] is not None:
        print(f"  env kwargs {info['env_kwargs']}, max_episode_steps {info['max_episode_steps']}")
    for i, ep in enumerate(info["episodes"]):
        print(f"  episode {i}: {ep['length']} steps, return {ep['return']:.2f}, success {ep['success']}")
    return 0
