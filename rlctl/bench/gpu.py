"""``rlctl bench gpu`` (``make gpu-check``): the CUDA path's tests, then what the GPU learner buys, in ``gpu.md``.

Three parts, in about 8 minutes on one GPU and 16 cores:

1. ``pytest -m cuda`` (``tests/test_cuda.py``, from a source checkout): the risk points of the CUDA path
   (device identity, compiled and fused Adam state across devices, bf16 autocast, normalizers, RNG state in
   checkpoints, GAE);
2. PPO updates per second on CPU and on the GPU for the MuJoCo MLP (a HalfCheetah-sized rollout: 2048 steps,
   10 epochs of 64-sample minibatches) and the Nature CNN (a Pong-sized one: 8 × 128 frames, 4 epochs of 4
   minibatches), on synthetic data, so only the learner is timed;
3. short training runs with process samplers, overlap and the GPU learner: HalfCheetah at 4, 8 and 16 workers
   and Pong at 8 and 16; their SPS and the learner's idle fraction (time waiting for rollouts ÷ wait + update).

Without CUDA it stops at once with one line and exit status 2: there is nothing to measure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rlctl.errors import UserError

LEARNERS: dict[str, tuple[str, str, int, int, dict[str, Any]]] = {  # env id, preset, steps, envs, overrides
    "mlp": ("HalfCheetah-v5", "cleanrl-continuous", 2048, 1, {}),
    "cnn": ("ALE/Pong-v5", "atari", 128, 8, {}),
}
RUNS = [("HalfCheetah-v5", "cleanrl-continuous", workers, 100_000) for workers in (4, 8, 16)] + \
       [("ALE/Pong-v5", "atari", workers, 50_000) for workers in (8, 16)]


def require_cuda() -> None:
    """UserError (exit 2, one line) unless torch sees a CUDA device."""
    if not torch.cuda.is_available():
        raise UserError(f"no CUDA device: rlctl bench gpu measures the GPU learner and has nothing to run here "
                        f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'})")


def update_rate(kind: str, device: torch.device, updates: int = 3) -> float:
    """Full PPO updates per second of the ``kind`` learner (``mlp`` or ``cnn``) on ``device``, synthetic data;
    one untimed update first (allocations, kernel selection)."""
    from rlctl.envs.make import make_env
    from rlctl.resolve import resolve_config
    from rlctl.runs import build_agent
    from rlctl.spaces import adapter_for_env, rollout_for
    from rlctl.train.learner import Learner

    env_id, preset, steps, envs, overrides = LEARNERS[kind]
    cfg, _ = resolve_config(env_id, preset, {"env": {"num_envs": envs}, "ppo": {"num_steps": steps}, **overrides})
    env = make_env(env_id)
    adapter = adapter_for_env(env)
    env.close()
    agent = build_agent(cfg, adapter, device)
    learner = Learner(cfg, agent)
    rollout = rollout_for(adapter, steps, envs, device)
    if rollout.obs.dtype == torch.uint8:
        rollout.obs.random_(0, 256)
    else:
        rollout.obs.normal_()
    if rollout.actions.dtype == torch.int64:
        rollout.actions.random_(0, adapter.action.nvec[0] if adapter.action.nvec else 2)
    else:
        rollout.actions.normal_()
    for field in (rollout.rewards, rollout.values, rollout.next_values, rollout.logprobs):
        field.normal_()
    learner.update(rollout)
    _sync(device)
    start = time.perf_counter()
    for _ in range(updates):
        learner.update(rollout)
    _sync(device)
    return updates / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_run(env_id: str, preset: str, workers: int, steps: int, device: str) -> dict[str, Any]:
    """One ``rlctl train`` with process samplers and overlap; its SPS and the learner's idle fraction."""
    from rlctl.logger import read_metrics

    envs = workers * (1 if env_id.startswith("ALE/") else 2)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "rlctl.cli", "train", "--env", env_id, "--preset", preset, "--steps", str(steps),
               "--num-envs", str(envs), "--backend", "process", "--num-workers", str(workers), "--device", device,
               "--set", "run.overlap=true", "--set", "run.eval_episodes=0", "--run-dir", f"{tmp}/run", "--quiet"]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            return {"env": env_id, "workers": workers, "error": done.stderr.strip().splitlines()[-1:]}
        rows = read_metrics(Path(tmp) / "run" / "metrics.jsonl")
    last = {r["tag"]: r["value"] for r in rows}
    wait = sum(r["value"] for r in rows if r["tag"] == "perf/learner_wait_s")
    update = sum(r["value"] for r in rows if r["tag"] == "perf/learner_update_s")
    return {"env": env_id, "workers": workers, "envs": envs, "steps": steps, "device": device, "wall_s": wall,
            "sps": last.get("charts/SPS"), "learner_idle": wait / (wait + update) if wait + update else None}


