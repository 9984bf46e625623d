"""`PoseSet`: a dataset of 2D-3D pose pairs held as whole tensors, and the data error type."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from poseaug_pl.errors import DataError
from poseaug_pl.geometry.skeleton import NUM_JOINTS


def check_array(path, key: str, arr: np.ndarray, shape_tail: tuple[int, ...]) -> None:
    """Raise `DataError` unless ``arr`` is numeric, shaped (N, *shape_tail), and finite.

    Args:
        path: file the array came from (for the message).
        key: name of the array in that file (for the message).
        arr: the array.
        shape_tail: expected trailing shape; -1 matches any size.
    """
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise DataError(f"{path}: '{key}' is not a numeric array")
    tail = arr.shape[1:]
    if len(tail) != len(shape_tail) or any(e not in (-1, a) for a, e in zip(tail, shape_tail)):
        want = ",".join("?" if e == -1 else str(e) for e in shape_tail)
        msg = f"'{key}' has shape {arr.shape}, expected (N,{want})"
        if len(tail) == len(shape_tail) and len(tail) >= 2 and tail[-2] != shape_tail[-2]:
            msg = f"'{key}' has {tail[-2]} joints (shape {arr.shape}), expected {shape_tail[-2]}"
        raise DataError(f"{path}: {msg}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).reshape(len(arr), -1).any(1).sum())
        raise DataError(f"{path}: '{key}' contains NaN or inf values in {bad} of {len(arr)} rows")


@dataclass
class PoseSet:
    """Pose pairs as whole tensors (no per-sample objects).

    Attributes:
        name: the set's name (``train``, ``h36m``, ``synthetic_wild``, a cross-set name, ...).
        pose3d: (N, 16, 3) float32 camera-frame joints in metres (absolute; the root is not
            subtracted, so poses can be re-projected).
        pose2d: (N, 16, 2) float32 2D input in normalised screen coordinates.
        cam: (N, 9) float32 normalised intrinsics (`geometry.camera`), or None when the
            source has no calibration (cross-dataset test sets).
        subject: (N,) int64 index into ``subjects``.
        action: (N,) int64 index into ``actions``.
        sequence: (N,) int64 id of the source sequence (frames of one sequence share it).
        subjects, actions: names for the ids.
        camera: optional (N,) int64 camera index (Human3.6M: 0-3 in `H36M_CAMERA_IDS` order).
        frame: optional (N,) int64 frame number within the source sequence.
        protocol: the benchmark whose tables a cross set reports (``mpi_inf_3dhp``, ``3dpw``,
            ``humaneva``: `evaluation.protocols`), or None.
    """

    name: str
    pose3d: torch.Tensor
    pose2d: torch.Tensor
    cam: torch.Tensor | None
    subject: torch.Tensor
    action: torch.Tensor
    sequence: torch.Tensor
    subjects: tuple[str, ...] = field(default=())
    actions: tuple[str, ...] = field(default=())
    camera: torch.Tensor | None = None
    frame: torch.Tensor | None = None
    protocol: str | None = None

    def __post_init__(self) -> None:
        n = len(self.pose3d)
        if self.pose3d.shape[1:] != (NUM_JOINTS, 3) or self.pose2d.shape != (n, NUM_JOINTS, 2):
            raise ValueError(
                f"{self.name}: pose3d/pose2d must be (N,16,3)/(N,16,2), "
                f"got {tuple(self.pose3d.shape)}/{tuple(self.pose2d.shape)}"
            )
        for f in ("subject", "action", "sequence", "camera", "frame"):
            if getattr(self, f) is not None and len(getattr(self, f)) != n:
                raise ValueError(f"{self.name}: '{f}' has {len(getattr(self, f))} rows, not {n}")
        if self.cam is not None and self.cam.shape != (n, 9):
            raise ValueError(f"{self.name}: cam must be (N,9), got {tuple(self.cam.shape)}")

    def __len__(self) -> int:
        return len(self.pose3d)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The per-row tensors by name (``cam`` omitted when absent)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
        return out

    def select(self, index: torch.Tensor, name: str | None = None) -> PoseSet:
        """Rows picked by a boolean mask or an index tensor, as a new set."""
        picked = {k: v[index] for k, v in self.tensors().items()}
        return replace(self, name=name or self.name, **picked)

    def to(self, device: torch.device | str) -> PoseSet:
        """The same set with every tensor on ``device``."""
        return replace(self, **{k: v.to(device) for k, v in self.tensors().items()})


def load_npz(path: str | Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """Read ``keys`` (required) and ``optional`` keys of an ``.npz`` file into memory.

    Arrays are read here, not lazily later, so a damaged archive (bad CRC, truncated, corrupted
    bytes) fails here with one line. Object arrays (VideoPose3D's dicts) are unpickled without
    running code (`poseaug_pl.data.safe_pickle`) and returned as their ``.item()``.

    Returns:
        ``{key: array or object}`` for the required keys and the optional keys present.

    Raises:
        DataError: a missing or unreadable file, a missing required key, or an object array that
            pickles anything but numpy arrays, dicts, lists, strings and numbers, in one line.
    """
    from poseaug_pl.data.safe_pickle import SafeNpz  # imports this module

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with SafeNpz(path) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing}; found {sorted(data.files)}")
            out = {k: data[k] for k in (*keys, *optional) if k in data.files}
    except DataError:
        raise
    except Exception as e:  # zip, CRC, pickle and dtype errors of every kind
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    return {k: v.item() if v.dtype == object and v.shape == () else v for k, v in out.items()}


#: Root-relative joints of a person lie within this many units of the root in metres; a median
#: farther means another unit (millimetres: hundreds).
MAX_METRES = 5.0
#: Normalised screen coordinates of people in the image lie within about +-1.5; a median
#: magnitude above this means pixels.
MAX_NORMALISED = 5.0


def check_units(path, pose3d: np.ndarray | None = None, pose2d: np.ndarray | None = None,
                key3d: str = "pose3d") -> None:  # fmt: skip
    """Raise `DataError` with a hint when 3D is not in metres or 2D not normalised.

    Args:
        path: the file (for the message).
        pose3d: (N, J, 3) joints, root (joint 0) first; pose2d: (N, J, 2).
    """
    if pose3d is not None and len(pose3d):
        reach = np.median(np.abs(pose3d - pose3d[:, :1]).max(axis=(1, 2)))
        if reach > MAX_METRES:
            raise DataError(
                f"{path}: '{key3d}' looks like millimetres (median joint distance from "
                f"the root {reach:.0f}); the layout wants metres: divide by 1000"
            )
    if pose2d is not None and len(pose2d):
        size = np.median(np.abs(pose2d).max(axis=(1, 2)))
        if size > MAX_NORMALISED:
            raise DataError(f"{path}: 'pose2d' looks like pixels (median largest coordinate "
                            f"{size:.0f}); the layout wants normalised screen coordinates: "
                            "x / w * 2 - [1, h / w] for an image w x h pixels")  # fmt: skip
