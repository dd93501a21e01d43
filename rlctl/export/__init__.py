"""Policy export for on-board inference (ONNX, TorchScript, plain NumPy), verified before it is written."""

from __future__ import annotations

from rlctl.export.exporter import (
    FORMATS,
    TOLERANCE,
    ExportMismatchError,
    NumpyPolicy,
    control_info,
    export_policy,
    verification_obs,
)

__all__ = ["FORMATS", "TOLERANCE", "ExportMismatchError", "NumpyPolicy", "control_info", "export_policy",
           "verification_obs"]
