"""``rlctl`` command line: train, eval, enjoy, presets, bench.

User mistakes raise :class:`UserError` (or the env layer's ``EnvError``) and end here as one line on
stderr with exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import traceback

import yaml

from rlctl import __version__
from rlctl.cli.evaluate import cmd_enjoy, cmd_eval
from rlctl.cli.train import cmd_train
from rlctl.envs.errors import EnvError
from rlctl.errors import UserError


def cmd_presets(args: argparse.Namespace) -> int:
    from rlctl.resolve import load_presets

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
    p.add_argument("--fast", action="store_true",
                   help="the fastest CPU settings: collect in a sampler process while the learner updates (policy "
                        "lag 1) and compile the update (run.sampler=process unless --backend ray, run.overlap=true, "
                        "run.compile=true)")
    p.add_argument("--ray-address", help="Ray cluster to join, HOST:6379 (run.ray_address); default: local")
    p.add_argument("--baseline-policy", metavar="SPEC",
                   help="a working controller that acts first and hands over to the learned policy: controller:NAME "
                        "(pid, ik, push, energy), a run directory, or sb3:PATH.zip (arbiter.baseline)")
    p.add_argument("--demo", action="append", metavar="PATH",
                   help="start episodes from this demonstration's states, moving back as the agent succeeds "
                        "(rlctl demo record; repeat for several; curriculum.demos)")
    p.add_argument("--arbiter", choices=("prob", "calf", "jsrl", "residual"),
                   help="who acts at each step with --baseline-policy (arbiter.mode; default prob)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set ppo.gamma=0.98 --set policy.hidden_sizes=[256,256]")
    p.add_argument("--run-dir", help="where to write the run (default runs/<env>/ppo_s<seed>_<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint")
    p.add_argument("--force", action="store_true",
                   help="replace an existing run in --run-dir; with --resume, go on although the env.reward file "
                        "changed since the run started")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained policy",
                       description="Run full episodes and report the return.")
    p.add_argument("target", metavar="RUN|CKPT", nargs="?", help="a run directory or a checkpoint file")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (default 10)")
    p.add_argument("--deterministic", action="store_true", help="act with the policy's mode instead of sampling")
    p.add_argument("--mixture", action="store_true",
                   help="a run trained with --baseline-policy: evaluate its baseline and learner under the run's "
                        "arbitration (default: the learner alone)")
    p.add_argument("--share", type=float, help="with --mixture: the learner's share p (default: where training ended)")
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

    from rlctl.cli.bench import add_parser as add_bench
    from rlctl.cli.demo import add_parser as add_demo
    from rlctl.cli.export import add_parser as add_export
    from rlctl.cli.plot import add_parser as add_plot
    from rlctl.cli.refine import add_parser as add_refine
    from rlctl.cli.tune import add_parser as add_tune
    from rlctl.cli.variance import add_parser as add_variance

    add_bench(sub)
    add_plot(sub)
    add_tune(sub)
    add_export(sub)
    add_refine(sub)
    add_variance(sub)
    add_demo(sub)
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
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
