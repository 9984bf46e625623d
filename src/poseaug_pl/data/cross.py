"""Cross-dataset test sets (MPI-INF-3DHP, 3DPW, ...) in PoseAug's npz layout.

Each file holds ``pose3d`` (N, 16, 3), camera frame, metres, and ``pose2d`` (N, 16, 2) in
normalised screen coordinates (``u / w * 2 - 1``, ``v / w * 2 - h / w``). An optional ``cam``
(N, 9) holds normalised intrinsics; sets without it are evaluation-only. Optional ``subject`` and
``action`` (N,) strings (``prepare_data``'s converters write them: 3DHP's sequence and scene,
HumanEva-I's subject and action) give the set per-action tables, as Human3.6M's, and an optional
``dataset`` (a string: ``mpi_inf_3dhp``, ``3dpw``, ``humaneva`` or ``mupots3d``) names the benchmark whose
tables ``evaluate`` prints (`evaluation.protocols`); a file without it is known by its set name
(`protocol_of`). Optional ``camera`` and ``frame`` (N,) integers go with the rows into
``evaluate``'s saved predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from poseaug_pl.data.layouts import coco_likeness
from poseaug_pl.data.poseset import DataError, PoseSet, check_array, check_units, load_npz
from poseaug_pl.geometry import skeleton

#: The benchmarks with their own tables, and the set names that stand for them.
PROTOCOLS = ("mpi_inf_3dhp", "3dpw", "humaneva", "mupots3d")
ALIASES = {"mpiinf3dhp": "mpi_inf_3dhp", "3dhp": "mpi_inf_3dhp", "mpi3d": "mpi_inf_3dhp",
           "3dpw": "3dpw", "pw3d": "3dpw", "humaneva": "humaneva", "mupots": "mupots3d"}  # fmt: skip


def protocol_of(name: str) -> str | None:
    """The benchmark a set name stands for (``mpi_inf_3dhp``, ``3dhp``, ``pw3d``, ``humaneva``,
    a ``_test`` or similar suffix allowed), or None."""
    key = "".join(c for c in name.lower() if c.isalnum())
    return next((p for a, p in ALIASES.items() if key.startswith(a)), None)


def _labels(path, data: dict, key: str, n: int) -> tuple[tuple[str, ...], torch.Tensor] | None:
    """Names in order of first appearance and each row's index of an optional (N,) string column."""
    if key not in data:
        return None
    labels = data[key]
    if labels.shape != (n,) or labels.dtype.kind not in "US":
        raise DataError(f"{path}: '{key}' must be (N,) strings, got {labels.dtype} {labels.shape}")
    names, first, index = np.unique(labels.astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first)
    return tuple(str(a) for a in names[order]), torch.as_tensor(np.argsort(order)[index])


def _ints(path, data: dict, key: str, n: int) -> torch.Tensor | None:
    """An optional (N,) integer column (``camera``, ``frame``) as int64, or None."""
    if key not in data:
        return None
    column = data[key]
    if column.shape != (n,) or column.dtype.kind not in "iu":
        raise DataError(f"{path}: '{key}' must be (N,) integers, got {column.dtype} {column.shape}")
    return torch.as_tensor(column.astype(np.int64))


def load_cross_set(path: str | Path, name: str | None = None) -> PoseSet:
    """Read one cross-dataset test set.

    Args:
        path: the ``.npz`` file.
        name: the set's name (default: the file's stem), used in metrics and logs.

    Returns:
        A `PoseSet` with one sequence per frame; its subjects and actions from the file's
        columns (else one pseudo-subject and action, ``name``), its `protocol` from ``dataset``
        (else the name's, `protocol_of`).

    Raises:
        DataError: missing file or key, wrong shape or joint count, NaN/inf, N mismatch, no
            rows, a label column that is not (N,) strings, or an unknown ``dataset``.
    """
    path = Path(path).expanduser()
    ids = ("camera", "frame")
    data = load_npz(
        path, ("pose3d", "pose2d"), optional=("cam", "subject", "action", "dataset", *ids)
    )
    pose3d, pose2d = data["pose3d"], data["pose2d"]
    for key, arr in (("pose3d", pose3d), ("pose2d", pose2d)):
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
            raise DataError(f"{path}: '{key}' is not a numeric array")
    if pose2d.ndim == 3 and pose2d.shape[1:] == (17, 2) and np.isfinite(pose2d).all():
        ok = np.ones(pose2d.shape[:2], bool)
        if coco_likeness(pose2d, ok) < 1:
            raise DataError(f"{path}: 'pose2d' has 17 joints in COCO's order (face first); "
                            "cross sets use Human3.6M's 17 or PoseAug's 16 joints (see "
                            "poseaug_pl.data.layouts to convert)")  # fmt: skip
    for key, arr, c in (("pose3d", pose3d, 3), ("pose2d", pose2d, 2)):
        if arr.ndim == 3 and arr.shape[1] in (17, 32) and arr.shape[2] == c:
            arr = skeleton.remap_joints(arr, skeleton.layout_for(arr.shape[1]))
        check_array(path, key, arr, (skeleton.NUM_JOINTS, c))
        if key == "pose3d":
            pose3d = arr
        else:
            pose2d = arr
    check_units(path, pose3d, pose2d)
    if len(pose3d) != len(pose2d):
        raise DataError(f"{path}: 'pose3d' has {len(pose3d)} rows but 'pose2d' has {len(pose2d)}")
    if len(pose3d) == 0:
        raise DataError(f"{path}: the set is empty")
    cam = None
    if "cam" in data:
        cam = data["cam"]
        check_array(path, "cam", cam, (9,))
        if len(cam) != len(pose3d):
            raise DataError(f"{path}: 'cam' has {len(cam)} rows, expected {len(pose3d)}")
        cam = torch.as_tensor(cam, dtype=torch.float32)
    n = len(pose3d)
    name = name or path.stem
    protocol = protocol_of(name)
    if "dataset" in data:
        dataset = data["dataset"]
        if (
            not isinstance(dataset, np.ndarray)
            or dataset.shape != ()
            or str(dataset) not in PROTOCOLS
        ):
            raise DataError(f"{path}: 'dataset' must be one of {list(PROTOCOLS)}, got "
                            f"{str(dataset)[:40]!r}")  # fmt: skip
        protocol = str(dataset)
    zeros = torch.zeros(n, dtype=torch.int64)
    subjects, subject = _labels(path, data, "subject", n) or ((name,), zeros)
    actions, action = _labels(path, data, "action", n) or ((name,), zeros)
    return PoseSet(
        name=name,
        pose3d=torch.as_tensor(np.asarray(pose3d), dtype=torch.float32),
        pose2d=torch.as_tensor(np.asarray(pose2d), dtype=torch.float32),
        cam=cam,
        subject=subject,
        action=action,
        sequence=torch.arange(n),
        subjects=subjects,
        actions=actions,
        protocol=protocol,
        **{k: _ints(path, data, k, n) for k in ids},
    )
