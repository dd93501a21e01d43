"""One benchmark run (rlctl or SB3) in its own process, so thread settings and imports don't leak.

Both libraries get the *same* resolved rlctl config; :func:`sb3_kwargs` is the translation. The
result JSON holds wall time, SPS, every training episode (step, raw return) and a deterministic
evaluation with frozen observation statistics.

Usage: ``python -m rlctl.bench.worker LIB ENV PRESET STEPS SEED THREADS OUT.json [KEY=VALUE ...]
[--eval-episodes N]`` with LIB one of ``rlctl``, ``rlctl-overlap`` (process sampler + overlap), ``rlctl-fast``
(process sampler + overlap + ``run.compile``; ``rlctl-fast@N`` with N sampler workers), ``sb3``, ``ceiling``
(random actions through the same vector env, no learning); ``+bf16`` and ``+envpool`` suffixes add a bf16 CNN
encoder and EnvPool stepping (``rlctl-overlap+bf16+envpool``, ``ceiling+envpool``). ``--eval-episodes`` sets the
deterministic evaluation after training (default 10; ``bench sps`` passes 0, as throughput runs need none).
``--parallel N`` says how many runs of the same bench run at once (a matrix's ``--jobs``): with the run's own
threads and sampler processes, that is the load the result's ``load`` record counts as its own
(:mod:`rlctl.bench.load`, which decides whether the run's wall time and SPS are comparable).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.config import Config, to_dict, with_overrides
from rlctl.resolve import resolve_config

EVAL_EPISODES = 10
"""the worker's default ``--eval-episodes`` (returns, suite); ``bench sps`` passes 0 (10 Atari games take minutes)"""
EVAL_SEED = 10_000
WARMUP_ROLLOUTS = 2  # excluded from steady-state SPS: start-up, first-call allocation, torch.compile


def steady_sps(marks: list[tuple[int, float]]) -> float:
    """Steps per second between the end of rollout WARMUP_ROLLOUTS and the last one (NaN if too short)."""
    if len(marks) < WARMUP_ROLLOUTS + 2:
        return float("nan")
    (s0, t0), (s1, t1) = marks[WARMUP_ROLLOUTS], marks[-1]
    return (s1 - s0) / (t1 - t0)


def sb3_kwargs(cfg: Config) -> dict[str, Any]:
    """SB3 ``PPO(...)`` keyword arguments equivalent to an rlctl config."""
    import torch

    p = cfg.ppo
    lr: Any = p.learning_rate
    if p.anneal_lr:
        lr = lambda progress_remaining: p.learning_rate * progress_remaining
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU}[cfg.policy.activation]
    kwargs: dict[str, Any] = {
        "n_steps": p.num_steps, "batch_size": p.minibatch_size, "n_epochs": p.update_epochs,
        "learning_rate": lr, "gamma": p.gamma, "gae_lambda": p.gae_lambda,
        "clip_range": (lambda progress_remaining: p.clip_coef * progress_remaining) if p.anneal_clip else p.clip_coef,
        "clip_range_vf": p.clip_coef if p.clip_vloss else None, "ent_coef": p.ent_coef, "vf_coef": p.vf_coef,
        "max_grad_norm": p.max_grad_norm, "target_kl": p.target_kl, "normalize_advantage": p.norm_adv,
        "policy_kwargs": {
            "net_arch": {"pi": list(cfg.policy.hidden_sizes), "vf": list(cfg.policy.hidden_sizes)},
            "activation_fn": act, "ortho_init": cfg.policy.ortho_init, "log_std_init": cfg.policy.log_std_init,
        },
    }
    if p.adam_eps != 1e-5:  # SB3's PPO default is Adam(eps=1e-5); leave its kwargs as they were otherwise
        kwargs["policy_kwargs"]["optimizer_kwargs"] = {"eps": p.adam_eps}
    return kwargs


def sb3_unmatched(cfg: Config) -> list[str]:
    """Settings of ``cfg`` that :func:`sb3_kwargs` cannot give SB3's PPO: its runs do without them, and the
    report says so next to the comparison. (``adam_eps`` is not one: it goes through ``optimizer_kwargs``.)"""
    p = cfg.ppo
    out = []
    if p.recompute_adv:
        out.append("ppo.recompute_adv (SB3 computes advantages once per rollout)")
    if p.smooth_temporal or p.smooth_spatial:
        out.append("ppo.smooth_temporal/smooth_spatial (SB3 has no CAPS terms)")
    if p.target_kl is not None:
        out.append("ppo.target_kl (SB3 stops mid-epoch at 1.5x it, rlctl after an epoch whose mean KL exceeds it)")
    return out


