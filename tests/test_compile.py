from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlctl.agents.distributions import ActionSpec
from rlctl.agents.policy import ActorCritic
from rlctl.agents.ppo import MinibatchStep


@pytest.mark.slow
def test_compiled_minibatch_step_matches_eager_step() -> None:
    torch.manual_seed(0)
    spec = ActionSpec("continuous", 3, low=(-1.0,) * 3, high=(1.0,) * 3)
    eager_agent = ActorCritic(5, spec, [16, 16])
    compiled_agent = copy.deepcopy(eager_agent)
    # temporal smoothness on (deterministic), so its extra batch fields go through the compiled loss too
    params = SimpleNamespace(minibatch_size=32, update_epochs=1, clip_coef=0.2, clip_vloss=True, ent_coef=0.01,
                             vf_coef=0.5, max_grad_norm=0.5, target_kl=None, norm_adv=True, smooth_temporal=0.5,
                             smooth_spatial=0.0, smooth_sigma=0.05)
    eager = MinibatchStep(eager_agent, torch.optim.Adam(eager_agent.parameters(), lr=1e-3, foreach=True), params)
    lr = torch.tensor(1e-3)
    compiled = MinibatchStep(compiled_agent, torch.optim.Adam(compiled_agent.parameters(), lr=lr, foreach=False),
                             params, compile=True)
    batch = {"obs": torch.randn(64, 5), "actions": torch.randn(64, 3), "logprobs": torch.randn(64) - 3,
             "advantages": torch.randn(64), "values": torch.randn(64), "returns": torch.randn(64),
             "next_obs": torch.randn(64, 5), "next_valid": (torch.rand(64) > 0.2).float()}
    for i in range(3):
        idx = torch.randperm(64)[:32]
        a, b = eager(batch, idx), compiled(batch, idx)
        torch.testing.assert_close(a["policy_loss"], b["policy_loss"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a["smooth_temporal"], b["smooth_temporal"], rtol=1e-4, atol=1e-6)
        if i == 1:  # an annealed LR is followed by the compiled step
            for group in eager.optimizer.param_groups:
                group["lr"] = 5e-4
            lr.fill_(5e-4)
    for (name, p), q in zip(eager_agent.named_parameters(), compiled_agent.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


def test_the_trainers_fused_adam_follows_the_same_path_as_per_tensor_adam() -> None:
    from rlctl.config import Config
    from rlctl.train.optim import make_optimizer

    torch.manual_seed(0)
    spec = ActionSpec("continuous", 3, low=(-1.0,) * 3, high=(1.0,) * 3)
    fused_agent = ActorCritic(5, spec, [32, 32])
    plain_agent, start = copy.deepcopy(fused_agent), copy.deepcopy(fused_agent)
    cfg = Config()
    fused_opt = make_optimizer(fused_agent, cfg)
    assert fused_opt.param_groups[0]["fused"]
    params = cfg.ppo
    fused = MinibatchStep(fused_agent, fused_opt, params)
    plain = MinibatchStep(plain_agent, torch.optim.Adam(plain_agent.parameters(), lr=params.learning_rate,
                                                        eps=params.adam_eps, foreach=False), params)
    batch = {"obs": torch.randn(128, 5), "actions": torch.randn(128, 3), "logprobs": torch.randn(128) - 3,
             "advantages": torch.randn(128), "values": torch.randn(128), "returns": torch.randn(128)}
    for _ in range(20):
        idx = torch.randperm(128)[:64]
        fused(batch, idx)
        plain(batch, idx)
    for (name, p), q in zip(fused_agent.named_parameters(), plain_agent.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.equal(p, q) for p, q in zip(fused_agent.parameters(), start.parameters(), strict=True))


@pytest.mark.slow
def test_a_second_compiled_run_loads_the_compiled_step_from_the_cache(tmp_path: Path) -> None:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    said = []
    for run in ("first", "second"):
        proc = subprocess.run([sys.executable, "-m", "rlctl.cli", "train", "--env", "CartPole-v1", "--steps", "256",
                               "--num-envs", "2", "--set", "ppo.num_steps=128", "--set", "run.compile=true",
                               "--run-dir", str(tmp_path / run), "--quiet"],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        line = next(x for x in proc.stdout.splitlines() if "torch.compile of the minibatch step" in x)
        found = re.search(r": ([\d.]+) s, (\d+) graphs from the cache, (\d+) compiled", line)
        assert found is not None, line
        said.append((float(found[1]), int(found[2]), int(found[3])))
    (cold_s, _, cold_misses), (warm_s, warm_hits, warm_misses) = said
    assert cold_misses > 0 and warm_misses == 0 and warm_hits == cold_misses
    assert warm_s < cold_s
    assert any((tmp_path / "cache").iterdir())
