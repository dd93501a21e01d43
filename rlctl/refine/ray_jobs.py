"""Candidates as Ray tasks: each trains on whichever node has a free core, and its files come back to the refine
directory on the driver.

A task carries the candidate's ``job.json`` and program, runs ``python -m rlctl.refine.candidate`` in a scratch
directory on its node (so the sandbox, its limits and one thread per training are as with local processes), and
returns every file the candidate wrote there (``result.json``, ``train.log``, ``sandbox.log``, ``run/``). Nodes
therefore need no shared filesystem, only rlctl installed; ``module:Env-v0`` ids are imported from the driver's
working directory where a node has it (one machine, a shared checkout), else from the node's installed packages.
A candidate whose training fails is a result like any other; a task lost with its node is tried once more, then
recorded as a failed candidate.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlctl.checkpoint import atomic_write_bytes

MAX_RETURN_BYTES = 256 * 2**20
"""a candidate's files larger than this in total are not sent back (the run directory of a normal candidate is a
few MB at most); its result.json always is"""


def _candidate_files(job: dict[str, bytes], cwd: str, nice: int) -> dict[str, bytes]:
    """Run on a Ray worker: write the job, train it in a child process, return what it wrote."""
    with tempfile.TemporaryDirectory(prefix="rlctl-cand-") as tmp:
        root = Path(tmp)
        for name, data in job.items():
            (root / name).write_bytes(data)
        with open(root / "train.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "rlctl.refine.candidate", str(root)], stdout=log,
                                    stderr=subprocess.STDOUT, cwd=cwd if os.path.isdir(cwd) else tmp,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
            try:
                # Ray runs its workers at a lower priority (niceness 15); the candidate trains at the driver's where
                # the node allows it, or a busy machine starves it (importing torch took 85 s instead of a few)
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, proc.pid, nice)
                code = proc.wait()
            finally:
                if proc.poll() is None:  # the task was cancelled (an interrupted refine): the training stops too
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        files: dict[str, bytes] = {}
        total = 0
        for path in sorted(root.rglob("*"), key=lambda p: p.name != "result.json"):  # result.json first
            if path.is_file() and path.name not in job:
                size = path.stat().st_size
                if total + size > MAX_RETURN_BYTES and path.name != "result.json":
                    continue
                files[str(path.relative_to(root))] = path.read_bytes()
                total += size
        files["exit_code"] = str(code).encode()
        return files


def run_on_ray(dirs: list[Path], address: str | None, say: Callable[[str, Path], None],
               done: Callable[[Path, int, float], None]) -> None:
    """Train the candidates in ``dirs`` as Ray tasks on the cluster at ``address`` (none: a private local
    cluster on this machine); ``say(event, dir)`` reports a start, ``done(dir, exit_code, wall_s)`` an end."""
    import time

    if not dirs:
        return
    from rlctl.sampling.ray_actors import connect_ray

    ray, disconnect = connect_ray(address, "rlctl refine --backend ray")
    task = ray.remote(num_cpus=1, max_retries=1)(_candidate_files)
    futures: dict[Any, tuple[Path, float]] = {}
    try:
        for cdir in dirs:
            job = {p.name: p.read_bytes() for p in cdir.iterdir() if p.name in ("job.json", "program.py")}
            futures[task.remote(job, os.getcwd(), os.getpriority(os.PRIO_PROCESS, 0))] = (cdir, time.perf_counter())
            say("training (Ray task)", cdir)
        while futures:
            ready, _ = ray.wait(list(futures), num_returns=1, timeout=1.0)  # returns to Python, so Ctrl-C works
            if not ready:
                continue
            cdir, t0 = futures.pop(ready[0])
            try:
                files = ray.get(ready[0])
            except Exception as exc:  # the task's node died twice, or Ray failed it: a failed candidate
                files = {"train.log": f"the Ray task failed: {type(exc).__name__}: {exc}".encode()[:2000],
                         "exit_code": b"-1"}
            code = int(files.pop("exit_code"))
            for name, data in files.items():
                target = cdir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, lambda fh, data=data: fh.write(data))
            done(cdir, code, time.perf_counter() - t0)
    finally:
        if futures:  # interrupted: stop the unfinished candidates (they train again on resume); a cancelled task
            for future in futures:  # stops its training process before it ends
                ray.cancel(future)
            ray.wait(list(futures), num_returns=len(futures), timeout=30)
        disconnect()

