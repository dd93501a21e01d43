"""Kill-safe, pickle-free checkpoints: one file, written atomically, loaded with ``weights_only=True``.

Atomicity: the payload is written to a temporary file in the same directory, flushed and fsynced,
then ``os.replace``d over the target and the directory fsynced. A kill at any instant leaves either
the previous checkpoint or the new one, never a torn file.

Safety: ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers, so a file that
carries pickled code is refused instead of executed. NumPy arrays are stored as tensors for that reason.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlctl.errors import UserError

FORMAT = "rlctl-checkpoint"
VERSION = 1


def to_safe(tree: Any) -> Any:
    """Recursively replace NumPy arrays/scalars with tensors/Python numbers (weights_only-loadable)."""
    if isinstance(tree, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(tree)), "dtype": str(tree.dtype)}
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        return {k: to_safe(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_safe(v) for v in tree)
    return tree


def from_safe(tree: Any) -> Any:
    """Inverse of :func:`to_safe`."""
    if isinstance(tree, dict):
        if "__ndarray__" in tree:
            return tree["__ndarray__"].numpy().astype(tree["dtype"], copy=True)
        return {k: from_safe(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(from_safe(v) for v in tree)
    return tree


def atomic_write_bytes(path: Path, writer: Any) -> None:
    """Call ``writer(fileobj)`` on a temp file next to ``path``, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a kill leaves the old file or the new one, never a torn one."""
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def prepare_output(path: Path, force: bool) -> Path:
    """Check a user-named output file before the work that fills it: refuse to replace one without
    ``force``, and create its folder, so that a bad path fails at once instead of after a long run."""
    if path.is_dir():
        raise UserError(f"{path} is a directory; name a file to write")
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder for {path}: {exc.strerror or exc}") from None
    return path


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors and plain data) atomically to ``path``."""
    data = {"format": FORMAT, "version": VERSION, **to_safe(payload)}
    atomic_write_bytes(path, lambda fh: torch.save(data, fh))


def keep_copy(source: Path, dest: Path) -> None:
    """Copy a written checkpoint to ``dest`` atomically (a kill mid-copy leaves no half file under that name)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, lambda fh: fh.write(source.read_bytes()))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and validate a checkpoint; every failure is a UserError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"refusing to load {path}: it contains pickled Python objects, which could run code "
            f"(only rlctl's weights-only checkpoints are accepted) [{str(exc).splitlines()[0][:200]}]"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable checkpoint (corrupt or truncated?): {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path} is not an rlctl checkpoint")
    if data.get("version") != VERSION:
        raise UserError(f"{path} has checkpoint version {data.get('version')}, this rlctl reads {VERSION}")
    return from_safe(data)
