"""Scalars to TensorBoard event files and to ``metrics.jsonl``, plus terminal progress.

Tags follow CleanRL (``charts/episodic_return``, ``losses/approx_kl``, …) so dashboards and Open RL
Benchmark tooling read rlctl runs unchanged. ``metrics.jsonl`` holds the same scalars, one
``{"step", "tag", "value", "time"}`` object per line, for scripts.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rlctl.checkpoint import atomic_write_bytes
from rlctl.rundir import METRICS


class MetricsLogger:
    """Writes scalars to TensorBoard and JSONL. On resume, both drop what came after the checkpoint."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / METRICS
        if resume_step is not None and self.path.exists():
            _truncate_jsonl(self.path, resume_step)
        # purge_step makes TensorBoard drop events logged after the checkpoint by the killed process,
        # so a resumed run is one clean curve in the same run directory.
        purge = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge)
        self._jsonl: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def scalar(self, tag: str, value: float, step: int) -> None:
        value = float(value)
        self.writer.add_scalar(tag, value, step)
        record = {"step": step, "tag": tag, "value": value if math.isfinite(value) else None, "time": time.time()}
        self._jsonl.write(json.dumps(record) + "\n")

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text)

    def flush(self) -> None:
        self.writer.flush()
        self._jsonl.flush()
        os.fsync(self._jsonl.fileno())

    def close(self) -> None:
        self.flush()
        self.writer.close()
        self._jsonl.close()


def _truncate_jsonl(path: Path, last_step: int) -> None:
    keep: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                if json.loads(line)["step"] <= last_step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line torn by a kill
    atomic_write_bytes(path, lambda out: out.write("".join(keep).encode()))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (torn trailing lines skipped)."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """A tqdm bar on a terminal; plain periodic lines (every ``interval`` s) otherwise."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, interval: float = 10.0,
                 stream: TextIO | None = None) -> None:
        self.total, self.start_step = total, start
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.t0 = time.perf_counter()
        self.last_print = 0.0
        self.bar: Any = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", unit_scale=True, file=self.stream,
                            dynamic_ncols=True)

    def update(self, step: int, recent_return: float | None) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        sps = (step - self.start_step) / max(elapsed, 1e-9)
        ret = "n/a" if recent_return is None else f"{recent_return:.1f}"
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(f"SPS={sps:,.0f} return={ret}", refresh=True)
            return
        if elapsed - self.last_print >= self.interval or step >= self.total:
            self.last_print = elapsed
            eta = (self.total - step) / max(sps, 1e-9)
            pct = 100.0 * step / self.total
            print(f"step {step:,}/{self.total:,} ({pct:.0f}%) | SPS {sps:,.0f} | return {ret} | "
                  f"ETA {_fmt_duration(eta)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
