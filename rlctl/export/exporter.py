"""Export a trained policy for on-board inference: ONNX, TorchScript, or a plain-NumPy weight file.

What gets exported is :meth:`ActorCritic.forward`: raw observation → observation normalization (the
running statistics are baked in as constants) → actor mean / argmax → clip to the action bounds. The
deterministic action, never a sample: a controller should not need the torch RNG to act.

Every export is verified before it is written: the exported model runs (through onnxruntime, a
reloaded TorchScript module, or :class:`NumpyPolicy`) on a seeded batch drawn from the normalizer's
statistics plus extreme values that exercise the clipping, and must match ``agent(obs)`` within
:data:`TOLERANCE`. Files are written atomically and the ``policy.json`` sidecar last, so a directory
with a sidecar holds a complete, verified export.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlctl import __version__
from rlctl.agents.policy import ActorCritic
from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.checkpoint import atomic_write_bytes
from rlctl.errors import UserError
from rlctl.export.numpy_policy import NORMALIZER_EPS, NumpyPolicy

FORMATS = ("onnx", "torchscript", "numpy")
MODEL_FILES = {"onnx": "policy.onnx", "torchscript": "policy.pt", "numpy": "policy.npz"}
SIDECAR = "policy.json"
TOLERANCE = 1e-5
ONNX_OPSET = 18  # the lowest opset the torch.export-based exporter emits; ORT ≥ 1.14 runs it
INPUT_NAME = "obs"
OUTPUT_NAME = "action"



class ExportMismatchError(UserError):
    """The exported model disagrees with the torch policy by more than :data:`TOLERANCE`.

    A ``UserError`` so the CLI reports it in one line; nothing is written when it is raised.
    """

    def __init__(self, message: str, max_abs_diff: float) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def _require_onnx() -> tuple[Any, Any]:
    """Import onnx and onnxruntime at call time, so a missing extra is one clear error (and testable by
    putting ``None`` in ``sys.modules``). torch's exporter also needs onnxscript."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401 - torch.onnx.export(dynamo=True) imports it; fail here, clearly
    except ImportError as exc:
        raise UserError(f"ONNX export needs onnx, onnxruntime and onnxscript ({exc}); "
                        "pip install 'rlctl[export]'") from None
    return onnx, onnxruntime


def verification_obs(agent: ActorCritic | RecurrentActorCritic, n: int = 256, seed: int = 0) -> np.ndarray:
    """``[n + extremes, obs_dim]`` float32 observations: ``n`` drawn around the normalizer's statistics
    (out to 4 std) plus rows far outside them, so the obs clip and the action clip are both exercised."""
    mean = agent.obs_rms.mean.detach().cpu().numpy().astype(np.float64)
    std = np.sqrt(agent.obs_rms.var.detach().cpu().numpy().astype(np.float64))
    dim = mean.shape[0]
    rng = np.random.default_rng(seed)
    typical = mean + std * rng.standard_normal((n, dim)) * 1.5
    beyond = float(agent.clip_obs) + 1.0
    signs = rng.choice([-1.0, 1.0], size=(8, dim))
    extreme = np.concatenate([
        mean + std * beyond * signs[:4],  # just outside the obs clip
        mean + std * 1e3 * signs[4:],  # far outside
        np.full((1, dim), 1e4), np.full((1, dim), -1e4), np.zeros((1, dim)), mean[None, :],
    ])
    return np.concatenate([typical, extreme]).astype(np.float32)


