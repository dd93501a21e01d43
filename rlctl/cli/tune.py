"""``rlctl tune``'s arguments; the search is :mod:`rlctl.tune`."""

from __future__ import annotations

from typing import Any

from rlctl.tune import run_cli


def add_parser(sub: Any) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna (TPE + median pruner)",
                       description="Hyperparameter search; the best trial is written as a preset file.")
    p.add_argument("--env", required=True, help="gymnasium id to tune on")
    p.add_argument("--preset", help="starting preset (default: the env's own)")
    p.add_argument("--trials", type=int, default=20, help="trials to run in this invocation (default 20)")
    p.add_argument("--steps", type=int, default=100_000, help="env steps per trial (default 100000)")
    p.add_argument("--storage", help="Optuna storage URL, e.g. sqlite:///tune.db (resumable); default in memory")
    p.add_argument("--study-name", help="study name in the storage (default rlctl-<env>)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fixed overrides for every trial")
    p.add_argument("--out", help="preset file for the best trial (default tune-<env>.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=run_cli)