def run_rlctl(cfg: Config, eval_episodes: int = EVAL_EPISODES) -> dict[str, Any]:
    from rlctl.evaluate import evaluate_policy
    from rlctl.logger import read_metrics
    from rlctl.spaces import adapter_for_env
    from rlctl.train.loop import train

    marks: list[tuple[int, float]] = []

    def mark(scalars: dict[str, Any]) -> bool:
        marks.append((int(scalars["global_step"]), time.perf_counter()))
        return False

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train(cfg, Path(tmp), progress=False, on_update=mark)
        wall = time.perf_counter() - t0
        records = read_metrics(Path(tmp) / "metrics.jsonl")
        episodes = [[r["step"], r["value"]] for r in records if r["tag"] == "charts/episodic_return"]
        perf_tags = sorted({r["tag"] for r in records if r["tag"].startswith("perf/")})
        # seconds per rollout, mean over updates after the first (which carries start-up and compilation)
        perf = {tag[5:]: float(np.mean([r["value"] for r in records if r["tag"] == tag][1:] or [np.nan]))
                for tag in perf_tags}
    ev: dict[str, Any] = {"returns": []}
    if eval_episodes:
        from rlctl.envs.make import make_env

        env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
        adapter = adapter_for_env(env)
        env.close()
        ev = evaluate_policy(result.agent, adapter, cfg, eval_episodes, True, EVAL_SEED)
    return {"wall_s": wall, "steps": result.global_step, "episodes": episodes, "eval": ev["returns"], "perf": perf,
            "steady_sps": steady_sps(marks)}


def run_ceiling(cfg: Config, eval_episodes: int = 0) -> dict[str, Any]:
    """Random actions through the same vector env, no policy, no learning: the env-step ceiling (nothing to
    evaluate, so ``eval_episodes`` is ignored)."""
    from rlctl.envs.make import make_vector_env

    envs = make_vector_env(cfg.env.id, cfg.env.num_envs, cfg.env.vectorization, cfg.env.kwargs,
                           cfg.env.max_episode_steps)
    envs.action_space.seed(cfg.run.seed)
    t0 = time.perf_counter()
    envs.reset(seed=cfg.run.seed)
    steps = 0
    while steps < cfg.num_updates * cfg.batch_size:
        envs.step(envs.action_space.sample())
        steps += cfg.env.num_envs
    wall = time.perf_counter() - t0
    envs.close()
    return {"wall_s": wall, "steps": steps, "episodes": [], "eval": [float("nan")], "steady_sps": steps / wall}


def sb3_env_maker(cfg: Config) -> Callable[[], Any]:
    """One env of SB3's vector env: rlctl's own (same id, keyword arguments and time limit; Atari gets the same
    preprocessed stack, envs/atari/__init__.py, whose episodes are whole games), with SB3's Monitor on the others."""
    from stable_baselines3.common.monitor import Monitor

    from rlctl.envs.make import make_env

    def make() -> Any:
        env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
        return env if cfg.env.id.startswith("ALE/") else Monitor(env)

    return make


def run_sb3(cfg: Config, eval_episodes: int = EVAL_EPISODES) -> dict[str, Any]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    episodes: list[list[float]] = []
    marks: list[tuple[int, float]] = []

    class Record(BaseCallback):
        def _on_rollout_start(self) -> None:  # i.e. just after the previous update, as rlctl's on_update
            if self.num_timesteps > 0:
                marks.append((self.num_timesteps, time.perf_counter()))

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # Monitor
                    episodes.append([self.num_timesteps, float(info["episode"]["r"])])
                elif "game_return" in info:  # Atari: a whole game's raw score (envs/atari/__init__.py)
                    episodes.append([self.num_timesteps, float(info["game_return"])])
            return True

    atari = cfg.env.id.startswith("ALE/")
    make = sb3_env_maker(cfg)
    t0 = time.perf_counter()
    venv: Any = DummyVecEnv([make for _ in range(cfg.env.num_envs)])
    normalize = not atari and (cfg.policy.normalize_obs or cfg.ppo.normalize_reward)  # CNNs take raw pixels
    if normalize:
        venv = VecNormalize(venv, norm_obs=cfg.policy.normalize_obs, norm_reward=cfg.ppo.normalize_reward,
                            clip_obs=cfg.policy.clip_obs, clip_reward=cfg.ppo.clip_reward, gamma=cfg.ppo.gamma)
    kwargs = sb3_kwargs(cfg)
    if atari:
        kwargs["policy_kwargs"] = {}  # SB3's CnnPolicy: Nature CNN shared by both heads, orthogonal init
    model = PPO("CnnPolicy" if atari else "MlpPolicy", venv, seed=cfg.run.seed, device="cpu", verbose=0, **kwargs)
    model.learn(total_timesteps=cfg.num_updates * cfg.batch_size, callback=Record())
    wall = time.perf_counter() - t0

    from rlctl.evaluate import play_episode

    def choose(obs: Any) -> Any:
        x = venv.normalize_obs(obs[None]) if normalize and cfg.policy.normalize_obs else obs[None]
        return model.predict(x, deterministic=True)[0][0]

    env = make()
    returns = [play_episode(env, choose, EVAL_SEED + i)[0] for i in range(eval_episodes)]
    marks.append((int(model.num_timesteps), t0 + wall))  # the end of the last update
    return {"wall_s": wall, "steps": int(model.num_timesteps), "episodes": episodes, "eval": returns,
            "steady_sps": steady_sps(marks)}


