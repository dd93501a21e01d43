"""Whether a benchmark run had the machine to itself: the load average, sampled while it ran.

Wall time and steps per second say something about rlctl only when nothing else competed for the cores: the
MuJoCo table of session 8–10 took its timings from runs that shared 2 cores with other runs and with
development work, and they differed by 2× between seeds of one task (issue 23). So every bench run records
the 1-minute load average at its start, every :data:`EVERY_S` seconds and at its end, with the cores it could
use and the processes the bench itself ran, and the reports leave out the timings of runs :func:`timing_issue`
flags. The rule (:data:`RULE`): a run is *contended* when the mean load after its first minute exceeds the
bench's own processes by more than :data:`MARGIN`, or when those processes alone outnumber the cores.

Why this rule: the load average counts runnable threads, the run's own included, so own + 0.5 allows for
the bench's parent and the system's daemons and little else. Samples from the first minute are left out
because the 1-minute average (an exponential average over ~1 min) does not yet count the run itself there;
a run shorter than that is judged on all its samples. The load average is the whole machine's (a VM's, or
a container's host), which is what competes for the cores.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

EVERY_S = 30.0
SETTLE_S = 60.0
MARGIN = 0.5
RULE = (f"a run is contended when the mean 1-minute load average after its first minute exceeds the processes "
        f"the bench itself ran (runs in parallel × the threads and sampler processes of each) by more than "
        f"{MARGIN}, or when those alone outnumber the cores")


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where there is one, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def run_processes(sampler: str, num_workers: int, torch_threads: int) -> int:
    """Threads and processes one training run keeps busy: the learner's torch threads, plus one per sampler
    worker process (``run.sampler=process|ray``)."""
    return max(1, torch_threads) + (num_workers if sampler != "inline" else 0)


class LoadMonitor:
    """Samples ``os.getloadavg()`` from :meth:`start` to :meth:`stop`; :meth:`poll` takes a sample when one is due
    (called by a background thread from :meth:`start_thread`, or by a caller's own loop)."""

    def __init__(self, own_processes: int, every_s: float = EVERY_S,
                 loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg) -> None:
        self.own_processes = own_processes
        self.every_s = every_s
        self._loadavg = loadavg
        self._t0 = time.monotonic()
        self._last = -float("inf")
        self.samples: list[list[float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LoadMonitor:
        self._t0 = time.monotonic()
        self._sample()
        return self

    def start_thread(self) -> LoadMonitor:
        """:meth:`start`, then sample in a daemon thread (for a caller that blocks while the run trains)."""
        self.start()

        def loop() -> None:
            while not self._stop.wait(self.every_s):
                self._sample()

        self._thread = threading.Thread(target=loop, name="bench-load", daemon=True)
        self._thread.start()
        return self

    def poll(self) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        self._last = now
        self.samples.append([round(now - self._t0, 1), round(self._loadavg()[0], 2)])

    def stop(self) -> dict[str, Any]:
        """The last sample and the record a result keeps under ``load``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return {"samples": self.samples, "cpu_count": usable_cores(), "own_processes": self.own_processes,
                "mean": round(settled_mean(self.samples), 2), "max": max(load for _, load in self.samples)}


def settled_mean(samples: list[list[float]]) -> float:
    """Mean load of the samples after the first :data:`SETTLE_S` seconds (all of them for a shorter run)."""
    settled = [load for t, load in samples if t >= SETTLE_S] or [load for _, load in samples]
    return statistics.mean(settled)


def timing_issue(result: dict[str, Any]) -> str | None:
    """Why a result's wall time and SPS are not comparable (None when they are): no load record (a run from
    before the bench kept one), a run resumed after its job was killed, or contended under :data:`RULE`."""
    load = result.get("load")
    if not load or not load.get("samples"):
        return "no load record"
    if load.get("resumed"):
        return "resumed from a checkpoint: its wall time is the last part's"
    own, cores = int(load["own_processes"]), int(load["cpu_count"])
    if own > cores:
        return f"{own} own processes on {cores} cores"
    mean = settled_mean(load["samples"])
    if mean > own + MARGIN:
        return f"load {mean:.2f} with {own} own process(es)"
    return None
