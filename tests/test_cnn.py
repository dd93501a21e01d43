"""Pixel encoders and the CNN actor-critic: shapes, in-model pixel scaling, API parity, gradients."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from rlctl.agents.cnn import CnnActorCritic, ImpalaCNN, NatureCNN
from rlctl.agents.distributions import ActionSpec, MultiCategorical
from rlctl.agents.normalize import RewardScaler

PONG = ActionSpec("discrete", 1, (6,))


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Batches here are tiny: intra-op threads only add contention (50x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _frames(batch: int = 3, channels: int = 4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, 84, 84), generator=gen, dtype=torch.uint8)


@pytest.mark.parametrize(("encoder_cls", "features"), [(NatureCNN, 512), (ImpalaCNN, 256)])
def test_encoders_map_uint8_frame_stacks_to_feature_vectors(encoder_cls: type[torch.nn.Module], features: int) -> None:
    torch.manual_seed(0)
    out = encoder_cls(in_channels=4)(_frames())
    assert out.shape == (3, features) and out.dtype == torch.float32
    assert (out >= 0).all() and (out > 0).any()  # ReLU features, not all dead


def test_encoders_take_other_stack_depths() -> None:
    torch.manual_seed(0)
    assert NatureCNN(in_channels=1)(_frames(2, 1)).shape == (2, 512)
    assert ImpalaCNN(in_channels=2, channels=(8, 16))(_frames(2, 2)).shape == (2, 256)


@pytest.mark.parametrize("encoder_cls", [NatureCNN, ImpalaCNN])
def test_pixels_are_scaled_by_1_over_255_inside_the_encoder(encoder_cls: type[NatureCNN | ImpalaCNN]) -> None:
    torch.manual_seed(0)
    encoder = encoder_cls()
    obs = _frames()
    from_uint8 = encoder(obs)
    torch.testing.assert_close(encoder(obs.float()), from_uint8)  # any dtype: raw pixel values
    torch.testing.assert_close(encoder.trunk(obs.float() / 255.0), from_uint8)  # the network sees [0, 1]


def test_nature_encoder_has_the_published_parameter_count() -> None:
    def conv(c_in: int, c_out: int, k: int) -> int:
        return c_in * c_out * k * k + c_out

    side = 7  # 84 -> 20 (8x8 stride 4) -> 9 (4x4 stride 2) -> 7 (3x3 stride 1)
    published = conv(4, 32, 8) + conv(32, 64, 4) + conv(64, 64, 3) + (64 * side * side * 512 + 512)
    assert published == 1_684_128
    assert sum(p.numel() for p in NatureCNN(in_channels=4).parameters()) == published


@pytest.mark.parametrize("encoder", ["nature", "impala"])
def test_actor_critic_mirrors_the_mlp_actor_critic_api(encoder: str) -> None:
    torch.manual_seed(0)
    agent = CnnActorCritic(PONG, encoder=encoder)
    obs = _frames()
    assert agent.normalize_obs(obs) is obs  # no running normalizer: the rollout stores uint8 frames
    assert not hasattr(agent, "obs_rms") and isinstance(agent.reward_scaler, RewardScaler)
    dist = agent.dist(agent.normalize_obs(obs))
    assert isinstance(dist, MultiCategorical)
    actions = dist.sample()
    assert actions.shape == (3, 1) and actions.dtype == torch.int64 and ((actions >= 0) & (actions < 6)).all()
    assert dist.log_prob(actions).shape == (3,)
    torch.testing.assert_close(dist.entropy(), torch.full((3,), math.log(6)), atol=1e-3, rtol=0)  # gain 0.01
    assert agent.value(obs).shape == (3,)
    assert torch.equal(agent.to_env_action(actions), actions)
    greedy = agent(obs)
    assert torch.equal(greedy, dist.mode()) and not greedy.requires_grad


def test_actor_critic_handles_multidiscrete_actions() -> None:
    torch.manual_seed(0)
    agent = CnnActorCritic(ActionSpec("multidiscrete", 2, (3, 4)))
    dist = agent.dist(_frames())
    assert dist.sample().shape == (3, 2) and dist.log_prob_dims(dist.mode()).shape == (3, 2)


@pytest.mark.parametrize("encoder", ["nature", "impala"])
def test_dist_and_value_equals_separate_calls_with_one_encoder_pass(encoder: str) -> None:
    torch.manual_seed(0)
    agent = CnnActorCritic(PONG, encoder=encoder)
    obs = _frames()
    calls: list[int] = []
    agent.encoder.register_forward_hook(lambda *_: calls.append(1))
    dist, value = agent.dist_and_value(obs)
    assert len(calls) == 1
    actions = dist.sample()
    torch.testing.assert_close(dist.log_prob(actions), agent.dist(obs).log_prob(actions))
    torch.testing.assert_close(value, agent.value(obs))


@pytest.mark.parametrize("encoder", ["nature", "impala"])
def test_policy_and_value_losses_reach_the_first_convolution(encoder: str) -> None:
    torch.manual_seed(0)
    agent = CnnActorCritic(PONG, encoder=encoder)
    obs = _frames()
    dist, value = agent.dist_and_value(obs)
    first_conv = agent.encoder.convs[0]
    assert isinstance(first_conv, torch.nn.Conv2d)
    (-dist.log_prob(dist.sample()).mean()).backward(retain_graph=True)
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    first_conv.weight.grad = None
    (value - 1.0).pow(2).mean().backward()
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def test_bad_configurations_are_rejected() -> None:
    with pytest.raises(ValueError, match="discrete"):
        CnnActorCritic(ActionSpec("continuous", 2, low=(-1.0, -1.0), high=(1.0, 1.0)))
    with pytest.raises(ValueError, match="encoder"):
        CnnActorCritic(PONG, encoder="resnet50")
