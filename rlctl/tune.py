"""``rlctl tune``: hyperparameter search with Optuna (TPE sampler, median pruner), rl-zoo style.

Each trial is an ordinary rlctl training run on a trial config: the env's preset (or ``--preset``) with the
sampled values on top. Every update reports the mean of the recent training returns to the pruner, which
stops trials that fall below the median of earlier trials at the same step (the reported value is the mean
of the last 100 training returns). The objective is the mean raw return of the trial's last 20 training
episodes. Trial i trains on seed 1 + (i mod 99), a screening seed: a tuned preset is never chosen on the seeds of
a benchmark table (101+, :mod:`rlctl.bench.seeds`).

A study lives in an Optuna storage (``--storage sqlite:///tune.db``), so ``rlctl tune`` run again with the
same storage and study name resumes it, and several processes can share one. The best trial is written as
a preset file, usable directly: ``rlctl train --env ID --preset best.yaml``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlctl.bench.seeds import tune_seed
from rlctl.config import Config, from_dict
from rlctl.errors import UserError
from rlctl.resolve import parse_set, preset_for, resolve_config

# The declared search space: config path -> ("log"|"float", low, high) or ("cat", choices).
SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "ppo.learning_rate": ("log", 1e-5, 1e-3),
    "ppo.num_steps": ("cat", [256, 512, 1024, 2048]),
    "ppo.minibatch_size": ("cat", [32, 64, 128, 256]),
    "ppo.update_epochs": ("cat", [5, 10, 20]),
    "ppo.gamma": ("cat", [0.95, 0.98, 0.99, 0.995, 0.999]),
    "ppo.gae_lambda": ("cat", [0.8, 0.9, 0.92, 0.95, 0.98, 0.99]),
    "ppo.clip_coef": ("cat", [0.1, 0.2, 0.3]),
    "ppo.ent_coef": ("log", 1e-8, 1e-2),
    "ppo.vf_coef": ("float", 0.2, 1.0),
    "ppo.max_grad_norm": ("cat", [0.3, 0.5, 0.8, 1.0, 2.0]),
    "policy.hidden_sizes": ("cat", ["64x64", "256x256"]),
    "policy.activation": ("cat", ["tanh", "relu"]),
    "policy.log_std_init": ("float", -3.0, 0.0),
}
OBJECTIVE_EPISODES = 20


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError("rlctl tune needs Optuna: pip install 'rlctl[tune]'") from None
    return optuna


def as_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's flat ``{"section.key": value}`` params as a nested config dict (``"64x64"`` → ``[64, 64]``)."""
    nested: dict[str, Any] = {}
    for path, value in params.items():
        if path == "policy.hidden_sizes":
            value = [int(x) for x in str(value).split("x")]
        section, key = path.split(".")
        nested.setdefault(section, {})[key] = value
    return nested


def sample_overrides(trial: Any) -> dict[str, Any]:
    """One point of :data:`SEARCH_SPACE` as a nested override dict."""
    params: dict[str, Any] = {}
    for path, spec in SEARCH_SPACE.items():
        kind = spec[0]
        if kind == "log":
            params[path] = trial.suggest_float(path, spec[1], spec[2], log=True)
        elif kind == "float":
            params[path] = trial.suggest_float(path, spec[1], spec[2])
        else:
            params[path] = trial.suggest_categorical(path, spec[1])
    return as_overrides(params)


def _trial_config(env_id: str, preset: str | None, steps: int, set_items: list[str], trial: Any) -> Config:
    optuna = _import_optuna()
    sampled = sample_overrides(trial)
    sampled.setdefault("ppo", {})["total_timesteps"] = steps
    # trials train on screening seeds (1–99), never on a benchmark table's (101+): rlctl.bench.seeds
    sampled.setdefault("run", {}).update({"eval_episodes": 0, "checkpoint_every": 10**12,
                                          "seed": tune_seed(trial.number)})
    try:
        cfg, _ = resolve_config(env_id, preset, sampled, set_items)
    except UserError as exc:  # e.g. a minibatch larger than the rollout: not a valid point
        raise optuna.TrialPruned(str(exc)) from None
    if cfg.batch_size > steps:
        raise optuna.TrialPruned(f"a rollout of {cfg.batch_size} steps exceeds the trial budget of {steps}")
    return cfg


def objective_for(env_id: str, preset: str | None, steps: int, set_items: list[str]) -> Any:
    """The Optuna objective: train one trial config, report recent returns, return the final score."""
    optuna = _import_optuna()
    from rlctl.train.loop import train

    def objective(trial: Any) -> float:
        cfg = _trial_config(env_id, preset, steps, set_items, trial)
        pruned = {"flag": False}

        def on_update(scalars: dict[str, Any]) -> bool:
            if scalars["recent_return"] is not None:
                trial.report(scalars["recent_return"], scalars["global_step"])
                if trial.should_prune():
                    pruned["flag"] = True
                    return True
            return False

        with tempfile.TemporaryDirectory() as tmp:
            result = train(cfg, Path(tmp), on_update=on_update, progress=False)
        if pruned["flag"]:
            raise optuna.TrialPruned()
        returns = result.episode_returns[-OBJECTIVE_EPISODES:]
        if not returns:
            raise optuna.TrialPruned("no episode finished within the budget")
        return float(np.mean(returns))

    return objective


def best_preset(env_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """The best trial's parameters as a preset entry ``{env_id: {section: {key: value}}}``."""
    return {env_id: as_overrides(params)}


def run_cli(args: argparse.Namespace) -> int:
    from rlctl.checkpoint import atomic_write_text, prepare_output

    optuna = _import_optuna()
    from rlctl.envs.ids import check_env_id

    check_env_id(args.env)
    if args.trials < 1 or args.steps < 1:
        raise UserError("--trials and --steps must be positive")
    # Fail fast on an unknown preset or a malformed/unknown --set; cross-field rules are checked per trial.
    preset_for(args.env, args.preset)
    from_dict(parse_set(args.set), Config(), check=False)
    out = Path(args.out or f"tune-{args.env.replace('/', '_').replace(':', '_')}.yaml")
    prepare_output(out, args.force)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=args.study_name or f"rlctl-{args.env}", storage=args.storage, load_if_exists=True,
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=args.steps // 3),
    )
    done_before = len(study.trials)
    study.optimize(objective_for(args.env, args.preset, args.steps, args.set), n_trials=args.trials,
                   callbacks=[lambda s, t: print(f"trial {t.number}: {t.state.name.lower()}"
                                                 + (f", score {t.value:.1f}" if t.value is not None else ""),
                                                 flush=True)])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise UserError("no trial completed (all pruned or failed); raise --steps or --trials")
    best = study.best_trial
    atomic_write_text(out, yaml.safe_dump(best_preset(args.env, best.params), sort_keys=False))
    print(f"{len(study.trials) - done_before} trials run ({len(study.trials)} in the study); best: trial "
          f"{best.number} with score {best.value:.1f} → {out}\nuse it: rlctl train --env {args.env} --preset {out}")
    return 0