def _max_abs_diff(got: np.ndarray, want: np.ndarray, what: str) -> float:
    if got.shape != want.shape:
        raise ExportMismatchError(f"{what} returned shape {got.shape}, torch {want.shape}", float("inf"))
    if np.issubdtype(want.dtype, np.integer) != np.issubdtype(got.dtype, np.integer):
        raise ExportMismatchError(f"{what} returned {got.dtype} actions, torch {want.dtype}", float("inf"))
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence the exporters' progress prints, deprecation notes and torchvision warnings; errors still raise."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated")
        warnings.filterwarnings("ignore", message=r".*treespec", category=FutureWarning)
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _onnx_bytes(agent: ActorCritic, example: torch.Tensor) -> tuple[bytes, Callable[[np.ndarray], np.ndarray], str]:
    onnx, ort = _require_onnx()
    with _quiet_exporters():
        program = torch.onnx.export(
            agent, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=ONNX_OPSET, dynamo=True, verbose=False,
        )
    assert program is not None
    proto = program.model_proto
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - a torch exporter bug
        raise ExportMismatchError(f"onnx.checker rejected the exported graph: {exc}", float("inf")) from None
    data: bytes = proto.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the verification batch is tiny; threads only add contention
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def run(obs: np.ndarray) -> np.ndarray:
        return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: obs})[0])

    return data, run, f"onnxruntime {ort.__version__}"


