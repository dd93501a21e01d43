"""The training loop: wait for a rollout → prepare the batch → update → log → checkpoint.

``train(cfg, run_dir)`` is the whole product; the CLI only resolves a config and calls it. A reward
hook (``reward_fn``) and an ``on_update`` callback make it usable as the inner loop of other tools
(reward refinement, tuning) without subclassing anything.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlctl.agents.cnn import CnnActorCritic
from rlctl.agents.policies import Policy, state_size
from rlctl.checkpoint import atomic_write_text, keep_copy, load_checkpoint, save_checkpoint
from rlctl.config import Config, save_yaml
from rlctl.device import resolve_device, update_probe
from rlctl.envs.make import make_env
from rlctl.envs.reward import RewardFn
from rlctl.errors import UserError
from rlctl.evaluate import evaluate_policy
from rlctl.logger import MetricsLogger, Progress
from rlctl.reward import reward_record, run_reward
from rlctl.rundir import BEST_LEARNER, CHECKPOINT, CONFIG, FINAL_EVAL, KEPT, RESUMES
from rlctl.runs import build_agent
from rlctl.sampling import Sampler, make_sampler
from rlctl.spaces import SpaceAdapter, adapter_for_env, rollout_for
from rlctl.train.compile_cache import cache_counts, use_compile_cache
from rlctl.train.curriculum import DemoCurriculum
from rlctl.train.interrupt import GracefulStop
from rlctl.train.learner import Learner
from rlctl.train.metrics import UpdateMetrics
from rlctl.train.optim import probe_step
from rlctl.train.state import hparams_markdown, rng_state, set_rng_state
from rlctl.train.transfer import AgencyTransfer


@dataclass
class TrainResult:
    """What a finished (or stopped) run hands back to a caller."""

    run_dir: Path
    global_step: int
    episode_returns: list[float]
    final_eval: dict[str, Any] | None
    agent: Policy


def train(
    cfg: Config,
    run_dir: Path,
    *,
    resume: bool = False,
    reward_fn: RewardFn | None = None,
    on_update: Callable[[dict[str, Any]], bool | None] | None = None,
    progress: bool = True,
    device: str | None = None,
    force: bool = False,
) -> TrainResult:
    """Train PPO as configured, writing everything to ``run_dir``.

    Args:
        cfg: the resolved config (with ``resume`` it must equal the run's saved ``config.yaml``).
        run_dir: created if missing; with ``resume`` it must hold a checkpoint.
        resume: continue from ``run_dir/checkpoint.pt`` with the same schedule and TensorBoard run.
        reward_fn: optional in-process reward hook, see :mod:`rlctl.envs.reward` (``env.reward`` names a file).
        on_update: called after each update with the logged scalars, ``global_step`` and
            ``recent_return`` (mean of the last 100 training returns, or None); returning True stops
            training (a checkpoint is written first).
        progress: show a progress bar / periodic lines on stderr.
        device: the learner's device for this session instead of ``cfg.run.device`` (a resumed run may
            move to another machine); not part of the run's config.
        force: with ``resume``, go on even though the ``env.reward`` file changed since the run started.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.run.torch_threads)
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)

    with GracefulStop() as interrupt:  # from here on, a first Ctrl-C means "checkpoint and stop"
        ckpt = load_checkpoint(run_dir / CHECKPOINT) if resume else None
        reward = run_reward(cfg, ckpt.get("reward") if ckpt else None, force)
        if reward is not None:
            if reward_fn is not None:
                raise UserError(f"env.reward={cfg.env.reward} and a reward_fn were both given; pass one")
            reward_fn = reward.load()
        adapter = _adapter(cfg)
        where, why = resolve_device(device or cfg.run.device, update_probe(lambda d: probe_step(cfg, adapter, d)))
        agent = build_agent(cfg, adapter, where)
        cache = use_compile_cache() if cfg.run.compile else None  # before anything compiles
        learner = Learner(cfg, agent)
        transfer = AgencyTransfer(cfg) if cfg.arbiter.baseline is not None else None
        curriculum = DemoCurriculum(cfg) if cfg.curriculum.demos else None
        rollout = rollout_for(adapter, cfg.ppo.num_steps, cfg.env.num_envs, where, state_size(agent))
        sampler = make_sampler(cfg, agent, adapter, rollout, where, reward_fn)
        try:
            start_update, global_step, last_log = 0, 0, 0
            if ckpt is not None:
                learner.load_state_dict(ckpt)
                sampler.load_state_dict(ckpt["sampler"])
                set_rng_state(ckpt["rng"])
                if transfer is not None:
                    transfer.load_state_dict(ckpt.get("transfer"))
                if curriculum is not None:
                    curriculum.load_state_dict(ckpt.get("curriculum"))
                start_update, global_step, last_log = ckpt["update"], ckpt["global_step"], ckpt["last_log"]
            else:
                atomic_write_text(run_dir / CONFIG, save_yaml(cfg))
                for stale in (RESUMES, BEST_LEARNER):  # a new run in the directory of an old one
                    (run_dir / stale).unlink(missing_ok=True)
            if start_update >= cfg.num_updates:
                final_eval = None
                if cfg.run.eval_episodes > 0 and not (run_dir / FINAL_EVAL).is_file():  # killed while evaluating
                    print(f"rlctl: {run_dir} finished its {global_step} steps; its final evaluation is missing: "
                          "running it", flush=True)
                    _record_resume(run_dir, global_step)
                    logger = MetricsLogger(run_dir, resume_step=global_step)
                    final_eval = _final_eval(cfg, agent, adapter, run_dir, logger, global_step, reward_fn)
                    logger.close()
                else:
                    print(f"rlctl: {run_dir} already finished ({global_step} steps); nothing to resume", flush=True)
                return TrainResult(run_dir, global_step, [], final_eval, agent)
            _announce(cfg, agent, where, why, resume, global_step, run_dir, cache)
            logger = MetricsLogger(run_dir, resume_step=global_step if resume else None)
            if resume:
                _record_resume(run_dir, global_step)
            else:
                logger.text("hyperparameters", hparams_markdown(cfg))
            metrics = UpdateMetrics(logger, cfg, last_log, global_step)
            bar = Progress(cfg.num_updates * cfg.batch_size, global_step, enabled=progress)

            def checkpoint(next_update: int) -> None:
                # Every row logged so far must be on disk before a checkpoint says "resume from here": a
                # resume keeps the rows up to the checkpoint's step and never rewrites them.
                logger.flush()
                save_checkpoint(run_dir / CHECKPOINT, {
                    "config": save_yaml(cfg), **learner.state_dict(), "sampler": sampler.state_dict(),
                    "rng": rng_state(), "update": next_update, "global_step": global_step,
                    "last_log": metrics.last_log, "obs_space": repr(adapter.obs_space),
                    "action_space": repr(adapter.action_space), "reward": reward_record(reward),
                    "transfer": transfer.state_dict() if transfer is not None else None,
                    "curriculum": curriculum.state_dict() if curriculum is not None else None,
                })
                if cfg.run.keep_checkpoints:
                    keep_copy(run_dir / CHECKPOINT, run_dir / KEPT / f"step_{global_step:09d}.pt")

            launched: dict[str, float] = {}  # scalars of the rollout launched last: the one `wait` returns next

            def launch(step: int) -> None:
                if transfer is not None:  # the learner's share of the arbitration for this rollout
                    sampler.set_share(transfer.share(step))
                if curriculum is not None:  # where this rollout's new episodes start in the demos
                    sampler.set_env_attr("demo_back", curriculum.launch_back())
                if cfg.env.randomization_ramp > 0:  # how strongly this rollout's new episodes are randomized
                    launched["charts/sim2real_strength"] = cfg.env.strength(step / cfg.ppo.total_timesteps)
                    sampler.set_env_attr("sim2real_strength", launched["charts/sim2real_strength"])
                sampler.launch(step)

            last_ckpt = global_step
            sampler.publish(agent)
            launch(global_step)
            for update in range(start_update, cfg.num_updates):
                last_update = update == cfg.num_updates - 1
                schedule = learner.schedule(update)
                t_wait = time.perf_counter()
                rollout, info = sampler.wait()
                rollout = rollout.to(where)
                wait_s = time.perf_counter() - t_wait
                schedule = schedule | launched
                sampler.sync_stats(agent)
                global_step += cfg.batch_size
                if cfg.run.overlap and not last_update:
                    launch(global_step)  # collect the next rollout with these (pre-update) weights
                t_update = time.perf_counter()
                stats = learner.update(rollout)
                update_s = time.perf_counter() - t_update
                if cfg.run.compile and update == start_update:
                    _report_compile(learner.step.first_call_s)
                sampler.publish(agent)
                if not cfg.run.overlap and not last_update:
                    launch(global_step)

                if transfer is not None:
                    schedule = schedule | transfer.after_update(agent, adapter, global_step)
                    if transfer.improved and transfer.best is not None:  # the learner alone may get worse later
                        success, mean_return = transfer.best
                        save_checkpoint(run_dir / BEST_LEARNER, {
                            "config": save_yaml(cfg), "agent": agent.state_dict(), "global_step": global_step,
                            "reward": reward_record(reward), "learner_alone": True,
                            "evaluation": {"success_rate": success, "mean_return": mean_return}})
                solved = False
                if curriculum is not None:
                    schedule = schedule | curriculum.observe(info.episodes)
                    curriculum_scalars, solved = curriculum.after_update(agent, adapter, global_step)
                    schedule = schedule | curriculum_scalars
                scalars = metrics.record(global_step, info, stats, schedule, sampler, wait_s, update_s, last_update)
                bar.update(global_step, metrics.recent_return)
                stop = bool(on_update(scalars | {"global_step": global_step,
                                                 "recent_return": metrics.recent_return})) if on_update else False
                stop = stop or interrupt.requested or solved
                if global_step - last_ckpt >= cfg.run.checkpoint_every or last_update or stop:
                    checkpoint(update + 1)
                    last_ckpt = global_step
                if stop:
                    break
            bar.close()
            if interrupt.requested:
                print(f"rlctl: stopped at step {global_step}; checkpoint written to {run_dir / CHECKPOINT} "
                      f"(continue with: rlctl train --resume {run_dir})", file=sys.stderr, flush=True)
            if curriculum is not None and curriculum.solved:
                print(f"rlctl: solved from the env's own initial states at step {global_step} (curriculum."
                      f"solve_success={cfg.curriculum.solve_success}); stopping", flush=True)
            done = global_step >= cfg.num_updates * cfg.batch_size or (curriculum is not None and curriculum.solved)
            final_eval = _final_eval(cfg, agent, adapter, run_dir, logger, global_step, reward_fn) if done else None
            logger.close()
            return TrainResult(run_dir, global_step, metrics.all_returns, final_eval, agent)
        finally:
            sampler.close()


