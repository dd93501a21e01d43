"""Export a recurrent policy: one control step, with the memory as an explicit input and output.

The exported model is ``(obs [B, obs_dim], state [B, state_size]) → (action [B, action_dim], state_out)``: the
caller keeps ``state_out`` and passes it back on the next step, and passes zeros at every episode start (the
same reset as in training). The state layout is rlctl's flat one (:class:`RecurrentActorCritic`): the hidden
states of layers 0…L−1, then, for an LSTM, the cell states of layers 0…L−1, ``recurrent_size`` floats each. The
sidecar (``policy.json``, section ``recurrent``) says all of this for on-board code.

Verification runs the exported model and :meth:`RecurrentActorCritic.act` (what ``rlctl eval`` runs) side by
side over whole sequences, each carrying its *own* state, so an error that compounds through the memory shows:
seeded observation sequences (several streams at once and one alone), and, when the env can be built, whole
deterministic episodes of it. Every action and every state must agree within :data:`TOLERANCE`; otherwise
nothing is written.
"""

from __future__ import annotations

import copy
import io
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.errors import UserError
from rlctl.export.exporter import (
    INPUT_NAME,
    ONNX_OPSET,
    OUTPUT_NAME,
    TOLERANCE,
    ExportMismatchError,
    _check_out_dir,
    _max_abs_diff,
    _quiet_exporters,
    _require_onnx,
    _sidecar,
    verification_obs,
    write_export,
)
from rlctl.export.numpy_policy import (
    _ACTIVATIONS,
    NORMALIZER_EPS,
    _np_activation,
    check_npz_header,
    np_normalizer,
    npz_bytes,
)

STATE_NAME = "state"
STATE_OUT_NAME = "state_out"
NUMPY_FORMAT = "rlctl-numpy-recurrent-policy"
NUMPY_VERSION = 1
EPISODES = 2
"""env episodes the verification plays (when the env can be built), each cut at :data:`EPISODE_CAP` steps"""
EPISODE_CAP = 1000

