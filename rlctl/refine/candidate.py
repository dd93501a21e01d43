"""One candidate, in its own process: train PPO on its reward, then score the policy on the task alone.

``python -m rlctl.refine.candidate DIR`` reads ``DIR/job.json``, trains into ``DIR/run`` with the program
(``DIR/program.py``, run in its sandbox) as the reward, or with the env's own reward when the job has no
program, and writes ``DIR/result.json``. The fitness never looks at the generated reward: it is the success
rate of the deterministic policy on fresh episodes (ties broken by how long the episodes lasted, then by how
close the timed-out ones ended), or for envs without a success signal the env's own return. A program that
fails during training is a result (``ok: false`` and the reason), not a crash.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.checkpoint import atomic_write_text
from rlctl.config import Config
from rlctl.envs.make import make_env
from rlctl.refine.hook import SandboxedReward
from rlctl.refine.sandbox import Limits
from rlctl.refine.schema import Schema
from rlctl.resolve import resolve_config
from rlctl.rundir import METRICS
from rlctl.runs import can_resume
from rlctl.sim2real_eval import policy_actor, run_episodes, summarize, without_set
from rlctl.spaces import adapter_for_env
from rlctl.train import train

SERIES_POINTS = 50


def run_job(directory: Path) -> dict[str, Any]:
    job = json.loads((directory / "job.json").read_text())
    cfg, _ = resolve_config(job["env_id"], job.get("preset"), job["overrides"], job.get("set", []))
    reward = None
    if job.get("program"):
        reward = SandboxedReward((directory / job["program"]).read_text(), Schema.from_json(job["schema"]),
                                 Limits(**job.get("limits", {})), directory / "sandbox.log")
    resumed = can_resume(directory / "run", cfg)  # a killed candidate goes on from its last checkpoint
    if not resumed:
        shutil.rmtree(directory / "run", ignore_errors=True)
    load_start = os.getloadavg()[0]  # wall times on a shared machine mean little without the load beside them
    t0 = time.perf_counter()
    stage = "training"
    try:
        trained = train(cfg, directory / "run", resume=resumed, reward_fn=reward, progress=False)
        train_s = time.perf_counter() - t0
        calls = reward.calls if reward is not None else 0
        stage = "evaluation"
        ev = evaluate(cfg, trained.agent, job["fitness"])
    except Exception as exc:  # a failing candidate is feedback, never a crash of the loop
        return {"ok": False, "stage": stage, "error": " ".join(f"{type(exc).__name__}: {exc}".split())[:500],
                "wall_s": time.perf_counter() - t0}
    finally:
        if reward is not None:
            reward.close()
    series, every = _series(directory / "run" / METRICS)
    return {"ok": True, "fitness": ev["fitness"], "key": ev["key"], "eval": ev, "steps": trained.global_step,
            "train_s": round(train_s, 2), "wall_s": round(time.perf_counter() - t0, 2), "sandbox_calls": calls,
            "load_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
            "resumed": resumed,  # then the times and sandbox calls are those of the last part
            "series": series, "series_every": every}


def evaluate(cfg: Config, agent: Any, fitness: dict[str, Any]) -> dict[str, Any]:
    """Deterministic episodes on the env without any reward hook (episode i reset with seed + i)."""
    env = make_env(cfg.env.id, without_set(cfg.env.kwargs), cfg.env.max_episode_steps)
    try:
        act = policy_actor(agent, adapter_for_env(env))(env)[0]
        records = run_episodes(env, act, fitness["episodes"], fitness["seed"])
        max_len = getattr(env.unwrapped, "max_steps", None) or (env.spec.max_episode_steps if env.spec else None) \
            or max(r["length"] for r in records)
    finally:
        env.close()
    summary = summarize(records)
    if fitness["kind"] == "success":
        # ties (every candidate at 0 early in training) are broken by how long episodes lasted, then by how
        # close the time-limited ones ended: both read the task alone, never the generated reward
        survival = float(np.mean([min(1.0, r["length"] / max_len) for r in records]))
        close = [1.0 if r["success"] else math.exp(-r["final_distance"] / 0.5)
                 if r["failure_reason"] == "timeout" and math.isfinite(r["final_distance"]) else 0.0
                 for r in records]
        dists = [r["final_distance"] for r in records if math.isfinite(r["final_distance"])]
        summary.update(fitness=summary["success_rate"], survival=survival, closeness=float(np.mean(close)),
                       key=[summary["success_rate"], survival, float(np.mean(close))],
                       median_final_distance=float(np.median(dists)) if dists else None)
    else:
        summary.update(fitness=summary["mean_return"], key=[summary["mean_return"]])
    summary.pop("success_ci95", None)
    return summary


def _series(path: Path) -> tuple[dict[str, list[float]], int]:
    """The reflection's raw material: each reward component and task metric over training, binned."""
    rows: dict[str, list[tuple[int, float]]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            tag = rec["tag"]
            if rec["value"] is not None and (tag.startswith("reward/") or tag in (
                    "charts/success_rate", "charts/episodic_length", "charts/shaped_return")):
                rows.setdefault(tag, []).append((rec["step"], rec["value"]))
    out: dict[str, list[float]] = {}
    last = 0
    for tag, values in rows.items():
        vals = np.array([v for _, v in values])
        last = max(last, values[-1][0])
        chunks = np.array_split(vals, min(SERIES_POINTS, len(vals)))
        out[tag] = [round(float(c.mean()), 6) for c in chunks]
    return out, max(1, last // SERIES_POINTS)


def main(argv: list[str] | None = None) -> int:
    directory = Path((argv or sys.argv[1:])[0])
    result = run_job(directory)
    atomic_write_text(directory / "result.json", json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
