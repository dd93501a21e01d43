"""``rlctl refine``'s arguments; the loop is :mod:`rlctl.refine.loop`."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "refine", help="search reward functions with an LLM (or an offline evolution strategy), sandboxed",
        description="Eureka-style reward refinement: rounds of candidate reward programs, each checked, run only in "
                    "a sandbox, trained with PPO and scored on the task alone; the best is retrained on fresh seeds "
                    "and written as a reward file for `rlctl train --set env.reward=FILE:reward`. Rerun the same "
                    "command to resume an interrupted refine.")
    p.add_argument("--env", required=True, help="gymnasium id, e.g. rlctl/QuadHover-v0")
    p.add_argument("--task", required=True, help='what the policy should do, in words ("hover at the goal")')
    p.add_argument("--llm", default="none", metavar="openai:MODEL|replay:DIR|none",
                   help="openai:MODEL asks an OpenAI-compatible server (key from $OPENAI_API_KEY); replay:DIR replays "
                        "an earlier refine directory's responses; none (default) runs the offline evolution strategy "
                        "over the env's named reward terms")
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM), "
                                      "http://localhost:11434/v1 (Ollama), http://localhost:8080/v1 (llama.cpp)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--iterations", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--candidates", type=int, default=4, help="candidate rewards per round (default 4)")
    p.add_argument("--steps-per-candidate", type=int, default=100_000, help="PPO steps per candidate (default 100000)")
    p.add_argument("--eval-seeds", type=int, default=5, help="seeds the winner is retrained on at the end (default 5; "
                                                             "0 skips the final evaluation)")
    p.add_argument("--final-steps", type=int, help="steps of each final training (default: --steps-per-candidate)")
    p.add_argument("--compare", default="initial,env",
                   help="baselines retrained next to the winner: initial (the first reward), env (the env's own); "
                        "'' for none (default initial,env)")
    p.add_argument("--fitness-episodes", type=int, default=20, help="evaluation episodes per candidate (default 20)")
    p.add_argument("--final-episodes", type=int, default=20, help="evaluation episodes per final run (default 20)")
    p.add_argument("--seed", type=int, default=1, help="candidates' training seed; final seeds are 1000*seed+1.. "
                                                      "(default 1)")
    p.add_argument("--jobs", type=int, default=0, help="trainings in parallel (default: one per CPU core)")
    p.add_argument("--backend", choices=("process", "ray"), default="process",
                   help="where candidates train: local processes (--jobs at a time) or Ray tasks, one core each, "
                        "on the cluster of --ray-address (default process)")
    p.add_argument("--ray-address", help="with --backend ray: the cluster to join, HOST:6379 (default: a private "
                                         "local cluster)")
    p.add_argument("--temperature", type=float, default=1.0, help="LLM sampling temperature (default 1.0)")
    p.add_argument("--llm-timeout", type=float, default=120.0, help="seconds per LLM request (default 120)")
    p.add_argument("--llm-retries", type=int, default=4, help="retries of a failed LLM request (default 4)")
    p.add_argument("--llm-backoff", type=float, default=2.0, help="first retry delay in s, doubling (default 2)")
    p.add_argument("--preset", help="training preset (default: the env's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    p.add_argument("--out", help="refine directory (default runs/refine/<env>_s<seed>_<time>); an existing one "
                                 "is resumed")
    p.set_defaults(func=cmd_refine)


def cmd_refine(args: argparse.Namespace) -> int:
    from rlctl.refine.loop import Refine, RefineSpec  # torch and the trainer load only for this verb

    out = Path(args.out) if args.out else Path("runs") / "refine" / (
        f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', args.env)}_s{args.seed}_{time.strftime('%Y%m%d-%H%M%S')}")
    spec = RefineSpec(
        env_id=args.env, task=args.task, llm=args.llm, iterations=args.iterations, candidates=args.candidates,
        steps=args.steps_per_candidate, eval_seeds=args.eval_seeds, final_steps=args.final_steps,
        final_episodes=args.final_episodes, compare=tuple(c for c in args.compare.split(",") if c),
        seed=args.seed, preset=args.preset, set_items=tuple(args.set), fitness_episodes=args.fitness_episodes,
        temperature=args.temperature, base_url=args.base_url, api_key_env=args.api_key_env,
        llm_timeout_s=args.llm_timeout, llm_retries=args.llm_retries, llm_backoff_s=args.llm_backoff, jobs=args.jobs,
        backend=args.backend, ray_address=args.ray_address)
    Refine(spec, out, progress=lambda line: print(line, flush=True)).run()
    return 0
