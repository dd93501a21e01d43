"""The deterministic policy of an MLP :class:`ActorCritic` in plain NumPy, and its ``policy.npz`` file.

The runtime half of ``rlctl export --format numpy``: it needs NumPy only, so a tiny policy can run where torch
cannot (a microcontroller port, a robot's Python without torch wheels), and it is the reference a port is checked
against line by line. The recurrent runner (:mod:`rlctl.export.recurrent`) shares its helpers.
"""

from __future__ import annotations

import inspect
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlctl.agents.normalize import RunningMeanStd
from rlctl.agents.policy import ActorCritic
from rlctl.errors import UserError

NUMPY_FORMAT = "rlctl-numpy-policy"
NUMPY_VERSION = 1
# The eps RunningMeanStd.normalize adds to the variance, read from the code so the two never drift apart.
NORMALIZER_EPS = float(inspect.signature(RunningMeanStd.normalize).parameters["eps"].default)

_ACTIVATIONS: dict[type[nn.Module], str] = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.ELU: "elu"}




def _np_activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    if name == "tanh":
        return np.tanh
    if name == "relu":
        return lambda x: np.maximum(x, np.float32(0.0))
    if name == "elu":
        return lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, np.float32(0.0))))
    raise UserError(f"unknown activation {name!r} in a NumPy policy; known: elu, relu, tanh")