def _record_resume(run_dir: Path, step: int) -> None:
    """One line in ``resumes.jsonl``: the run's wall time now spans an interruption (:func:`rlctl.runs.was_resumed`)."""
    with open(run_dir / RESUMES, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"step": step, "time": time.time()}) + "\n")


def _adapter(cfg: Config) -> SpaceAdapter:
    """The run's spaces, from one env built and closed again; rejects settings its actions cannot take."""
    env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
    adapter = adapter_for_env(env)
    env.close()
    if (cfg.ppo.smooth_temporal > 0 or cfg.ppo.smooth_spatial > 0) and adapter.action.kind != "continuous":
        raise UserError(f"ppo.smooth_temporal / smooth_spatial regularize a Gaussian policy's mean; {cfg.env.id} has "
                        f"{adapter.action.kind} actions")
    return adapter


def _announce(cfg: Config, agent: Policy, device: torch.device, why: str, resume: bool, global_step: int,
              run_dir: Path, cache: Path | None) -> None:
    mode = cfg.run.sampler + (" + overlap" if cfg.run.overlap else "")
    net = f", {type(agent.encoder).__name__} in {agent.precision}" if isinstance(agent, CnnActorCritic) else ""
    print(f"rlctl: {cfg.env.id} on {device} ({why}){net}, {mode} sampler "
          f"({'resumed at step ' + str(global_step) if resume else 'new run'}),"
          f" {cfg.num_updates} updates of {cfg.batch_size} steps → {run_dir}", flush=True)
    if cache is not None:
        print(f"rlctl: torch.compile compiles the minibatch step in the first update; the first run on a machine "
              f"compiles, later ones load it from the cache ({cache})", flush=True)


