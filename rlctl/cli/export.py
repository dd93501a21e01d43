"""``rlctl export RUN|CKPT --format onnx|torchscript|numpy``: a verified, self-describing policy file.

Kept out of ``rlctl/cli/__init__.py`` so the export code (and its optional onnx dependencies) is only imported
when the verb runs; ``cli.build_parser`` calls :func:`add_parser`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlctl.errors import UserError

FORMAT_CHOICES = ("onnx", "torchscript", "numpy")  # = rlctl.export.FORMATS, without importing torch for --help


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="export a policy for on-board inference (ONNX, TorchScript, NumPy)",
        description="Export the deterministic policy (observation normalization and action clipping included) "
                    "and check it against torch on a seeded batch of observations before writing it. Writes "
                    "policy.onnx|policy.pt|policy.npz and a policy.json sidecar (spaces, bounds, normalizer "
                    "statistics, versions, verification result). A recurrent policy exports one step with its "
                    "state as an extra input and output, checked over whole episodes.")
    p.add_argument("target", metavar="RUN|CKPT", help="a run directory or a checkpoint file")
    p.add_argument("--format", choices=FORMAT_CHOICES, default="onnx",
                   help="onnx (needs pip install 'rlctl[export]'), torchscript (torch.jit, deprecated upstream "
                        "but still loadable from C++), or numpy (weights for the dependency-free "
                        "rlctl.export.NumpyPolicy runner, or NumpyRecurrentPolicy for LSTM/GRU; MLP encoders only). "
                        "Default onnx")
    p.add_argument("--out", metavar="DIR", help="output directory (default <run>/export/)")
    p.add_argument("--force", action="store_true", help="replace an export already in the output directory")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Load the run's policy, export it, print one line: where it went and how close it is to torch."""
    from rlctl.export import FORMATS, export_policy
    from rlctl.runs import load_policy

    if args.format not in FORMATS:  # argparse already refuses these; library callers with a Namespace may not
        raise UserError(f"unknown export format {args.format!r}; choose from {', '.join(FORMATS)}")
    cfg, agent, adapter, ckpt_path, _ = load_policy(args.target)
    if cfg.arbiter.baseline is not None and cfg.arbiter.mode == "residual":
        _check_residual_stands_alone(cfg, ckpt_path)
    out = Path(args.out) if args.out else ckpt_path.parent / "export"
    meta = export_policy(agent, adapter, cfg, out, args.format, ckpt_path, force=args.force)
    check = meta["verification"]
    checked = f"{check['observations']} observations" if "observations" in check else \
        f"{check['steps']} steps with the state carried, {check['env_episodes']} whole env episodes among them"
    print(f"exported {cfg.env.id} policy as {args.format} → {meta['model_path']} "
          f"(max abs diff vs torch {check['max_abs_diff']:.2g} on {checked}; sidecar {meta['sidecar_path']})")
    return 0


def _check_residual_stands_alone(cfg: Any, ckpt_path: Path) -> None:
    """A residual run's learner acts alone only once the baseline's part has faded to nothing (share 1)."""
    from rlctl.checkpoint import load_checkpoint
    from rlctl.train.transfer import AgencyTransfer

    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("learner_alone"):  # best_learner.pt: a policy that was evaluated with the baseline disconnected
        return
    transfer = AgencyTransfer(cfg)
    transfer.load_state_dict(ckpt.get("transfer"))
    share = transfer.share(int(ckpt["global_step"]))
    if share < 1.0:
        raise UserError(f"{ckpt_path} was trained as a residual on {cfg.arbiter.baseline} and stopped at learner "
                        f"share {share:.2f}: the network alone is not the policy that acted (it needs the baseline "
                        f"added); export a run that reached the final stage (share 1)")
