"""Reading training checkpoints with one clear line for a missing, damaged or foreign file."""

from __future__ import annotations

from pathlib import Path

import torch

from .data.poseset import DataError


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """Load a checkpoint written by ``train`` onto the CPU (tensors only, no code).

    Args:
        path: the ``.ckpt`` file.
        what: how the message names it (``checkpoint``, ``model.estimator_ckpt``, ...).

    Raises:
        DataError: the file is missing, unreadable or truncated, or holds no ``state_dict``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        # memory-mapped: checking a file costs no full read; tensors load on first use
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # pickle, zip and torch errors all mean "not a checkpoint"
        raise DataError(f"{path}: not a readable {what} ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise DataError(f"{path}: not a poseaug-pl training checkpoint (no state_dict)")
    return ckpt


def sub_state(ckpt: dict, prefix: str) -> dict:
    """The ``prefix.*`` entries of a checkpoint's ``state_dict``, with the prefix removed."""
    head = prefix + "."
    return {k.removeprefix(head): v for k, v in ckpt["state_dict"].items() if k.startswith(head)}
