"""The dynamic layer: a generated program runs in its own process, shut in, and is called over a pipe.

:mod:`rlctl.refine.static` refuses what it can see; this contains what it cannot. Each program gets a child
process (``rlctl/refine/_child.py``, started by path under ``python -I``) that, before it reads the program:

- runs in fresh network and PID namespaces (``unshare --net --pid --fork --kill-child``) when the kernel and
  the user allow it: no network, and every process it forks dies with it;
- sets ``RLIMIT_CPU`` (a CPU-time budget for its whole life), ``RLIMIT_AS`` (memory), ``RLIMIT_FSIZE``,
  ``RLIMIT_CORE`` and, when started as root, drops to ``nobody`` with ``RLIMIT_NPROC`` (fork bombs);
- lowers ``RLIMIT_NOFILE`` to the descriptors it already holds: no file, socket or pipe can be opened;
- works in a scratch directory that is removed afterwards.

The parent waits for every answer with a wall-clock deadline and kills the process group on timeout, reads
only a bounded header, JSON and float64 payload back (never a pickle), and checks every value is finite and one
per transition. :func:`isolation` says which of these this machine grants.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlctl.errors import UserError
from rlctl.refine.static import ALLOWED_MODULES, FUNCTION, SAFE_BUILTINS

HEADER = struct.Struct("<BIII")
OP_LOAD, OP_CALL, OP_EXIT, OP_OK, OP_ERROR = 1, 2, 3, 10, 11
CHILD = Path(__file__).with_name("_child.py")
MAX_META = 64 * 1024


class SandboxError(UserError):
    """A program that failed or was killed in the sandbox; the message is one line, fit for the LLM."""


@dataclass(frozen=True)
class Limits:
    """What one program's process may use."""

    call_timeout_s: float = 2.0
    """wall clock per call (one step, or one batch of recorded states)"""
    start_timeout_s: float = 20.0
    """wall clock to start the process and run the program's top level"""
    cpu_s: int = 900
    """CPU seconds over the process's life (RLIMIT_CPU): a training's worth of calls"""
    memory_mb: int = 1024
    """address space the program may add to the interpreter's (RLIMIT_AS)"""
    nproc: int = 16
    """processes and threads of the sandbox user (RLIMIT_NPROC; applied when the child drops to nobody)"""
    max_components: int = 32


@dataclass(frozen=True)
class Isolation:
    prefix: tuple[str, ...]
    drop_uid: bool
    namespaces: str | None

    def describe(self, limits: Limits) -> str:
        parts = [f"own process{' as nobody' if self.drop_uid else ''}",
                 f"{self.namespaces}" if self.namespaces else "NO network or PID namespace (unshare unavailable)",
                 f"{limits.call_timeout_s:g} s per call", f"{limits.cpu_s} CPU s", f"{limits.memory_mb} MiB",
                 "no new file descriptors", "scratch directory"]
        if self.drop_uid:
            parts.insert(-2, f"{limits.nproc} processes")
        return ", ".join(parts)


@functools.cache
def isolation() -> Isolation:
    """The strongest isolation this machine grants, probed once: namespaces as root, else in a user namespace."""
    root = os.geteuid() == 0
    tool = shutil.which("unshare")
    tries: list[tuple[list[str], str, bool]] = []
    if tool and os.environ.get("RLCTL_SANDBOX_NAMESPACES", "1") != "0":
        if root:
            tries.append(([tool, "--net", "--pid", "--fork", "--kill-child"], "network and PID namespaces", True))
        tries.append(([tool, "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"],
                      "user, network and PID namespaces", False))
    for prefix, what, drop in tries:
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return Isolation(tuple(prefix), drop, what)
        except (OSError, subprocess.TimeoutExpired):
            continue
    return Isolation((), root, None)