def worker_config(lib: str, env_id: str, preset: str, steps: int, seed: int, threads: int,
                  set_items: Sequence[str] = ()) -> tuple[Config, str]:
    """The resolved config a ``LIB`` run trains with, and the library name without its options.

    The variant's settings (sampler, precision, ...) go on after ``--set`` and are validated with it, through
    :func:`rlctl.config.with_overrides` (the resolved config is frozen).
    """
    cfg, _ = resolve_config(env_id, None if preset == "-" else preset, {
        "ppo": {"total_timesteps": steps},
        "run": {"seed": seed, "eval_episodes": 0, "device": "cpu", "torch_threads": max(1, threads),
                "checkpoint_every": 10**12, "log_every": 1},
    }, list(set_items))
    lib, _, n_workers = lib.partition("@")  # rlctl-fast@2: the same variant with 2 sampler workers
    lib, *options = lib.split("+")  # rlctl+bf16+envpool: bf16 CNN encoder, Atari stepped by EnvPool
    run: dict[str, Any] = {"compile": lib == "rlctl-fast"}
    if lib == "rlctl":  # the plain variant collects inline, whatever the preset says
        run.update(sampler="inline", overlap=False, num_workers=1)
    if lib in ("rlctl-overlap", "rlctl-fast"):
        run.update(sampler="process", overlap=True, num_workers=int(n_workers or 1))
    variant: dict[str, Any] = {"policy": {"precision": "bf16" if "bf16" in options else "fp32"}, "run": run}
    if "envpool" in options:
        variant["env"] = {"vectorization": "envpool"}
    return with_overrides(cfg, variant), lib


def fingerprint(cfg: Config | dict[str, Any]) -> str:
    """Hash of what decides learning (env, policy and PPO settings), to tell a result from an older preset.

    Settings at their default value are left out, so adding a config field (whose default keeps the old
    behaviour) does not make earlier results look stale.
    """
    values = to_dict(cfg) if isinstance(cfg, Config) else cfg
    defaults = to_dict(Config())
    learning = {section: {k: v for k, v in values[section].items() if defaults[section].get(k, object()) != v}
                for section in ("env", "policy", "ppo")}
    return hashlib.sha256(json.dumps(learning, sort_keys=True).encode()).hexdigest()[:16]


def result_fingerprint(result: dict[str, Any]) -> str | None:
    """A result's fingerprint, from its stored config; None for results from before configs were kept."""
    return fingerprint(result["config"]) if "config" in result else None


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The worker's command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m rlctl.bench.worker", description="One benchmark run (rlctl bench).")
    p.add_argument("lib", help="rlctl, rlctl-overlap, rlctl-fast[@N], sb3 or ceiling, with +bf16/+envpool options")
    p.add_argument("env", help="env id")
    p.add_argument("preset", help="preset name, or - for the env's own entry")
    p.add_argument("steps", type=int, help="training budget (ppo.total_timesteps)")
    p.add_argument("seed", type=int, help="run seed")
    p.add_argument("threads", type=int, help="torch threads (0: torch's default)")
    p.add_argument("out", help="result JSON path")
    p.add_argument("set_items", nargs="*", metavar="KEY=VALUE", help="config overrides, as rlctl's --set")
    p.add_argument("--eval-episodes", type=int, default=EVAL_EPISODES,
                   help=f"deterministic evaluation episodes after training (default {EVAL_EPISODES}; 0 skips it)")
    p.add_argument("--parallel", type=int, default=1,
                   help="runs of the same bench running at once (its --jobs), counted as this run's own load")
    args = p.parse_intermixed_args(argv)
    if args.eval_episodes < 0:
        p.error(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.parallel < 1:
        p.error(f"--parallel must be >= 1, got {args.parallel}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = args.out
    cfg, lib = worker_config(args.lib, args.env, args.preset, args.steps, args.seed, args.threads, args.set_items)
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from rlctl.bench.load import LoadMonitor, run_processes

    runner = run_sb3 if lib == "sb3" else run_ceiling if lib == "ceiling" else run_rlctl
    sampler = cfg.run.sampler if runner is run_rlctl else "inline"  # SB3 and the ceiling step in this process
    monitor = LoadMonitor(args.parallel * run_processes(sampler, cfg.run.num_workers, torch.get_num_threads()))
    monitor.start_thread()
    res = runner(cfg, args.eval_episodes)
    res.update({"lib": lib, "env": args.env, "preset": args.preset, "seed": args.seed, "budget": args.steps,
                "threads": torch.get_num_threads(), "sps": res["steps"] / res["wall_s"], "config": to_dict(cfg),
                "load": monitor.stop()})
    returns = [r for _, r in res["episodes"]]
    res["last100"] = float(np.mean(returns[-100:])) if returns else float("nan")
    res["eval_mean"] = float(np.mean(res["eval"])) if res["eval"] else float("nan")
    from rlctl.bench.compact import compact_result

    res = compact_result(res)  # committable size: the curve binned, the last 100 episodes kept exactly
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(res, fh)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
