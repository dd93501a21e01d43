"""The collector's NumPy inference path agrees with the torch path it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlctl.agents.distributions import ActionSpec
from rlctl.agents.fast_inference import NumpyActorCritic, supports
from rlctl.agents.policy import ActorCritic


def _agent(activation: str = "tanh", normalize: bool = True, actor_obs_dim: int | None = None) -> ActorCritic:
    torch.manual_seed(0)
    spec = ActionSpec(kind="continuous", dim=3, low=(-1.0, -1.0, -2.0), high=(1.0, 1.0, 2.0))
    agent = ActorCritic(5, spec, [32, 32], activation=activation, normalize_obs=normalize, log_std_init=-0.5,
                        actor_obs_dim=actor_obs_dim)
    with torch.no_grad():  # non-trivial statistics and a live output layer, so clipping and scaling matter
        agent.obs_rms.mean.copy_(torch.linspace(-1, 1, 5, dtype=torch.float64))
        agent.obs_rms.var.copy_(torch.linspace(0.5, 4, 5, dtype=torch.float64))
        agent.actor[-1].weight.mul_(100.0)
    return agent


@pytest.mark.parametrize(("activation", "actor_obs_dim"), [("tanh", None), ("relu", None), ("elu", None),
                                                            ("tanh", 3)])  # 3: the last 2 entries critic-only
@pytest.mark.parametrize("normalize", [True, False])
def test_numpy_step_matches_the_torch_path(activation: str, normalize: bool, actor_obs_dim: int | None) -> None:
    agent = _agent(activation, normalize, actor_obs_dim)
    fast = NumpyActorCritic(agent)
    obs = np.random.default_rng(0).normal(0, 3, (4, 5)).astype(np.float32)

    torch.manual_seed(123)
    norm = fast.normalize(obs)
    action, env_action, logp, value = fast.step(norm)

    torch.manual_seed(123)
    with torch.no_grad():
        t_norm = agent.normalize_obs(torch.from_numpy(obs))
        dist = agent.dist(t_norm)
        t_action = dist.sample()
        np.testing.assert_array_equal(norm, t_norm.numpy())
        np.testing.assert_allclose(action, t_action.numpy(), atol=1e-5)
        np.testing.assert_allclose(logp, dist.log_prob_dims(t_action).numpy(), atol=1e-4)
        np.testing.assert_allclose(env_action, agent.to_env_action(t_action).numpy(), atol=1e-5)
        np.testing.assert_allclose(value, agent.value(t_norm).numpy(), atol=1e-5)
    assert np.any(env_action != action)  # the bounds were exercised


def test_numpy_path_sees_in_place_weight_updates() -> None:
    agent = _agent()
    fast = NumpyActorCritic(agent)
    norm = fast.normalize(np.ones((1, 5), dtype=np.float32))
    before = fast.step(norm)[3].copy()
    with torch.no_grad():
        agent.critic[-1].bias.add_(1.0)  # what an optimizer step or load_state_dict does: in place
        agent.obs_rms.update(torch.zeros(7, 5))
    assert fast.step(norm)[3][0] == pytest.approx(before[0] + 1.0, abs=1e-5)
    assert not np.array_equal(fast.normalize(np.ones((1, 5), dtype=np.float32)), norm)


def test_only_cpu_gaussian_mlps_take_the_numpy_path() -> None:
    assert supports(_agent())
    discrete = ActorCritic(5, ActionSpec(kind="discrete", dim=1, nvec=(3,)), [8])
    assert not supports(discrete)
    with pytest.raises(ValueError):
        NumpyActorCritic(discrete)
