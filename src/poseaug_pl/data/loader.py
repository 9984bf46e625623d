"""Batches sliced from whole tensors by index: no per-sample ``__getitem__``, no workers."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class EpochSampler:
    """Index order of one epoch: a seeded permutation (or the identity), sharded by rank.

    Lightning calls `set_epoch` at the start of every epoch (it looks for ``loader.sampler``),
    so a resumed run sees the same order as an uninterrupted one. Every rank draws the same
    permutation and takes every ``world_size``-th index. Shuffled (training) shards are
    truncated to equal length, so every rank runs the same number of steps; in-order
    (evaluation) shards keep every sample exactly once, so metrics summed across ranks equal
    a single-process evaluation.
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n
        if self.shuffle:
            return self.n // self.world_size
        return len(range(self.rank, self.n, self.world_size))

    def indices(self, device: torch.device | str = "cpu", pass_index: int = 0) -> torch.Tensor:
        """(len(self),) int64 indices of this rank for the current epoch (and pass of it, for
        a loader that makes several), on ``device``."""
        if self.shuffle:
            seed = self.seed * 100_003 + self.epoch + pass_index * 1_000_003
            gen = torch.Generator().manual_seed(seed)
            idx = torch.randperm(self.n, generator=gen)
        else:
            idx = torch.arange(self.n)
        if self.world_size > 1:
            keep = self.n // self.world_size * self.world_size if self.shuffle else self.n
            idx = idx[:keep][self.rank :: self.world_size]
        return idx.to(device)


class TensorBatches:
    """Iterable of dict batches gathered from same-length tensors kept on one device.

    Args:
        tensors: name -> (N, ...) tensor, all on the same device.
        batch_size: rows per batch.
        sampler: the index order (default: in order, one rank).
        drop_last: drop a final incomplete batch (for BatchNorm-trained networks).
        passes: passes over the tensors per epoch, each in its own order (the released
            schedule's GAN pass and real pass, `poseaug_pl.training.schedules.EpochPhases`).

    Every batch also holds ``index``: the rows' positions in the tensors.
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        batch_size: int,
        sampler: EpochSampler | None = None,
        drop_last: bool = False,
        passes: int = 1,
    ):
        n = {len(v) for v in tensors.values()}
        if len(n) != 1:
            raise ValueError(f"tensors must have equal lengths, got {sorted(n)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors, self.batch_size, self.drop_last = tensors, int(batch_size), drop_last
        self.passes = int(passes)
        self.sampler = sampler or EpochSampler(n.pop(), shuffle=False)
        self.batch_sampler = None  # Lightning inspects DataLoader-like attributes
        self.device = next(iter(tensors.values())).device

    @property
    def per_pass(self) -> int:
        """Batches of one pass."""
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        return self.passes * self.per_pass

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for p in range(self.passes):
            yield from self._one_pass(p)

    def _one_pass(self, pass_index: int) -> Iterator[dict[str, torch.Tensor]]:
        contiguous = not self.sampler.shuffle and self.sampler.world_size == 1
        idx = self.sampler.indices(self.device, pass_index)
        for b in range(self.per_pass):
            if contiguous:  # plain slices: views, no gather
                sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                batch = {k: v[sl] for k, v in self.tensors.items()}
                batch["index"] = idx[sl]
            else:
                i = idx[b * self.batch_size : (b + 1) * self.batch_size]
                batch = {k: v.index_select(0, i) for k, v in self.tensors.items()}
                batch["index"] = i
            yield batch
