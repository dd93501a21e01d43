from __future__ import annotations

import pytest
import torch

from rlctl import device as dev
from rlctl.errors import UserError


def test_auto_without_cuda_is_cpu_and_says_so(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    probe_calls: list[torch.device] = []
    chosen, why = dev.resolve_device("auto", lambda d: probe_calls.append(d) or 0.0)
    assert chosen.type == "cpu" and "no CUDA" in why and not probe_calls


def test_auto_with_cuda_keeps_the_faster_measured_device(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    chosen, why = dev.resolve_device("auto", lambda d: 0.010 if d.type == "cpu" else 0.025)
    assert chosen.type == "cpu" and "10 ms on CPU, 25 ms on CUDA" in why
    chosen, _ = dev.resolve_device("auto", lambda d: 0.050 if d.type == "cpu" else 0.005)
    assert chosen.type == "cuda"


def test_cuda_requested_without_gpu_is_a_user_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA device"):
        dev.resolve_device("cuda")


def test_probe_times_real_updates_without_touching_the_rng() -> None:
    state = torch.get_rng_state()
    calls = {"n": 0}

    def make_step(device: torch.device):  # type: ignore[no-untyped-def]
        def step() -> None:
            calls["n"] += 1
            torch.randn(3)
        return step

    seconds = dev.update_probe(make_step)(torch.device("cpu"))
    assert seconds > 0 and calls["n"] == 5 + dev.PROBE_STEPS
    assert torch.equal(state, torch.get_rng_state())
