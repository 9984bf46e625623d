"""Fake-sample pool for discriminator training, kept on the device (no host sync)."""

from __future__ import annotations

import torch
from torch import nn


class FakePool(nn.Module):
    """Shrivastava et al.'s history pool, vectorised.

    While the pool is not full, every new sample is stored and returned. Once full, each new
    sample, with probability ``swap_prob``, replaces a random stored one and the stored one is
    returned instead; otherwise the new sample is returned. Contents live in buffers, so they
    travel with the module to the device and into checkpoints.

    Args:
        size: capacity (4096 in PoseAug); shape: shape of one sample, e.g. (16, 3).
        swap_prob: 0.5.
    """

    def __init__(self, size: int, shape: tuple[int, ...], swap_prob: float = 0.5):
        super().__init__()
        self.size, self.swap_prob = int(size), float(swap_prob)
        self.register_buffer("items", torch.zeros(self.size + 1, *shape))  # last row: discard
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Store a batch (B, *shape) and return the batch the discriminator should see."""
        b = x.shape[0]
        pos = self.count + torch.arange(b, device=x.device)
        filling = pos < self.size
        swap = ~filling & (torch.rand(b, device=x.device) < self.swap_prob)
        stored = torch.randint(0, self.size, (b,), device=x.device)
        out = torch.where(swap.view(-1, *[1] * (x.dim() - 1)), self.items[stored], x)
        target = torch.where(filling, pos, torch.where(swap, stored, self.size))
        self.items[target] = x.to(self.items.dtype)
        self.count.copy_((self.count + b).clamp(max=self.size))
        return out
