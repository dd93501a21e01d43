"""The CUDA path's risk points (found in review; no CI machine has a GPU): skipped without CUDA, run by
``make gpu-check`` / ``rlctl bench gpu``. Each compares the GPU with the CPU or checks a round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlctl.agents.cnn import CnnActorCritic
from rlctl.agents.distributions import ActionSpec
from rlctl.agents.gae import compute_gae
from rlctl.agents.normalize import RunningMeanStd
from rlctl.agents.rollout import Rollout
from rlctl.checkpoint import load_checkpoint, save_checkpoint
from rlctl.train import train
from rlctl.train.state import rng_state, set_rng_state
from tests.helpers import small_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

CUDA = torch.device("cuda")


def test_a_rollout_on_the_current_gpu_is_not_copied_for_an_index_less_device() -> None:
    rollout = Rollout.allocate(8, 2, 3, 1, False, CUDA)
    assert rollout.obs.device.index is not None  # torch resolved "cuda" to "cuda:0"
    assert rollout.to(CUDA) is rollout and rollout.to(torch.device("cuda", rollout.obs.device.index)) is rollout


@pytest.mark.parametrize("compile", [False, True])
def test_a_gpu_run_checkpoints_and_resumes_on_the_gpu_and_on_the_cpu(tmp_path: Path, compile: bool) -> None:
    cfg = small_config("Hopper-v5", env={"num_envs": 2}, run={"compile": compile, "checkpoint_every": 256},
                       ppo={"total_timesteps": 1024, "num_steps": 128, "minibatch_size": 64, "update_epochs": 2})
    stops = {"n": 0}

    def stop(_: object) -> bool:
        stops["n"] += 1
        return stops["n"] == 2

    train(cfg, tmp_path / "gpu", progress=False, device="cuda", on_update=stop)
    ckpt = load_checkpoint(tmp_path / "gpu" / "checkpoint.pt")  # fused/compiled Adam state, loaded to the CPU
    assert all(t.device.type == "cpu" for t in ckpt["agent"].values())
    resumed = train(cfg, tmp_path / "gpu", resume=True, progress=False, device="cuda")
    assert resumed.global_step == 1024
    assert all(torch.isfinite(p).all() for p in resumed.agent.parameters())

    train(cfg, tmp_path / "cpu", progress=False, device="cuda", on_update=lambda _: True)
    moved = train(cfg, tmp_path / "cpu", resume=True, progress=False, device="cpu")
    assert moved.global_step == 1024 and next(moved.agent.parameters()).device.type == "cpu"


def test_bf16_autocast_on_channels_last_frames_keeps_the_first_ratio_near_one() -> None:
    torch.manual_seed(0)
    spec = ActionSpec("discrete", 1, (6,))
    agent = CnnActorCritic(spec, precision="bf16").to(CUDA)
    frames = torch.randint(0, 256, (64, 4, 84, 84), dtype=torch.uint8, device=CUDA)
    with torch.no_grad():
        dist = agent.dist(agent.normalize_obs(frames))
        actions = dist.sample()
        old = dist.log_prob(actions)
    new = agent.dist(agent.normalize_obs(frames.contiguous(memory_format=torch.channels_last))).log_prob(actions)
    ratio = (new - old).exp()
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=2e-2)


def test_normalizer_statistics_on_the_gpu_match_the_cpu() -> None:
    torch.manual_seed(0)
    batches = [torch.randn(256, 17, dtype=torch.float64) * 3 + 1 for _ in range(20)]
    cpu, gpu = RunningMeanStd((17,)), RunningMeanStd((17,)).to(CUDA)
    for batch in batches:
        cpu.update(batch)
        gpu.update(batch.to(CUDA))
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(getattr(gpu, name).cpu(), getattr(cpu, name), rtol=1e-9, atol=1e-9)


def test_the_cuda_generator_state_is_part_of_the_run_state(tmp_path: Path) -> None:
    torch.cuda.manual_seed(3)
    state = rng_state()
    assert "cuda" in state
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    first = torch.rand(5, device=CUDA)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    torch.testing.assert_close(torch.rand(5, device=CUDA), first)


def test_gae_on_the_gpu_matches_the_cpu() -> None:
    torch.manual_seed(0)
    shape = (64, 8)
    rewards, values, next_values = torch.randn(shape), torch.randn(shape), torch.randn(shape)
    terminated, truncated = torch.rand(shape) < 0.05, torch.rand(shape) < 0.05
    cpu = compute_gae(rewards, values, next_values, terminated, truncated, 0.99, 0.95)
    gpu = compute_gae(*(t.to(CUDA) for t in (rewards, values, next_values, terminated, truncated)), 0.99, 0.95)
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-5)