def _report_compile(seconds: float | None) -> None:
    hits, misses = cache_counts()
    took = f"{seconds:.1f} s" if seconds is not None else "no minibatch step ran"
    print(f"rlctl: torch.compile of the minibatch step (loss and backward; gradient clip and Adam): {took}, "
          f"{hits} graphs from the cache, {misses} compiled", flush=True)


def _final_eval(cfg: Config, agent: Policy, adapter: SpaceAdapter, run_dir: Path, logger: MetricsLogger,
                global_step: int, reward_fn: RewardFn | None) -> dict[str, Any] | None:
    """The deterministic evaluation of a run that reached its budget or solved its task (``run.eval_episodes``
    episodes)."""
    if cfg.run.eval_episodes <= 0:
        return None
    result = evaluate_policy(agent, adapter, cfg, cfg.run.eval_episodes, deterministic=True, seed=cfg.run.seed + 10_000,
                             reward_fn=reward_fn)
    logger.scalar("eval/episodic_return", result["mean_return"], global_step)
    atomic_write_text(run_dir / FINAL_EVAL, json.dumps(result, indent=2))
    print(f"final deterministic eval over {result['episodes']} episodes: "
          f"{result['mean_return']:.1f} ± {result['std_return']:.1f}", flush=True)
    return result


__all__ = ["Sampler", "TrainResult", "train"]