def np_normalizer(mean: np.ndarray, var: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The float32 mean and std that ``RunningMeanStd.normalize`` uses: sqrt in float64, then cast to float32."""
    std = np.sqrt(np.asarray(var, dtype=np.float64) + eps).astype(np.float32)
    return np.asarray(mean, dtype=np.float32), std


def npz_bytes(arrays: dict[str, np.ndarray], low: np.ndarray | None, high: np.ndarray | None) -> bytes:
    """A NumPy policy's ``.npz`` payload: ``arrays`` plus the action bounds where the policy clips to them."""
    if low is not None and high is not None:
        arrays = {**arrays, "action_low": low, "action_high": high}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def check_npz_header(data: Any, source: Any, fmt: str, version: int, what: str) -> None:
    """A UserError unless ``data`` (an open ``.npz``) is this ``fmt`` at a version this rlctl reads."""
    if "format" not in data or str(data["format"]) != fmt:
        raise UserError(f"{source}: not an rlctl {what}")
    if int(data["version"]) > version:
        raise UserError(f"{source}: {what} version {int(data['version'])} is newer than this rlctl")


@dataclass
class NumpyPolicy:
    """The deterministic policy of an MLP :class:`ActorCritic` in plain NumPy (float32).

    Exists so that a tiny policy can run where torch cannot (a microcontroller port, a robot's
    Python without wheels for torch): the ``.npz`` holds everything, and this class is the
    reference implementation a port can be checked against, line by line.
    """

    weights: tuple[np.ndarray, ...]  # [out, in] float32, as nn.Linear stores them
    biases: tuple[np.ndarray, ...]
    activations: tuple[str, ...]  # one per hidden layer
    obs_mean: np.ndarray  # float64 running statistics
    obs_var: np.ndarray
    normalize: bool
    clip_obs: float
    action_kind: str
    nvec: tuple[int, ...] = ()
    action_low: np.ndarray | None = None  # float32 bounds; None = unbounded (no clipping)
    action_high: np.ndarray | None = None
    eps: float = NORMALIZER_EPS
    _mean32: np.ndarray = field(init=False, repr=False)
    _std32: np.ndarray = field(init=False, repr=False)
    _acts: tuple[Callable[[np.ndarray], np.ndarray], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.biases) or len(self.activations) != len(self.weights) - 1:
            raise UserError("malformed NumPy policy: layer, bias and activation counts disagree")
        self._acts = tuple(_np_activation(a) for a in self.activations)
        self._mean32, self._std32 = np_normalizer(self.obs_mean, self.obs_var, self.eps)

    @property
    def obs_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @classmethod
    def from_agent(cls, agent: nn.Module) -> NumpyPolicy:
        """Copy the actor, normalizer and bounds out of an :class:`ActorCritic` (UserError if not an MLP)."""
        if not isinstance(agent, ActorCritic):
            raise UserError(f"the NumPy runner supports rlctl's ActorCritic MLPs, not {type(agent).__name__}")
        layers = list(agent.actor) if isinstance(agent.actor, nn.Sequential) else [agent.actor]
        weights: list[np.ndarray] = []
        biases: list[np.ndarray] = []
        activations: list[str] = []
        for i, layer in enumerate(layers):
            if i % 2 == 0:
                if type(layer) is not nn.Linear:
                    raise UserError(f"the NumPy runner handles Linear/activation MLPs only; actor layer {i} is "
                                    f"{type(layer).__name__} (export to onnx or torchscript instead)")
                weights.append(layer.weight.detach().cpu().numpy().astype(np.float32, copy=True))
                bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
                biases.append(bias.detach().cpu().numpy().astype(np.float32, copy=True))
            else:
                name = _ACTIVATIONS.get(type(layer))
                if name is None or (isinstance(layer, nn.ELU) and layer.alpha != 1.0):
                    raise UserError(f"the NumPy runner does not know the activation {layer!r} at actor layer {i}; "
                                    f"supported: {', '.join(sorted(set(_ACTIVATIONS.values())))} "
                                    "(export to onnx or torchscript instead)")
                activations.append(name)
        if not weights or len(layers) % 2 == 0:
            raise UserError("the NumPy runner needs an actor that ends with a Linear layer")
        spec = agent.action
        bounded = spec.kind == "continuous" and bool(spec.low)
        return cls(
            weights=tuple(weights), biases=tuple(biases), activations=tuple(activations),
            obs_mean=agent.obs_rms.mean.detach().cpu().numpy().astype(np.float64, copy=True),
            obs_var=agent.obs_rms.var.detach().cpu().numpy().astype(np.float64, copy=True),
            normalize=bool(agent.normalize_inputs), clip_obs=float(agent.clip_obs), action_kind=spec.kind,
            nvec=tuple(int(n) for n in spec.nvec),
            action_low=agent.action_low.detach().cpu().numpy().astype(np.float32, copy=True) if bounded else None,
            action_high=agent.action_high.detach().cpu().numpy().astype(np.float32, copy=True) if bounded else None,
        )

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """``[B, obs_dim]`` (or one ``[obs_dim]``) raw observations → ``[B, action_dim]`` actions
        (float32 clipped means, or int64 argmax indices per categorical factor)."""
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        x = x.reshape(1, -1) if single else x
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations of shape [B, {self.obs_dim}], got {np.shape(obs)}")
        if self.normalize:
            x = np.clip((x - self._mean32) / self._std32, np.float32(-self.clip_obs), np.float32(self.clip_obs))
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w.T + b
            if i < len(self._acts):
                x = self._acts[i](x)
        if self.action_kind == "continuous":
            out = x
            if self.action_low is not None and self.action_high is not None:
                out = np.maximum(np.minimum(out, self.action_high), self.action_low)
        else:
            splits = np.cumsum(self.nvec)[:-1]
            out = np.stack([np.argmax(chunk, axis=-1) for chunk in np.split(x, splits, axis=-1)], axis=-1)
            out = out.astype(np.int64)
        return out[0] if single else out

    def to_npz_bytes(self) -> bytes:
        """The ``policy.npz`` payload: only numeric and string arrays, loadable with ``allow_pickle=False``."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(NUMPY_FORMAT), "version": np.array(NUMPY_VERSION),
            "n_layers": np.array(len(self.weights)), "activations": np.array(self.activations, dtype=np.str_),
            "obs_mean": self.obs_mean, "obs_var": self.obs_var, "obs_eps": np.array(self.eps),
            "normalize": np.array(self.normalize), "clip_obs": np.array(self.clip_obs),
            "action_kind": np.array(self.action_kind), "nvec": np.array(self.nvec, dtype=np.int64),
        }
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"W{i}"], arrays[f"b{i}"] = w, b
        return npz_bytes(arrays, self.action_low, self.action_high)

    @classmethod
    def load(cls, source: Path | str | io.BytesIO) -> NumpyPolicy:
        """Read a ``policy.npz`` written by :func:`export_policy` (or :meth:`to_npz_bytes`)."""
        try:
            with np.load(source, allow_pickle=False) as data:
                check_npz_header(data, source, NUMPY_FORMAT, NUMPY_VERSION, "NumPy policy")
                n = int(data["n_layers"])
                low, high = data.get("action_low"), data.get("action_high")
                return cls(
                    weights=tuple(data[f"W{i}"] for i in range(n)), biases=tuple(data[f"b{i}"] for i in range(n)),
                    activations=tuple(str(a) for a in data["activations"]), obs_mean=data["obs_mean"],
                    obs_var=data["obs_var"], normalize=bool(data["normalize"]), clip_obs=float(data["clip_obs"]),
                    action_kind=str(data["action_kind"]), nvec=tuple(int(v) for v in data["nvec"]),
                    action_low=low, action_high=high, eps=float(data["obs_eps"]),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise UserError(f"{source}: cannot read NumPy policy ({exc})") from None