class Sandbox:
    """One program in one shut-in process; :meth:`call` sends packed rows and returns (total, components)."""

    def __init__(self, source: str, layout: dict[str, list[int]], params: list[str], row_size: int,
                 limits: Limits | None = None, log_path: Path | None = None) -> None:
        self.source, self.layout, self.params, self.row_size = source, layout, params, row_size
        self.limits = limits or Limits()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._scratch: str | None = None
        self._buf = bytearray()
        self.calls = 0

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Sandbox:
        iso = isolation()
        self._scratch = tempfile.mkdtemp(prefix="rlctl-sandbox-")
        if iso.drop_uid:
            os.chown(self._scratch, 65534, 65534)
        lim = self.limits
        cfg = {"scratch": self._scratch, "cpu_s": lim.cpu_s, "memory_mb": lim.memory_mb, "nproc": lim.nproc,
               "drop_uid": iso.drop_uid}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            self._proc = subprocess.Popen([*iso.prefix, sys.executable, "-I", str(CHILD), json.dumps(cfg)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                          cwd=self._scratch, env=env, start_new_session=True,
                                          preexec_fn=_die_with_parent)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        assert self._proc.stdin is not None
        os.set_blocking(self._proc.stdin.fileno(), False)
        meta = {"source": self.source, "function": FUNCTION, "params": self.params, "layout": self.layout,
                "row_size": self.row_size, "builtins": list(SAFE_BUILTINS), "modules": list(ALLOWED_MODULES),
                "max_components": lim.max_components}
        self._exchange(OP_LOAD, 0, json.dumps(meta).encode(), b"", lim.start_timeout_s)
        return self

    def call(self, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``rows [n, row_size]`` → ``total [n]`` and ``{name: [n]}``, checked finite and one per row."""
        if self._proc is None:
            raise SandboxError("the sandbox is not running")
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        n = rows.shape[0]
        names, payload = self._exchange(OP_CALL, n, b"", rows.tobytes(), self.limits.call_timeout_s)
        values = np.frombuffer(payload, dtype=np.float64).reshape(len(names) + 1, n)
        if not np.all(np.isfinite(values)):  # the child checks this too; the parent trusts no child
            self.close()
            raise SandboxError("the sandbox returned non-finite values")
        self.calls += 1
        return values[0], dict(zip(names, values[1:], strict=True))

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __del__(self) -> None:
        self.close()

    # -- the pipe ------------------------------------------------------------------------------------------

    def _exchange(self, op: int, n: int, meta: bytes, payload: bytes, timeout: float) -> tuple[list[str], bytes]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout
        try:
            self._write(proc.stdin.fileno(), HEADER.pack(op, n, len(meta), len(payload)) + meta + payload, deadline)
            rop, rn, meta_len, payload_len = HEADER.unpack(self._read(proc.stdout.fileno(), HEADER.size, deadline))
            if meta_len > MAX_META:
                raise SandboxError(f"the sandbox sent {meta_len} bytes of metadata (at most {MAX_META})")
            reply = json.loads(self._read(proc.stdout.fileno(), meta_len, deadline)) if meta_len else {}
            if rop == OP_ERROR:
                raise SandboxError(str(reply.get("error", "unknown error"))[:400])
            names = reply.get("names", [])
            if (rop != OP_OK or rn != n or not isinstance(names, list) or len(names) > self.limits.max_components
                    or not all(isinstance(s, str) and s.isidentifier() for s in names)
                    or payload_len != 8 * n * (len(names) + 1) * (op == OP_CALL)):
                raise SandboxError("the sandbox broke the protocol")
            return names, self._read(proc.stdout.fileno(), payload_len, deadline) if payload_len else b""
        except SandboxError as exc:
            if "broke the protocol" in str(exc) or "metadata" in str(exc):
                self.close()
            raise
        except (TimeoutError, EOFError, OSError, ValueError, struct.error) as exc:
            reason = self._death(exc, timeout)
            self.close()
            raise SandboxError(reason) from None

    def _death(self, exc: BaseException, timeout: float) -> str:
        """Why the child stopped answering, in one line."""
        proc = self._proc
        if isinstance(exc, TimeoutError):
            return f"the program did not answer within {timeout:g} s and was killed (wall-clock limit)"
        try:
            code = proc.wait(timeout=5) if proc is not None else None
        except subprocess.TimeoutExpired:
            code = None
        sig = -code if code is not None and code < 0 else (code - 128 if code is not None and code > 128 else None)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return f"the program was killed ({signal.Signals(sig).name}: CPU-time limit of {self.limits.cpu_s} s)"
        if sig is not None:
            return f"the program's process died ({signal.Signals(sig).name})"
        return f"the program's process exited (status {code}){': ' + self._log_tail() if self._log_tail() else ''}"

    def _log_tail(self) -> str:
        if self.log_path is None or not Path(self.log_path).exists():
            return ""
        lines = Path(self.log_path).read_text(errors="replace").strip().splitlines()
        return lines[-1][:200] if lines else ""

    @staticmethod
    def _write(fd: int, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
                continue
            except BlockingIOError:  # the pipe is full: the child is not reading (yet)
                pass
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise TimeoutError

    def _read(self, fd: int, size: int, deadline: float) -> bytes:
        """``size`` bytes, from what earlier reads buffered first (one read often holds a whole reply)."""
        buf = self._buf
        while len(buf) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, max(size - len(buf), 1 << 16))
            if not chunk:
                raise EOFError
            buf += chunk
        out = bytes(buf[:size])
        del buf[:size]
        return out


def _die_with_parent() -> None:
    """In the forked child before exec: SIGKILL when the process that started the sandbox dies (a killed
    candidate must not leave its program running)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def describe_isolation(limits: Limits | None = None) -> str:
    return isolation().describe(limits or Limits())

