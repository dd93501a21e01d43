"""Running statistics that live inside the policy module, so they travel with checkpoints and export.

Keeping normalizers as ``nn.Module`` buffers (not env wrappers) is what makes a saved policy usable
on its own: evaluation, ``enjoy`` and ONNX export see exactly the statistics training used.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Mean and variance of a stream of batches, merged with the parallel algorithm (Chan et al. 1979).

    Buffers are float64 so that millions of updates do not drift; ``normalize`` casts back to the
    input dtype.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        # A tiny prior count avoids a division by zero before the first update (as in baselines).
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Fold a batch ``[B, *shape]`` into the statistics."""
        if self.mean.device.type == "cpu":
            self._update_numpy(batch)
        else:
            self._update_torch(batch)

    def _update_numpy(self, batch: torch.Tensor) -> None:
        self.update_numpy(batch.detach().cpu().numpy())

    def update_numpy(self, batch: np.ndarray) -> None:
        """:meth:`update` for a NumPy batch on CPU buffers.

        Called once per env step: NumPy on the buffers' shared memory is ~4x cheaper than a dozen
        tiny torch ops, and computes the same float64 result.
        """
        x = np.asarray(batch).astype(np.float64, copy=False)
        mean, var, count = self.mean.numpy(), self.var.numpy(), self.count.numpy()
        b_count = x.shape[0]
        if b_count == 1:  # the common one-env case: exactly what mean/var of one row give
            b_mean, b_var = x[0], np.zeros_like(x[0])
        else:  # the reductions np.mean / np.var perform, without their per-call overhead
            b_mean = np.add.reduce(x, axis=0) / b_count
            centred = x - b_mean
            b_var = np.add.reduce(centred * centred, axis=0) / b_count
        delta = b_mean - mean
        total = count + b_count
        m2 = var * count + b_var * b_count + delta * delta * (count * b_count / total)
        mean += delta * (b_count / total)
        var[...] = m2 / total
        count[...] = total

    def _update_torch(self, batch: torch.Tensor) -> None:
        batch = batch.to(self.mean.device, torch.float64)
        batch_mean = batch.mean(dim=0)
        batch_var = batch.var(dim=0, unbiased=False)
        batch_count = batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        new_mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta.pow(2) * self.count * batch_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor, clip: float, eps: float = 1e-8) -> torch.Tensor:
        """``clip((x - mean) / sqrt(var + eps), ±clip)`` in x's dtype."""
        mean = self.mean.to(x.device, x.dtype)
        std = torch.sqrt(self.var + eps).to(x.device, x.dtype)
        return torch.clamp((x - mean) / std, -clip, clip)


class RewardScaler(nn.Module):
    """Divides rewards by the running std of the discounted return (the VecNormalize scheme).

    The per-env running return is trainer state (it resets at episode ends); only the return
    statistics are module buffers, so they are checkpointed with the policy.
    """

    def __init__(self) -> None:
        super().__init__()
        self.return_rms = RunningMeanStd(())

    @torch.no_grad()
    def update(self, discounted_returns: torch.Tensor) -> None:
        """Fold the current running returns ``[N]`` of all envs into the statistics."""
        self.return_rms.update(discounted_returns.reshape(-1))

    def scale_numpy(self, rewards: np.ndarray, clip: float, eps: float = 1e-8) -> np.ndarray:
        """:meth:`scale` for NumPy rewards (the per-step path of CPU samplers; the same float64 ops)."""
        std = np.sqrt(self.return_rms.var.detach().cpu().numpy() + eps)
        return np.clip(rewards / std, -clip, clip)

    def scale(self, rewards: torch.Tensor, clip: float, eps: float = 1e-8) -> torch.Tensor:
        """Rewards divided by the return std (not centred: centring would change the optimum)."""
        std = torch.sqrt(self.return_rms.var + eps).to(rewards.device, rewards.dtype)
        return torch.clamp(rewards / std, -clip, clip)
