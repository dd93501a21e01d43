"""Resumable benchmark matrices: one process per job, claimed with a lock file, finished once its result exists.

``bench returns``, ``bench suite`` and ``bench uav`` run their matrices through :func:`run_claimed`, so an
interrupted matrix resumes (a job whose training was killed goes on from its checkpoint where the job says how,
:func:`resume_training`), two invocations (or machines sharing the directory) split the remaining work,
and a job whose lock was left by a killed process on this host is claimed again. :func:`prepare_matrix`
builds the bench-worker jobs and keeps the finished results in step with the current presets. Each job's
load average is sampled while it runs (:mod:`rlctl.bench.load`): the bench worker records its own, and
:func:`run_claimed` hands its samples to a job's ``on_success`` for jobs that are not bench workers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlctl.config import Config


def run_matrix(todo: list[tuple[str, str, int]], preset: str, steps: int, jobs: int, runs: Path,
               reuse_from: Sequence[Path] = ()) -> None:
    """Run ``(lib, env, seed)`` bench-worker jobs, each writing one result JSON (see :func:`run_claimed`)."""
    run_claimed(prepare_matrix(todo, preset, steps, runs, reuse_from, parallel=jobs), jobs)


def prepare_matrix(todo: list[tuple[str, str, int]], preset: str, steps: int, runs: Path,
                   reuse_from: Sequence[Path] = (), set_aside: bool = True, parallel: int = 1) -> list[ClaimedJob]:
    """The jobs of a matrix, after bringing ``runs`` up to date with the current presets.

    ``preset="-"`` gives each env its own preset. A finished result whose config fingerprint differs
    from the current resolved config (a preset was re-tuned) is moved to ``runs/stale/`` and run again.
    A missing result is copied from a directory in ``reuse_from`` that holds the same job with the same
    fingerprint (a screen run of the preset a task has since adopted), instead of being trained again.
    ``set_aside=False`` (a report) moves only stale results of this budget: one trained at another
    budget belongs to another matrix, and the report filters it out itself. ``parallel`` (the matrix's
    ``--jobs``) goes to each worker, whose load record counts that many runs as its own.
    """
    from rlctl.bench.worker import fingerprint, result_fingerprint, worker_config

    runs.mkdir(parents=True, exist_ok=True)
    claimed = []
    for lib, env, seed in todo:
        result = runs / f"{lib}__{env.replace('/', '_')}__s{seed}.json"
        expected = fingerprint(worker_config(lib, env, preset, steps, seed, 1)[0])
        if result.exists():
            data = json.loads(result.read_text())
            found = result_fingerprint(data) or expected  # results from before fingerprints: kept
            if found != expected and (set_aside or data.get("budget") == steps):  # the preset changed since
                stale = runs / "stale" / f"{result.stem}__{found}.json"
                stale.parent.mkdir(exist_ok=True)
                os.replace(result, stale)
                print(f"{result.name} was trained with another config: moved to {stale}", flush=True)
        for twin in (other / result.name for other in reuse_from):
            if result.exists() or not twin.exists():
                continue
            adopted = json.loads(twin.read_text())
            if result_fingerprint(adopted) == expected:
                adopted.update({"preset": preset, "reused_from": str(twin)})
                result.write_text(json.dumps(adopted))
                print(f"{result.name}: the same run with the same config is in {twin.parent}: reused", flush=True)
        cmd = [sys.executable, "-m", "rlctl.bench.worker", lib, env, preset, str(steps), str(seed), "1", str(result),
               "--parallel", str(parallel)]
        claimed.append(ClaimedJob(f"{lib} {env} seed {seed}", cmd, result, result.with_suffix(".lock"),
                                  result.with_suffix(".log")))
    return claimed


@dataclass
class ClaimedJob:
    """One process of a benchmark matrix; finished once ``done`` exists."""

    name: str
    cmd: list[str]
    done: Path
    lock: Path
    log: Path
    on_success: Callable[[float, dict[str, Any]], None] | None = None
    """called with the wall seconds and the load record (:meth:`rlctl.bench.load.LoadMonitor.stop`) when the
    process exits 0 (to write ``done`` if the process does not)"""
    own_processes: int = 1
    """threads and processes the job keeps busy (:func:`rlctl.bench.load.run_processes`)"""
    resume: Callable[[], list[str] | None] | None = None
    """asked when the job starts: the command that continues what a killed process of the job left (its
    checkpoint), or None to run ``cmd`` from the start (:func:`resume_training`)"""


def train_job(name: str, env_id: str, sets: list[str], run_dir: Path, done: Path, meta: Path,
              on_success: Callable[[float, dict[str, Any]], None] | None = None,
              cfg: Config | None = None) -> ClaimedJob:
    """The job ``rlctl train --env ENV_ID --set …`` into ``run_dir``, finished once ``done`` exists, with its lock
    and log in ``meta``; a killed one goes on from its checkpoint (:func:`resume_training`). ``cfg``: the config
    those arguments resolve to, for a caller that has it already."""
    from rlctl.bench.load import run_processes
    from rlctl.resolve import resolve_config

    if cfg is None:
        cfg = resolve_config(env_id, set_items=sets)[0]
    cmd = [sys.executable, "-m", "rlctl.cli", "train", "--env", env_id, "--run-dir", str(run_dir), "--force", "--quiet",
           *(arg for item in sets for arg in ("--set", item))]
    return ClaimedJob(name, cmd, done, meta / f"{name}.lock", meta / f"{name}.log", on_success,
                      run_processes(cfg.run.sampler, cfg.run.num_workers, cfg.run.torch_threads),
                      resume_training(run_dir, cfg))


def resume_training(run_dir: Path, cfg: Config) -> Callable[[], list[str] | None]:
    """:attr:`ClaimedJob.resume` for a job that is one ``rlctl train`` into ``run_dir`` with config ``cfg``.

    A killed job's run goes on from its last checkpoint (``rlctl train --resume``: bit-identical to an
    uninterrupted run, less than ``run.checkpoint_every`` steps redone) when its saved config is ``cfg``; one
    trained with another config (the bench changed since) starts over.
    """
    def command() -> list[str] | None:
        from rlctl.runs import can_resume

        if not can_resume(run_dir, cfg):
            return None
        return [sys.executable, "-m", "rlctl.cli", "train", "--resume", str(run_dir), "--quiet"]

    return command


def run_claimed(jobs: list[ClaimedJob], parallel: int) -> None:
    """Run ``jobs``, ``parallel`` at a time, skipping finished ones and claiming each with a lock file.

    So an interrupted matrix resumes, and several invocations (or machines sharing the directory)
    split the remaining work.
    """
    from rlctl.bench.load import LoadMonitor

    pending = list(jobs)
    active: list[tuple[subprocess.Popen[bytes], ClaimedJob, float, LoadMonitor, bool]] = []
    while pending or active:
        while pending and len(active) < parallel:
            job = pending.pop(0)
            if job.done.exists():
                continue
            if job.lock.exists() and _lock_is_stale(job.lock):
                print(f"reclaiming {job.name}: its lock's process on this host is gone", flush=True)
                job.lock.unlink(missing_ok=True)
            try:  # claim the job; another `bench` process may be working through the same list
                fd = os.open(job.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())
                os.close(fd)
            except FileExistsError:
                continue
            resume = job.resume() if job.resume is not None else None
            log = open(job.log, "ab" if resume else "wb")  # noqa: SIM115 - closed with the process
            print(f"resume {job.name} from its checkpoint" if resume else f"start {job.name}", flush=True)
            monitor = LoadMonitor(parallel * job.own_processes).start()
            active.append((subprocess.Popen(resume or job.cmd, stdout=log, stderr=subprocess.STDOUT), job,
                           time.perf_counter(), monitor, resume is not None))
        time.sleep(2.0)
        for item in list(active):
            proc, job, t0, monitor, resumed = item
            if proc.poll() is None:
                monitor.poll()
                continue
            active.remove(item)
            job.lock.unlink(missing_ok=True)
            if proc.returncode == 0 and job.on_success is not None:
                # a resumed job's wall time covers only its last part: the load record says so (timing_issue)
                job.on_success(time.perf_counter() - t0, monitor.stop() | ({"resumed": True} if resumed else {}))
            status = "done" if proc.returncode == 0 else f"FAILED (see {job.log})"
            print(f"{status}: {job.name}", flush=True)


def _lock_is_stale(lock: Path) -> bool:
    """A lock left by a ``bench`` process on this host that no longer runs (killed, machine restarted).

    Locks from other hosts are kept: a machine sharing the directory may still be working on the job.
    """
    try:
        host, _, pid = lock.read_text().strip().rpartition(" ")
        pid_n = int(pid)
    except (OSError, ValueError):
        return False
    if host and host != socket.gethostname():
        return False
    try:
        os.kill(pid_n, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
