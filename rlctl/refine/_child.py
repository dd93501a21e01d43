"""The sandbox's child process: it runs one untrusted reward program and nothing else.

Started by :mod:`rlctl.refine.sandbox` as ``python -I _child.py CONFIG`` (by path: no rlctl code and no torch in
this process), it imports numpy, then shuts itself in: a scratch working directory, CPU-time, address-space,
file-size and process limits, privileges dropped to ``nobody`` when started as root, and no new file descriptors
at all (so no file, socket or pipe can be opened). Only then does it read the program, which runs with a
restricted set of builtins and an ``__import__`` that hands out math and numpy alone.

Protocol over stdin/stdout, one message at a time: a 13-byte header (op, n, meta length, payload length), a
JSON ``meta`` and a float64 ``payload``. Nothing the program prints can reach the parent: its stdout is the
log, and the protocol goes over a duplicate of the original stdout.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import json
import os
import resource
import signal
import struct
import sys
import traceback
from typing import Any

HEADER = struct.Struct("<BIII")
OP_LOAD, OP_CALL, OP_EXIT, OP_OK, OP_ERROR = 1, 2, 3, 10, 11
NOBODY = 65534


def main() -> int:
    cfg = json.loads(sys.argv[1])
    import math  # noqa: F401 - imported before the limits: no module file can be opened after them

    import numpy as np
    import numpy.linalg

    for helper in ("numpy._core._methods", "numpy._core._exceptions", "numpy._core._internal"):
        with contextlib.suppress(ImportError):  # what numpy's C code imports lazily, loaded while files open
            importlib.import_module(helper)
    np.seterr(all="ignore")  # non-finite outputs are reported by the output check, not as warnings
    out_fd = os.dup(1)
    os.dup2(2, 1)  # print() and C-level writes go to the log, never into the protocol
    os.chdir(cfg["scratch"])
    _shut_in(cfg)
    program: dict[str, Any] = {}
    while True:
        header = _read(0, HEADER.size)
        if header is None:
            return 0
        op, n, meta_len, payload_len = HEADER.unpack(header)
        meta = json.loads(_read(0, meta_len) or b"{}") if meta_len else {}
        payload = _read(0, payload_len) if payload_len else b""
        if op == OP_EXIT:
            return 0
        try:
            if op == OP_LOAD:
                program = _load(meta, cfg)
                _send(out_fd, OP_OK, 0, {"names": []}, b"")
            elif op == OP_CALL:
                names, out = _call(program, n, payload or b"", cfg)
                _send(out_fd, OP_OK, n, {"names": names}, out.tobytes())
        except BaseException as exc:  # whatever the program raises is a reason for the parent, not a crash
            _send(out_fd, OP_ERROR, n, {"error": _reason(exc, cfg)}, b"")


def _shut_in(cfg: dict[str, Any]) -> None:
    """Limits first (while root may still set them), then the user, then the file descriptors."""
    first_free = _first_free_fd()  # before setuid: /proc/self is root's after it
    vm_kb = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                vm_kb = int(line.split()[1])
    memory = vm_kb * 1024 + cfg["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    signal.signal(signal.SIGXCPU, _out_of_cpu)  # the soft limit interrupts the program with a reason
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_s"], cfg["cpu_s"] + 2))  # the hard one: SIGKILL
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cfg["drop_uid"]:
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no privileges from exec'd setuid files
    except (OSError, AttributeError):
        pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (first_free, first_free))  # open fds stay usable; no new one


def _first_free_fd() -> int:
    """The lowest descriptor number not in use: a new file would get it, so the limit goes there."""
    live = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
            live.add(int(name))
        except OSError:  # the directory listing's own descriptor, closed by now
            pass
    fd = 0
    while fd in live:
        fd += 1
    return fd


class CPUTimeExceeded(BaseException):
    pass


def _out_of_cpu(signum: int, frame: Any) -> None:
    raise CPUTimeExceeded("the program used up its CPU-time limit")


def _load(meta: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    allowed = set(meta["modules"])

    def restricted_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                          level: int = 0) -> Any:
        # numpy's C code imports its own helpers (numpy._core._methods for ndarray.mean) through the calling
        # frame's __import__, i.e. this one: loaded numpy modules are handed out, nothing is ever loaded
        internal = name.startswith("numpy.") and name in sys.modules
        if level or not (name in allowed or internal):
            raise ImportError(f"import of {name!r} is not allowed")
        return sys.modules[name] if fromlist else sys.modules[name.split(".")[0]]

    safe = {name: getattr(builtins, name) for name in meta["builtins"]}
    safe["__import__"] = restricted_import
    namespace: dict[str, Any] = {"__builtins__": safe, "__name__": "reward_program"}
    exec(compile(meta["source"], "reward_program.py", "exec"), namespace)
    fn = namespace.get(meta["function"])
    if not callable(fn):
        raise TypeError(f"{meta['function']} is not a function")
    views = [(name, *meta["layout"][name]) for name in meta["params"]]
    return {"fn": fn, "views": views, "row": meta["row_size"], "max_components": meta["max_components"]}


def _call(program: dict[str, Any], n: int, payload: bytes, cfg: dict[str, Any]) -> tuple[list[str], Any]:
    import numpy as np

    rows = np.frombuffer(payload, dtype=np.float64).reshape(n, program["row"])
    kwargs = {}
    for name, start, size, *shape in program["views"]:
        kwargs[name] = rows[:, start].copy() if not shape else rows[:, start:start + size].reshape(n, *shape).copy()
    result = program["fn"](**kwargs)
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise TypeError(f"compute_reward must return (total, {{name: value}}), not {type(result).__name__}"
                        + (f" of {len(result)}" if isinstance(result, tuple) else ""))
    total, components = result
    if len(components) > program["max_components"]:
        raise ValueError(f"{len(components)} reward components (at most {program['max_components']})")
    out = np.empty((len(components) + 1, n))
    names = []
    for i, (key, value) in enumerate([("the total reward", total), *components.items()]):
        if i and not (isinstance(key, str) and key.isidentifier() and len(key) <= 64):
            raise ValueError(f"component name {str(key)[:40]!r} is not a short identifier")
        what = f"component {key!r}" if i else key
        shape = np.shape(value)
        if shape not in ((), (n,)):
            raise ValueError(f"{what} has shape {shape}, expected ({n},): one value per transition")
        out[i] = value
        if i:
            names.append(key)
    finite = np.isfinite(out)
    if not finite.all():
        i = int(np.argmin(finite.all(axis=1)))
        what = f"component {names[i - 1]!r}" if i else "the total reward"
        raise ValueError(f"{what} is not finite (nan or inf) on {n - int(finite[i].sum())} of {n} transitions")
    return names, out


def _reason(exc: BaseException, cfg: dict[str, Any]) -> str:
    if isinstance(exc, CPUTimeExceeded):
        return f"the program was stopped at its CPU-time limit ({cfg['cpu_s']} s)"
    if isinstance(exc, MemoryError):
        return f"MemoryError: the program went over its memory limit ({cfg['memory_mb']} MiB)"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "reward_program.py"]
    where = f" (line {lines[-1]})" if lines else ""
    return f"{type(exc).__name__}: {str(exc)[:300]}{where}"


def _read(fd: int, size: int) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = os.read(fd, size - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _send(fd: int, op: int, n: int, meta: dict[str, Any], payload: bytes) -> None:
    text = json.dumps(meta).encode()
    data = HEADER.pack(op, n, len(text), len(payload)) + text + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


if __name__ == "__main__":
    sys.exit(main())