def _torchscript_bytes(agent: ActorCritic, example: torch.Tensor) -> tuple[bytes, Callable[[np.ndarray], np.ndarray],
                                                                           str]:
    # Tracing records forward's ops for this module's configuration (the action kind, bounds and
    # normalization flag are Python branches); freezing inlines weights and buffers as constants.
    # torch.jit.optimize_for_inference is left out: it neither breaks nor helps these MLPs (same outputs,
    # 13-15 µs per batch-1 call either way for 64x64 on CPU) and its rewrites are backend-specific.
    with _quiet_exporters():
        traced = torch.jit.trace(agent, (example,), check_trace=True)
        frozen = torch.jit.freeze(traced.eval())
        buf = io.BytesIO()
        torch.jit.save(frozen, buf)
        data = buf.getvalue()
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")

    def run(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(loaded(torch.from_numpy(obs)).numpy())

    return data, run, f"torch.jit {torch.__version__}"


def _numpy_bytes(agent: ActorCritic) -> tuple[bytes, Callable[[np.ndarray], np.ndarray], str]:
    data = NumpyPolicy.from_agent(agent).to_npz_bytes()
    loaded = NumpyPolicy.load(io.BytesIO(data))  # verify what was serialized, not the in-memory copy
    return data, loaded, f"numpy {np.__version__}"


def _git_sha() -> str | None:
    """The commit of the rlctl source tree, when it is a git checkout and git exists."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = proc.stdout.strip()
    return sha if proc.returncode == 0 and sha else None


def control_info(env_id: str, kwargs: dict[str, Any] | None = None,
                 max_episode_steps: int | None = None) -> dict[str, Any] | None:
    """Control rate of the env, when it says: ``ctrl_hz`` on ``env.unwrapped`` (robot envs), else ``1 / dt``
    (MuJoCo and some classic-control envs). ``None`` when the env exposes neither or cannot be built."""
    try:
        from rlctl.envs.ids import find_wrapper
        from rlctl.envs.make import make_env

        env = make_env(env_id, kwargs, max_episode_steps)
    except Exception:  # the export does not depend on it; load_policy already built this env once
        return None
    try:
        unwrapped = env.unwrapped
        ctrl_hz = getattr(unwrapped, "ctrl_hz", None)
        dt = getattr(unwrapped, "dt", None)
        info: dict[str, Any] = {}
        if isinstance(dt, (int, float)) and dt > 0:
            info["dt"] = float(dt)
        if isinstance(ctrl_hz, (int, float)) and ctrl_hz > 0:
            info["ctrl_hz"], info["source"] = float(ctrl_hz), "env.unwrapped.ctrl_hz"
        elif "dt" in info:
            info["ctrl_hz"], info["source"] = 1.0 / info["dt"], "1 / env.unwrapped.dt"
        if env.spec is not None and env.spec.max_episode_steps is not None:
            info["max_episode_steps"] = int(env.spec.max_episode_steps)
        slices = getattr(unwrapped, "obs_slices", None)
        if isinstance(slices, dict):  # what on-board code must assemble, part by part
            info["observation_layout"] = {k: [v.start, v.stop] for k, v in slices.items()}
        from rlctl.envs.uav.integral import TargetErrorIntegral

        integral = find_wrapper(env, TargetErrorIntegral)
        if integral is not None:  # state on-board code must keep
            info["error_integral"] = integral.describe()
        from rlctl.envs.uav.latency import CommandHistory

        history = find_wrapper(env, CommandHistory)
        if history is not None:
            info["command_history"] = history.describe()
        if kwargs:
            info["env_kwargs"] = dict(kwargs)
        return info or None
    finally:
        env.close()


def _sidecar(agent: ActorCritic | RecurrentActorCritic, adapter: Any, cfg: Any, fmt: str, ckpt_path: Path | None,
             model: bytes, verification: dict[str, Any]) -> dict[str, Any]:
    spec = agent.action
    obs_space, action_space = getattr(adapter, "obs_space", None), getattr(adapter, "action_space", None)
    obs_shape = getattr(obs_space, "shape", None)
    bounded = spec.kind == "continuous" and bool(spec.low)
    action: dict[str, Any] = {
        "kind": spec.kind, "dim": spec.dim, "space": str(action_space) if action_space is not None else None,
        "dtype": "float32" if spec.kind == "continuous" else "int64",
        "low": list(spec.low) if bounded else None, "high": list(spec.high) if bounded else None,
        "clipped_to_bounds": bounded,
    }
    if spec.kind != "continuous":
        action["nvec"] = list(spec.nvec)
        start = getattr(action_space, "start", None)  # add this to the index to get the env's action
        action["start"] = np.asarray(start).reshape(-1).tolist() if start is not None else None
    env_id = cfg.env.id if cfg is not None else None
    return {
        "format": fmt, "file": MODEL_FILES[fmt], "sha256": hashlib.sha256(model).hexdigest(),
        "rlctl_version": __version__, "git_sha": _git_sha(), "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "checkpoint": str(ckpt_path) if ckpt_path else None,
        "env_id": env_id,
        "io": {"input": INPUT_NAME, "input_shape": ["batch", agent.obs_dim], "input_dtype": "float32",
               "output": OUTPUT_NAME, "output_shape": ["batch", spec.dim], "output_dtype": action["dtype"],
               "opset": ONNX_OPSET if fmt == "onnx" else None,
               "note": "input is the raw observation flattened to obs.dim floats (one-hot for a Discrete space); "
                       "normalization and action clipping are inside the model; the action is deterministic"},
        "observation": {"dim": agent.obs_dim, "space": str(obs_space) if obs_space is not None else None,
                        "shape": list(obs_shape) if obs_shape is not None else None},
        "action": action,
        "control": control_info(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps) if cfg is not None else None,
        "normalizer": {"enabled": bool(agent.normalize_inputs), "clip": float(agent.clip_obs), "eps": NORMALIZER_EPS,
                       "mean": agent.obs_rms.mean.detach().cpu().double().tolist(),
                       "var": agent.obs_rms.var.detach().cpu().double().tolist(),
                       "count": float(agent.obs_rms.count.item())},
        "policy": {"hidden_sizes": list(cfg.policy.hidden_sizes), "activation": cfg.policy.activation}
        if cfg is not None else None,
        "verification": verification,
    }


def _check_out_dir(out_dir: Path, force: bool) -> list[Path]:
    """The export files already in ``out_dir`` (a UserError without ``force``)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a directory")
    existing = [out_dir / name for name in (*MODEL_FILES.values(), SIDECAR) if (out_dir / name).exists()]
    if existing and not force:
        raise UserError(f"{out_dir} already holds an exported policy ({', '.join(p.name for p in existing)}); "
                        "pass --force to replace it, or --out DIR")
    return existing


def export_feedforward(agent: nn.Module, adapter: Any, cfg: Any, out_dir: Path, fmt: str,
                       ckpt_path: Path | None = None, force: bool = False, n_verify: int = 256,
                       seed: int = 0) -> dict[str, Any]:
    """Export, verify and write ``out_dir/policy.{onnx,pt,npz}`` plus ``out_dir/policy.json`` (feed-forward
    policies; :func:`rlctl.export.export_policy` sends recurrent ones to :mod:`rlctl.export.recurrent`).

    Returns the sidecar's content plus ``model_path`` and ``sidecar_path``. Raises ``UserError`` for an
    unknown format, a missing extra, a policy the format cannot hold, an existing export without
    ``force``, and :class:`ExportMismatchError` (nothing written) when verification fails.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not isinstance(agent, ActorCritic):
        raise UserError(f"export needs an rlctl ActorCritic policy, got {type(agent).__name__}")
    critic_only = agent.critic_only_obs
    agent = agent.deployable()  # privileged (critic-only) inputs do not exist on the robot
    if fmt == "onnx":
        _require_onnx()
    elif fmt == "numpy":
        NumpyPolicy.from_agent(agent)  # representable? fail before touching the output directory
    out_dir = Path(out_dir)
    existing = _check_out_dir(out_dir, force)

    agent = copy.deepcopy(agent).to("cpu").eval()  # leave the caller's module where and how it was
    obs = verification_obs(agent, n_verify, seed)
    example = torch.from_numpy(obs[:2].copy())
    if fmt == "onnx":
        model, run, runtime = _onnx_bytes(agent, example)
    elif fmt == "torchscript":
        model, run, runtime = _torchscript_bytes(agent, example)
    else:
        model, run, runtime = _numpy_bytes(agent)
    with torch.no_grad():
        want = agent(torch.from_numpy(obs)).cpu().numpy()
    diff = _max_abs_diff(run(obs), want, runtime)
    single = _max_abs_diff(np.asarray(run(obs[:1])), want[:1], f"{runtime} (batch 1)")
    diff = max(diff, single)
    if not diff <= TOLERANCE:  # also catches NaN
        raise ExportMismatchError(f"{fmt} export disagrees with the torch policy: max |Δaction| = {diff:.3g} > "
                                  f"{TOLERANCE:g} on {len(obs)} observations; nothing was written", diff)
    verification = {"runtime": runtime, "observations": len(obs), "seed": seed, "max_abs_diff": diff,
                    "tolerance": TOLERANCE, "passed": True, "reference": "ActorCritic.forward (deterministic)"}
    meta = _sidecar(agent, adapter, cfg, fmt, ckpt_path, model, verification)
    if critic_only:
        meta["observation"]["critic_only_dropped"] = critic_only
        meta["observation"]["note"] = (f"the training env's observation ends with {critic_only} privileged, "
                                       f"simulation-only entries the critic used; the model takes the first "
                                       f"{agent.obs_dim}")

    return write_export(out_dir, fmt, model, meta, existing)


def write_export(out_dir: Path, fmt: str, model: bytes, meta: dict[str, Any], existing: list[Path]) -> dict[str, Any]:
    """Write a verified export: the model, then the sidecar (replacing ``existing`` files); the sidecar plus
    ``model_path`` and ``sidecar_path``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path, sidecar_path = out_dir / MODEL_FILES[fmt], out_dir / SIDECAR
    # Sidecar first out, last in: while it is absent the directory does not claim a complete export.
    for path in sorted(existing, key=lambda p: p.name != SIDECAR):
        if path != model_path:
            path.unlink(missing_ok=True)
    atomic_write_bytes(model_path, lambda fh: fh.write(model))
    atomic_write_bytes(sidecar_path, lambda fh: fh.write((json.dumps(meta, indent=2) + "\n").encode()))
    return {**meta, "model_path": str(model_path), "sidecar_path": str(sidecar_path)}
