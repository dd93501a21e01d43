"""Run state beyond the weights: random generators (for exact resume) and the hyperparameter table."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from rlctl.config import Config, to_dict


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def hparams_markdown(cfg: Config) -> str:
    rows = [f"|{section}.{k}|{v}|" for section, values in to_dict(cfg).items() for k, v in values.items()]
    return "|param|value|\n|-|-|\n" + "\n".join(rows)
