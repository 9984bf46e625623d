"""Fake-sample pool for discriminator training, kept on the device (no host sync)."""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


class FakePool(nn.Module):
    """Shrivastava et al.'s history pool, vectorised and deterministic.

    While the pool is not full, every new sample is stored and returned. Once full, each new
    sample, with probability ``swap_prob``, replaces a random stored one and the stored one is
    returned instead; otherwise the new sample is returned. (Swapping starts with the first batch
    after the pool has filled; the swapped slots of one batch are distinct, so the result does not
    depend on the order of parallel writes.) Contents live in buffers, so they travel with the
    module to the device and into checkpoints.

    Args:
        size: capacity (4096 in PoseAug); shape: shape of one sample, e.g. (16, 3).
        swap_prob: 0.5.
    """

    def __init__(self, size: int, shape: tuple[int, ...], swap_prob: float = 0.5):
        super().__init__()
        self.size, self.swap_prob = int(size), float(swap_prob)
        self.register_buffer("items", torch.zeros(self.size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Store a batch (B, *shape) and return the batch the discriminator should see."""
        b, dev = x.shape[0], x.device
        if b > self.size:
            raise ValueError(f"batch of {b} exceeds the pool size {self.size}")
        pos = self.count + torch.arange(b, device=dev)
        filling = pos < self.size
        full = self.count >= self.size
        swap = full & (torch.rand(b, device=dev) < self.swap_prob)
        stored = torch.randperm(self.size, device=dev)[:b]  # distinct slots
        out = torch.where(swap.view(-1, *[1] * (x.dim() - 1)), self.items[stored], x)
        # slot -> index of the batch row written there (-1: unchanged); row `size` is a sink
        target = torch.where(filling, pos, torch.where(swap, stored, self.size))
        source = torch.full((self.size + 1,), -1, dtype=torch.long, device=dev)
        source[target] = torch.arange(b, device=dev)
        source = source[: self.size]
        write = (source >= 0).view(-1, *[1] * (x.dim() - 1))
        self.items.copy_(
            torch.where(write, x[source.clamp(min=0)].to(self.items.dtype), self.items)
        )
        self.count.copy_((self.count + b).clamp(max=self.size))
        return out

    def fit_state(self, state: dict, prefix: str) -> None:
        """Empty this pool's entries in a checkpoint's ``state`` (in place) when they have
        another size (another ``pool_size`` or an older layout): a pool is training state only,
        so it starts empty, with a warning, instead of failing the load."""
        items = state.get(f"{prefix}.items")
        if items is not None and items.shape != self.items.shape:
            log.warning("%s in the checkpoint has another size; it starts empty", prefix)
            state[f"{prefix}.items"] = torch.zeros_like(self.items)
            state[f"{prefix}.count"] = torch.zeros_like(self.count)
