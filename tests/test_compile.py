from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from agents.distributions import ActionSpec
from agents.policy import ActorCritic
from agents.ppo import MinibatchStep


@pytest.mark.slow
def test_compiled_minibatch_step_matches_eager_step() -> None:
    torch.manual_seed(0)
    spec = ActionSpec("continuous", 3, low=(-1.0,) * 3, high=(1.0,) * 3)
    eager_agent = ActorCritic(5, spec, [16, 16])
    compiled_agent = copy.deepcopy(eager_agent)
    params = SimpleNamespace(minibatch_size=32, update_epochs=1, clip_coef=0.2, clip_vloss=True, ent_coef=0.01,
                             vf_coef=0.5, max_grad_norm=0.5, target_kl=None, norm_adv=True)
    eager = MinibatchStep(eager_agent, torch.optim.Adam(eager_agent.parameters(), lr=1e-3, foreach=True), params)
    lr = torch.tensor(1e-3)
    compiled = MinibatchStep(compiled_agent, torch.optim.Adam(compiled_agent.parameters(), lr=lr, foreach=False),
                             params, compile=True)
    batch = {"obs": torch.randn(64, 5), "actions": torch.randn(64, 3), "logprobs": torch.randn(64) - 3,
             "advantages": torch.randn(64), "values": torch.randn(64), "returns": torch.randn(64)}
    for i in range(3):
        idx = torch.randperm(64)[:32]
        a, b = eager(batch, idx), compiled(batch, idx)
        torch.testing.assert_close(a["policy_loss"], b["policy_loss"], rtol=1e-4, atol=1e-5)
        if i == 1:  # an annealed LR is followed by the compiled step
            for group in eager.optimizer.param_groups:
                group["lr"] = 5e-4
            lr.fill_(5e-4)
    for (name, p), q in zip(eager_agent.named_parameters(), compiled_agent.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
