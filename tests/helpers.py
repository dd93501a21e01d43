"""Shared helpers for tests that run the trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rlctl.config import Config
from rlctl.resolve import resolve_config


def small_config(env_id: str, preset: str | None = None, **sections: dict[str, Any]) -> Config:
    """A resolved config with per-section overrides, no final evaluation unless asked for."""
    overrides: dict[str, Any] = {"run": {"eval_episodes": 0}}
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    cfg, _ = resolve_config(env_id, preset, overrides)
    return cfg


def stop_after(updates: int) -> Callable[[dict[str, Any]], bool]:
    """An ``on_update`` callback that stops training after the given number of updates (to test resume)."""
    calls = {"n": 0}

    def stop(_: dict[str, Any]) -> bool:
        calls["n"] += 1
        return calls["n"] == updates

    return stop


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from rlctl.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "checkpoint.pt" if run_dir.is_dir() else run_dir)["agent"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"