def run_tests(repo: Path) -> dict[str, Any]:
    """``pytest -m cuda`` in a source checkout (skipped when the tests are not there, e.g. a wheel install)."""
    tests = repo / "tests" / "test_cuda.py"
    if not tests.is_file():
        return {"ran": False, "why": "tests/test_cuda.py not found (not a source checkout)"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", str(tests)], cwd=repo,
                          capture_output=True, text=True)
    tail = (done.stdout.strip().splitlines() or [""])[-1]
    return {"ran": True, "passed": done.returncode == 0, "summary": tail,
            "output": done.stdout[-4000:] if done.returncode else ""}


def gpu_check(out: Path, repo: Path, quick: bool = False) -> dict[str, Any]:
    """All three parts; writes ``out/gpu.md`` and ``out/gpu.json``."""
    require_cuda()
    name = torch.cuda.get_device_name(0)
    result: dict[str, Any] = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
                              "tests": run_tests(repo), "learners": {}, "runs": []}
    cuda = torch.device("cuda", torch.cuda.current_device())
    for kind in LEARNERS:
        cpu_rate = update_rate(kind, torch.device("cpu"), updates=1 if kind == "cnn" else 3)
        gpu_rate = update_rate(kind, cuda, updates=5)
        result["learners"][kind] = {"cpu_updates_per_s": cpu_rate, "cuda_updates_per_s": gpu_rate}
    for env_id, preset, workers, steps in RUNS[:2] if quick else RUNS:
        result["runs"].append(training_run(env_id, preset, workers, steps, "cuda"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu.md").write_text(report(result))
    return result


def report(result: dict[str, Any]) -> str:
    tests = result["tests"]
    lines = ["# The GPU learner", "",
             f"`rlctl bench gpu` on {result['device']} (torch {result['torch']}, CUDA {result['cuda']}).", "",
             "## CUDA tests", "",
             f"`pytest -m cuda tests/test_cuda.py`: {tests['summary']}" if tests["ran"] else f"not run: {tests['why']}",
             "", "## Learner updates per second (synthetic rollouts, one full PPO update each)", "",
             "| network | rollout | CPU | GPU | GPU ÷ CPU |", "|---|---|---:|---:|---:|"]
    for kind, rates in result["learners"].items():
        env_id, preset, steps, envs, _ = LEARNERS[kind]
        lines.append(f"| {kind} ({env_id}, preset {preset}) | {steps} × {envs} | {rates['cpu_updates_per_s']:.2f} | "
                     f"{rates['cuda_updates_per_s']:.2f} | "
                     f"{rates['cuda_updates_per_s'] / rates['cpu_updates_per_s']:.1f}× |")
    lines += ["", "## Training runs: process samplers, overlap, GPU learner", "",
              "| env | workers | envs | steps | SPS (last update) | learner idle | wall (s) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for run in result["runs"]:
        if "error" in run:
            lines.append(f"| {run['env']} | {run['workers']} | — | — | error: {' '.join(run['error'])} | — | — |")
            continue
        idle = f"{run['learner_idle']:.0%}" if run["learner_idle"] is not None else "—"
        lines.append(f"| {run['env']} | {run['workers']} | {run['envs']} | {run['steps']} | {run['sps']:.0f} | {idle} "
                     f"| {run['wall_s']:.0f} |")
    lines += ["", "A learner idle most of the time is not the bottleneck: the samplers are.", ""]
    return "\n".join(lines)