Step = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class RecurrentStep(nn.Module):
    """The exported graph: raw observation → normalizer → encoder → one core step → actor mean / argmax → clip."""

    def __init__(self, agent: RecurrentActorCritic) -> None:
        super().__init__()
        self.agent = agent

    def forward(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.agent
        out, packed = a.core(a._features(a.normalize_obs(obs))[None], a._unpack(state))
        dist, _ = a._heads(out[0])
        return a.to_env_action(dist.mode()), a._pack(packed)


@dataclass
class NumpyRecurrentPolicy:
    """A recurrent policy's deterministic step in plain NumPy (float32): the reference a port to a flight
    controller can be checked against, line by line (PyTorch's gate order: LSTM i, f, g, o; GRU r, z, n)."""

    encoder: tuple[tuple[np.ndarray, np.ndarray], ...]  # (W [out, in], b) per layer, each followed by `activation`
    activation: str
    cell: str
    core: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]  # (W_ih, W_hh, b_ih, b_hh) per layer
    head: tuple[np.ndarray, np.ndarray]
    obs_mean: np.ndarray
    obs_var: np.ndarray
    normalize: bool
    clip_obs: float
    action_kind: str
    nvec: tuple[int, ...] = ()
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None
    eps: float = NORMALIZER_EPS
    _act: Callable[[np.ndarray], np.ndarray] = field(init=False, repr=False)
    _scale: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._act = _np_activation(self.activation)
        self._scale = np_normalizer(self.obs_mean, self.obs_var, self.eps)

    @property
    def size(self) -> int:
        return int(self.core[0][1].shape[1])

    @property
    def state_size(self) -> int:
        return len(self.core) * self.size * (2 if self.cell == "lstm" else 1)

    def initial_state(self, batch: int = 1) -> np.ndarray:
        """The state at an episode's start: zeros ``[batch, state_size]``."""
        return np.zeros((batch, self.state_size), dtype=np.float32)

    @classmethod
    def from_agent(cls, agent: RecurrentActorCritic) -> NumpyRecurrentPolicy:
        def arr(t: torch.Tensor, dtype: Any = np.float32) -> np.ndarray:
            return t.detach().cpu().numpy().astype(dtype, copy=True)

        layers = list(agent.encoder.children())
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        acts = {_ACTIVATIONS.get(type(m)) for m in layers if not isinstance(m, nn.Linear)}
        if len(acts) != 1 or None in acts:
            raise UserError(f"the NumPy runner does not know the encoder's activation ({agent.encoder}); "
                            "export to onnx or torchscript instead")
        core = tuple(tuple(arr(getattr(agent.core, f"{name}_l{layer}")) for name in ("weight_ih", "weight_hh",
                                                                                      "bias_ih", "bias_hh"))
                     for layer in range(agent.layers))
        spec = agent.action
        bounded = spec.kind == "continuous" and bool(spec.low)
        return cls(
            encoder=tuple((arr(m.weight), arr(m.bias)) for m in linears), activation=str(acts.pop()), cell=agent.cell,
            core=core, head=(arr(agent.actor.weight), arr(agent.actor.bias)),  # type: ignore[arg-type]
            obs_mean=arr(agent.obs_rms.mean, np.float64), obs_var=arr(agent.obs_rms.var, np.float64),
            normalize=bool(agent.normalize_inputs), clip_obs=float(agent.clip_obs), action_kind=spec.kind,
            nvec=tuple(int(n) for n in spec.nvec),
            action_low=arr(agent.action_low) if bounded else None,
            action_high=arr(agent.action_high) if bounded else None)

    def __call__(self, obs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``obs [B, obs_dim]`` raw, ``state [B, state_size]`` → (actions, the state after the step)."""
        x = np.asarray(obs, dtype=np.float32)
        state = np.asarray(state, dtype=np.float32)
        if self.normalize:
            mean, std = self._scale
            x = np.clip((x - mean) / std, np.float32(-self.clip_obs), np.float32(self.clip_obs))
        for w, b in self.encoder:
            x = self._act(x @ w.T + b)
        layers, size = len(self.core), self.size
        h = state[:, :layers * size].reshape(-1, layers, size)
        c = state[:, layers * size:].reshape(-1, layers, size)
        new_h, new_c = [], []
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.core):
            gx, gh = x @ w_ih.T + b_ih, h[:, layer] @ w_hh.T + b_hh
            if self.cell == "lstm":
                i, f, g, o = np.split(gx + gh, 4, axis=-1)
                cell = _sigmoid(f) * c[:, layer] + _sigmoid(i) * np.tanh(g)
                x = _sigmoid(o) * np.tanh(cell)
                new_c.append(cell)
            else:
                (xr, xz, xn), (hr, hz, hn) = np.split(gx, 3, axis=-1), np.split(gh, 3, axis=-1)
                r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
                x = (1 - z) * np.tanh(xn + r * hn) + z * h[:, layer]
            new_h.append(x)
        logits = x @ self.head[0].T + self.head[1]
        if self.action_kind == "continuous":
            action = logits
            if self.action_low is not None and self.action_high is not None:
                action = np.maximum(np.minimum(action, self.action_high), self.action_low)
        else:
            chunks = np.split(logits, np.cumsum(self.nvec)[:-1], axis=-1)
            action = np.stack([np.argmax(chunk, axis=-1) for chunk in chunks], axis=-1).astype(np.int64)
        out = np.concatenate([np.stack(new_h, 1).reshape(len(x), -1), *([np.stack(new_c, 1).reshape(len(x), -1)]
                                                                        if new_c else [])], axis=-1)
        return action, out.astype(np.float32)

    def to_npz_bytes(self) -> bytes:
        """The ``policy.npz`` payload: numeric and string arrays only (``allow_pickle=False``)."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(NUMPY_FORMAT), "version": np.array(NUMPY_VERSION), "cell": np.array(self.cell),
            "activation": np.array(self.activation), "n_encoder": np.array(len(self.encoder)),
            "n_core": np.array(len(self.core)), "obs_mean": self.obs_mean, "obs_var": self.obs_var,
            "obs_eps": np.array(self.eps), "normalize": np.array(self.normalize), "clip_obs": np.array(self.clip_obs),
            "action_kind": np.array(self.action_kind), "nvec": np.array(self.nvec, dtype=np.int64),
            "head_W": self.head[0], "head_b": self.head[1]}
        for i, (w, b) in enumerate(self.encoder):
            arrays[f"enc_W{i}"], arrays[f"enc_b{i}"] = w, b
        for i, weights in enumerate(self.core):
            for name, value in zip(("W_ih", "W_hh", "b_ih", "b_hh"), weights, strict=True):
                arrays[f"core_{name}{i}"] = value
        return npz_bytes(arrays, self.action_low, self.action_high)

    @classmethod
    def load(cls, source: Path | str | io.BytesIO) -> NumpyRecurrentPolicy:
        """Read a recurrent ``policy.npz`` written by :func:`export_recurrent`."""
        try:
            with np.load(source, allow_pickle=False) as d:
                check_npz_header(d, source, NUMPY_FORMAT, NUMPY_VERSION, "recurrent NumPy policy")
                return cls(
                    encoder=tuple((d[f"enc_W{i}"], d[f"enc_b{i}"]) for i in range(int(d["n_encoder"]))),
                    activation=str(d["activation"]), cell=str(d["cell"]),
                    core=tuple(tuple(d[f"core_{n}{i}"] for n in ("W_ih", "W_hh", "b_ih", "b_hh"))
                               for i in range(int(d["n_core"]))),
                    head=(d["head_W"], d["head_b"]), obs_mean=d["obs_mean"], obs_var=d["obs_var"],
                    normalize=bool(d["normalize"]), clip_obs=float(d["clip_obs"]), action_kind=str(d["action_kind"]),
                    nvec=tuple(int(v) for v in d["nvec"]), action_low=d.get("action_low"),
                    action_high=d.get("action_high"), eps=float(d["obs_eps"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise UserError(f"{source}: cannot read recurrent NumPy policy ({exc})") from None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)


def _onnx_step(step: RecurrentStep, obs: torch.Tensor, state: torch.Tensor) -> tuple[bytes, Step, str]:
    onnx, ort = _require_onnx()
    batch = torch.export.Dim("batch")
    with _quiet_exporters(), warnings.catch_warnings():
        # torch.export on nn.LSTM/GRU: internal deprecations, the RNN's flat-weight cache, and one shared batch axis
        for message in (r".*_check_is_size", r".*_flat_weights.*assigned during export", r".*axis name: batch"):
            warnings.filterwarnings("ignore", message=message)
        program = torch.onnx.export(step, (obs, state), input_names=[INPUT_NAME, STATE_NAME],
                                    output_names=[OUTPUT_NAME, STATE_OUT_NAME],
                                    dynamic_shapes=({0: batch}, {0: batch}), opset_version=ONNX_OPSET, dynamo=True,
                                    verbose=False)
    assert program is not None
    onnx.checker.check_model(program.model_proto, full_check=True)
    data: bytes = program.model_proto.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def run(o: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action, after = session.run([OUTPUT_NAME, STATE_OUT_NAME], {INPUT_NAME: o, STATE_NAME: s})
        return np.asarray(action), np.asarray(after)

    return data, run, f"onnxruntime {ort.__version__}"


def _torchscript_step(step: RecurrentStep, obs: torch.Tensor, state: torch.Tensor) -> tuple[bytes, Step, str]:
    with _quiet_exporters(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # nn.GRU/LSTM's own shape checks
        frozen = torch.jit.freeze(torch.jit.trace(step, (obs, state), check_trace=True).eval())
        buf = io.BytesIO()
        torch.jit.save(frozen, buf)
        data = buf.getvalue()
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")

    def run(o: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            action, after = loaded(torch.from_numpy(o), torch.from_numpy(s))
        return action.numpy(), after.numpy()

    return data, run, f"torch.jit {torch.__version__}"


def _numpy_step(agent: RecurrentActorCritic) -> tuple[bytes, Step, str]:
    data = NumpyRecurrentPolicy.from_agent(agent).to_npz_bytes()
    return data, NumpyRecurrentPolicy.load(io.BytesIO(data)), f"numpy {np.__version__}"


class _Compare:
    """The exported step and the torch policy, side by side, each carrying its own state from zeros."""

    def __init__(self, agent: RecurrentActorCritic, run: Step, runtime: str, batch: int) -> None:
        self.agent, self.run, self.runtime = agent, run, runtime
        self.mine = agent.initial_state(batch)
        self.theirs = self.mine.numpy().copy()
        self.diff, self.steps = 0.0, 0

    def step(self, obs: np.ndarray) -> np.ndarray:
        """Both sides act on ``obs [B, obs_dim]``; the torch action (which drives the env)."""
        with torch.no_grad():
            want, self.mine = self.agent.act(torch.from_numpy(obs), self.mine, torch.zeros(len(obs), dtype=torch.bool),
                                             deterministic=True)
        got, self.theirs = self.run(obs, self.theirs)
        self.diff = max(self.diff, _max_abs_diff(np.asarray(got), want.numpy(), self.runtime),
                        _max_abs_diff(np.asarray(self.theirs), self.mine.numpy(), f"{self.runtime} (state)"))
        self.steps += 1
        return want.numpy()


def _verify(agent: RecurrentActorCritic, run: Step, runtime: str, cfg: Any, adapter: Any,
            seed: int) -> dict[str, Any]:
    """Max |Δ| over actions and states: seeded sequences (4 streams × 64 steps, then 1 × 64), then whole env
    episodes where the env can be built."""
    obs = verification_obs(agent, 256, seed)
    diff, steps = 0.0, 0
    for rows in (obs[:256].reshape(64, 4, -1), obs[-64:].reshape(64, 1, -1)):  # the alone one ends on the extremes
        side = _Compare(agent, run, runtime, rows.shape[1])
        for step_obs in rows:
            side.step(np.ascontiguousarray(step_obs))
        diff, steps = max(diff, side.diff), steps + side.steps
    episodes = 0
    env = _env(cfg)
    if env is not None:
        try:
            for episode in range(EPISODES):
                side = _Compare(agent, run, runtime, 1)
                raw, _ = env.reset(seed=seed + episode)
                for _ in range(EPISODE_CAP):
                    action = side.step(adapter.obs(np.asarray(raw)[None]))
                    raw, _, terminated, truncated, _ = env.step(adapter.to_env(action)[0])
                    if terminated or truncated:
                        break
                diff, steps, episodes = max(diff, side.diff), steps + side.steps, episodes + 1
        finally:
            env.close()
    if not diff <= TOLERANCE:
        raise ExportMismatchError(f"recurrent export disagrees with the torch policy: max |Δ| over actions and states "
                                  f"= {diff:.3g} > {TOLERANCE:g} in {steps} steps; nothing was written", diff)
    return {"runtime": runtime, "steps": steps, "env_episodes": episodes, "seed": seed, "max_abs_diff": diff,
            "tolerance": TOLERANCE, "passed": True,
            "reference": "RecurrentActorCritic.act (deterministic), each side carrying its own state"}


def _env(cfg: Any) -> Any:
    """The training env, for whole-episode verification; None without a config or when it cannot be built."""
    if cfg is None:
        return None
    try:
        from rlctl.envs.make import make_env

        return make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
    except Exception:  # the sequences still verify the export; the sidecar says no episode ran
        return None


def export_recurrent(agent: RecurrentActorCritic, adapter: Any, cfg: Any, out_dir: Path, fmt: str,
                     ckpt_path: Path | None = None, force: bool = False, seed: int = 0) -> dict[str, Any]:
    """:func:`rlctl.export.export_policy` for a recurrent policy (it dispatches here); see the module docstring."""
    if agent.image:
        raise UserError("recurrent policies on image observations cannot be exported yet (vector observations only)")
    if fmt == "onnx":
        _require_onnx()
    existing = _check_out_dir(Path(out_dir), force)
    agent = copy.deepcopy(agent).to("cpu").eval()
    example = (torch.from_numpy(verification_obs(agent, 2, seed)[:2].copy()), agent.initial_state(2))
    if fmt == "onnx":
        model, run, runtime = _onnx_step(RecurrentStep(agent).eval(), *example)
    elif fmt == "torchscript":
        model, run, runtime = _torchscript_step(RecurrentStep(agent).eval(), *example)
    else:
        model, run, runtime = _numpy_step(agent)
    verification = _verify(agent, run, runtime, cfg, adapter, seed)
    meta = _sidecar(agent, adapter, cfg, fmt, ckpt_path, model, verification)
    meta["io"].update({
        "state_input": STATE_NAME, "state_output": STATE_OUT_NAME, "state_shape": ["batch", agent.state_size],
        "note": "inputs: the raw observation flattened to obs.dim floats, and the state the previous step returned "
                "(zeros at every episode start); outputs: the deterministic action and the next state. "
                "Normalization and action clipping are inside the model"})
    meta["recurrent"] = {
        "cell": agent.cell, "size": agent.size, "layers": agent.layers, "state_size": agent.state_size,
        "initial_state": "zeros", "reset": "at every episode start",
        "layout": "hidden state of layers 0..L-1" + (", then cell state of layers 0..L-1" if agent.cell == "lstm"
                                                      else "") + f", {agent.size} floats each"}
    meta["policy"] = {**(meta["policy"] or {}), "recurrent": agent.cell}
    return write_export(Path(out_dir), fmt, model, meta, existing)
