"""Choosing the learner's device: ``auto`` measures instead of guessing.

A GPU wins for big networks and big minibatches; for the small MLPs of MuJoCo PPO (64×64, minibatch
64) kernel-launch latency makes it slower than one CPU core. So when CUDA is present, ``auto`` times a
few real minibatch updates of this run's network on both devices and keeps the faster, and the run's
first lines say what it measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from rlctl.errors import UserError

Probe = Callable[[torch.device], float]
"""Seconds for a fixed number of minibatch updates on a device."""


def resolve_device(name: str, probe: Probe | None = None) -> tuple[torch.device, str]:
    """The device to learn on and a sentence saying why."""
    if name == "cpu":
        return torch.device("cpu"), "requested"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda was requested but torch sees no CUDA device (use auto or cpu)")
        return torch.device("cuda"), "requested"
    if not torch.cuda.is_available():
        return torch.device("cpu"), "auto: no CUDA device"
    if probe is None:
        return torch.device("cuda"), "auto: CUDA present"
    cpu_s, cuda_s = probe(torch.device("cpu")), probe(torch.device("cuda"))
    pick = torch.device("cpu") if cpu_s <= cuda_s else torch.device("cuda")
    return pick, (f"auto: {pick.type} was faster for this network ({PROBE_STEPS} minibatch updates: "
                  f"{cpu_s * 1e3:.0f} ms on CPU, {cuda_s * 1e3:.0f} ms on CUDA)")


PROBE_STEPS = 30


def update_probe(make_step: Callable[[torch.device], Callable[[], None]]) -> Probe:
    """A probe that times ``PROBE_STEPS`` calls of the step ``make_step(device)`` builds, after warm-up.

    The torch RNG is forked, so measuring does not change the training run that follows.
    """

    def probe(device: torch.device) -> float:
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
            step = make_step(device)
            for _ in range(5):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(PROBE_STEPS):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

    return probe


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls and convolutions run natively (faster than float32) on ``device``.

    CUDA: the GPU supports bf16 (Ampere and later). CPU: the cores have AMX-BF16 or AVX512-BF16 (read from
    /proc/cpuinfo; elsewhere assumed absent), without which oneDNN emulates bf16 and is slower than fp32.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
