from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Categorical, Normal

from rlctl.agents.distributions import DiagGaussian, MultiCategorical
from rlctl.agents.normalize import RewardScaler, RunningMeanStd


def test_running_mean_std_matches_numpy_over_uneven_batches() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 4))
    rms = RunningMeanStd((4,), epsilon=0.0 + 1e-12)
    for chunk in np.array_split(data, [1, 5, 17, 400, 401]):
        rms.update(torch.from_numpy(chunk))
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-9)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-6)
    assert rms.mean.dtype == torch.float64


def test_running_mean_std_numpy_path_equals_torch_path() -> None:
    fast, slow = RunningMeanStd((2,)), RunningMeanStd((2,))
    for i in range(20):
        batch = torch.randn(1 + i % 4, 2, generator=torch.Generator().manual_seed(i))
        fast._update_numpy(batch)
        slow._update_torch(batch)
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name), rtol=1e-12, atol=1e-12)


def test_normalize_clips_and_keeps_dtype() -> None:
    rms = RunningMeanStd((1,))
    rms.update(torch.tensor([[0.0], [2.0]]))
    out = rms.normalize(torch.tensor([[1.0], [1000.0]]), clip=5.0)
    assert out.dtype == torch.float32
    assert abs(out[0, 0].item()) < 1e-3 and out[1, 0].item() == 5.0


def test_reward_scaler_divides_by_return_std_without_centering() -> None:
    scaler = RewardScaler()
    scaler.update(torch.tensor([2.0, -2.0, 2.0, -2.0]))
    std = float(np.sqrt(scaler.return_rms.var.item() + 1e-8))
    out = scaler.scale(torch.tensor([1.0, -1.0]), clip=10.0)
    torch.testing.assert_close(out, torch.tensor([1.0 / std, -1.0 / std]))


def test_gaussian_matches_torch_distributions() -> None:
    mean, log_std = torch.randn(5, 3), torch.randn(3)
    ours, ref = DiagGaussian(mean, log_std), Normal(mean, log_std.exp())
    a = ours.sample()
    torch.testing.assert_close(ours.log_prob_dims(a), ref.log_prob(a))
    torch.testing.assert_close(ours.log_prob(a), ref.log_prob(a).sum(-1))
    torch.testing.assert_close(ours.entropy(), ref.entropy().sum(-1))


def test_multicategorical_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 3 + 2)
    ours = MultiCategorical(logits, (3, 2))
    ref = [Categorical(logits=logits[:, :3]), Categorical(logits=logits[:, 3:])]
    a = ours.sample()
    assert a.shape == (6, 2) and a.dtype == torch.int64
    expected = torch.stack([ref[0].log_prob(a[:, 0]), ref[1].log_prob(a[:, 1])], -1)
    torch.testing.assert_close(ours.log_prob_dims(a), expected)
    torch.testing.assert_close(ours.entropy(), ref[0].entropy() + ref[1].entropy())


def test_categorical_sampling_follows_probabilities() -> None:
    torch.manual_seed(0)
    probs = torch.tensor([0.7, 0.2, 0.1])
    dist = MultiCategorical(probs.log().expand(20000, 3), (3,))
    freq = torch.bincount(dist.sample()[:, 0], minlength=3).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def test_gaussian_imitation_moves_the_mean_and_leaves_the_std_alone() -> None:
    mean = torch.zeros(8, 3, requires_grad=True)
    log_std = torch.zeros(3, requires_grad=True)
    teacher = torch.full((8, 3), 0.5)
    dist = DiagGaussian(mean, log_std)
    (-dist.imitation_log_prob(teacher).mean()).backward()
    assert log_std.grad is None  # no path from the imitation term to the std
    assert mean.grad is not None and bool((mean.grad < 0).all())  # toward the teacher's 0.5
    # its value is the full log-density (only the gradient differs), so the logged term means what it says
    torch.testing.assert_close(dist.imitation_log_prob(teacher), dist.log_prob(teacher))
    # a categorical has no scale to guard: the imitation term is the log-probability itself
    cat = MultiCategorical(torch.randn(4, 5), (2, 3))
    actions = torch.tensor([[0, 2], [1, 0], [1, 1], [0, 0]])
    torch.testing.assert_close(cat.imitation_log_prob(actions), cat.log_prob(actions))
