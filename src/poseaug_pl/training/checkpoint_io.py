"""Checkpoint files written atomically: a full disk never replaces a good checkpoint.

Lightning's `TorchCheckpointIO` saves through an fsspec transaction that writes a temporary file
and then *copies* it over the target, so a disk that fills up during the copy leaves a truncated
``best.ckpt`` where a good one was. `AtomicCheckpointIO` writes the new checkpoint to a temporary
file in the checkpoint's own folder, flushes it to the disk (fsync) and renames it into place
(`utils.atomic_output`): the old file stays intact until the new one is complete, and a failed
write removes the partial file and raises `config.WriteFailed` (one line, exit 1 on the
command line). Loading is always ``weights_only=True``: a checkpoint is data, never code.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from poseaug_pl.utils import atomic_output


def _write(checkpoint: dict, file) -> None:
    """Serialise ``checkpoint`` into the open binary ``file`` (a file object, not a path: then
    an `OSError` of the disk surfaces in the exception chain instead of C++'s bare message)."""
    torch.save(checkpoint, file)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic, fsync'd saves and ``weights_only=True`` loads.

    Passed to every Trainer the package builds (``plugins=[AtomicCheckpointIO()]``): training
    (`train.build_trainer`) and evaluation.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        """Write ``checkpoint`` to ``path`` through a temporary file and an atomic rename.

        Raises:
            config.WriteFailed: the file could not be written (``path`` is left as it was).
            TypeError: ``storage_options`` given (not supported, as in Lightning's plugin).
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            _write(checkpoint, f)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict:
        """Load ``path`` with ``weights_only=True`` whatever the caller asks (tensors and plain
        containers only: a checkpoint never runs code)."""
        where = {} if map_location is None else {"map_location": map_location}  # else Lightning's
        return super().load_checkpoint(path, weights_only=True, **where)
