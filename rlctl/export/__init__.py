"""Policy export for on-board inference (ONNX, TorchScript, plain NumPy), verified before it is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.errors import UserError
from rlctl.export.exporter import (
    FORMATS,
    TOLERANCE,
    ExportMismatchError,
    control_info,
    export_feedforward,
    verification_obs,
)
from rlctl.export.numpy_policy import NumpyPolicy
from rlctl.export.recurrent import NumpyRecurrentPolicy, export_recurrent


def export_policy(agent: nn.Module, adapter: Any, cfg: Any, out_dir: Path, fmt: str, ckpt_path: Path | None = None,
                  force: bool = False, seed: int = 0) -> dict[str, Any]:
    """Export, verify and write ``out_dir/policy.{onnx,pt,npz}`` plus ``out_dir/policy.json``: a feed-forward
    policy's deterministic action (:func:`export_feedforward`), or a recurrent policy's step with its state as an
    input and an output (:func:`export_recurrent`). Returns the sidecar plus ``model_path`` and ``sidecar_path``;
    every refusal is a ``UserError``, a failed verification an :class:`ExportMismatchError` (nothing written)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if isinstance(agent, RecurrentActorCritic):
        return export_recurrent(agent, adapter, cfg, Path(out_dir), fmt, ckpt_path, force, seed)
    return export_feedforward(agent, adapter, cfg, Path(out_dir), fmt, ckpt_path, force, seed=seed)


__all__ = ["FORMATS", "TOLERANCE", "ExportMismatchError", "NumpyPolicy", "NumpyRecurrentPolicy", "control_info",
           "export_feedforward", "export_policy", "export_recurrent", "verification_obs"]
