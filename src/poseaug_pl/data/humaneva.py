"""HumanEva-I from VideoPose3D's files to PoseAug's cross-set layout.

``python -m poseaug_pl.prepare_data dataset=humaneva root=DIR output=FILE.npz split=train``.
``root`` holds what VideoPose3D's ``prepare_data_humaneva.py`` writes from the official release:

* ``data_3d_humaneva15.npz``: ``positions_3d["<Split>/<S>"]["<Action> <trial> chunk<k>"]``
  (T, 15, 3) metres, world (mocap) frame;
* ``data_2d_humaneva15_gt.npz``: ``positions_2d[...][...]``, a list of the three colour cameras'
  (T, 15, 2) pixels, the mocap projected through the published calibration (640 x 480 images).

Each chunk becomes three camera views: the 3D rotated into the camera's frame with the
published extrinsics (`EXTRINSICS`: ``X_cam = R^T (X_world - t)`` with R the camera's
orientation), the 2D normalised as ``x / w * 2 - 1``, ``y / w * 2 - h / w``. The 15 joints map to
PoseAug's 16 (`JOINTS_15_TO_16`); HumanEva has no spine joint, so the spine is the midpoint of
pelvis and thorax, in 3D and in 2D. HumanEva's joints come from another marker set than
Human3.6M's (hips, head top), a structural difference no estimator trained on Human3.6M removes.
This is how the development set in ``../shared/data/humaneva/`` was made (the Train split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from poseaug_pl.data.poseset import DataError, load_npz
from poseaug_pl.geometry.rotation import quaternion_to_matrix

#: HumanEva's 15 joints (VideoPose3D's order) for each of PoseAug's 16: pelvis, right hip, knee,
#: ankle, left hip, knee, ankle, spine (None: the pelvis-thorax midpoint), thorax, head (top),
#: left shoulder, elbow, wrist, right shoulder, elbow, wrist.
JOINTS_15_TO_16 = (0, 11, 12, 13, 8, 9, 10, None, 1, 14, 2, 3, 4, 5, 6, 7)
#: The colour cameras' images (pixels).
WIDTH, HEIGHT = 640, 480
#: Per subject, per camera C1-C3: orientation (quaternion w, x, y, z) and position (mm) in the
#: mocap frame, HumanEva-I's published calibration as VideoPose3D lists it.
EXTRINSICS = {
    "S1": (((0.424207, -0.4983646, -0.5802981, 0.4847012), (4062.227, 663.2477, 1528.397)),
           ((0.6503354, -0.7481602, -0.0919284, 0.0941766), (844.8131, -3805.2092, 1504.9929)),
           ((0.0664734, -0.0690535, 0.7416416, -0.6639132), (-797.67377, 3916.3174, 1433.6602))),
    "S2": (((0.4214752, -0.4961493, -0.5838273, 0.4851187), (4112.9121, 626.4929, 1545.2988)),
           ((0.6501393, -0.7476588, -0.0954617, 0.0959808), (923.5740, -3877.9243, 1504.5518)),
           ((0.0699353, -0.0712403, 0.7421637, -0.662742), (-781.4915, 3838.8853, 1444.9929))),
    "S3": (((0.424207, -0.4983646, -0.5802981, 0.4847012), (4062.2271, 663.2477, 1528.3970)),
           ((0.6503354, -0.7481602, -0.0919284, 0.0941766), (844.8131, -3805.2092, 1504.9929)),
           ((0.0664734, -0.0690535, 0.7416416, -0.6639132), (-797.6738, 3916.3174, 1433.6602))),
}  # fmt: skip
#: The splits of VideoPose3D's files.
SPLITS = {"train": "Train/", "validate": "Validate/"}


def rotation_matrix(q) -> np.ndarray:
    """(3, 3) float64 rotation of a quaternion ``(w, x, y, z)`` (`quaternion_to_matrix`)."""
    return quaternion_to_matrix(torch.as_tensor(q, dtype=torch.float64)).numpy()


def world_to_camera(x: np.ndarray, subject: str, camera: int) -> np.ndarray:
    """(T, J, 3) world-frame metres -> the frame of ``subject``'s camera ``camera`` (0-2)."""
    q, t = EXTRINSICS[subject][camera]
    return (np.asarray(x, np.float64) - np.asarray(t) / 1000) @ rotation_matrix(q)


def to_16(x: np.ndarray) -> np.ndarray:
    """(T, 15, C) HumanEva joints -> (T, 16, C) PoseAug joints (`JOINTS_15_TO_16`)."""
    out = [x[:, j] if j is not None else (x[:, 0] + x[:, 1]) / 2 for j in JOINTS_15_TO_16]
    return np.stack(out, axis=1)


def normalise(px: np.ndarray) -> np.ndarray:
    """Pixels of a 640 x 480 image -> ``x / w * 2 - 1``, ``y / w * 2 - h / w``."""
    return np.asarray(px, np.float64) / WIDTH * 2 - np.array([1.0, HEIGHT / WIDTH])


def _check_files(root: Path) -> None:
    """Refuse a ``root`` without VideoPose3D's two HumanEva-I files, saying what it must hold
    (before any progress bar starts)."""
    path3d, path2d = root / "data_3d_humaneva15.npz", root / "data_2d_humaneva15_gt.npz"
    missing = [p.name for p in (path3d, path2d) if not p.is_file()]
    if missing:
        found = sorted(p.name for p in root.glob("*.npz"))[:3] if root.is_dir() else []
        raise DataError(f"{root}: no {' or '.join(missing)}; root is the folder of VideoPose3D's "
                        "HumanEva-I files (data_3d_humaneva15.npz, data_2d_humaneva15_gt.npz: "
                        "VideoPose3D's DATASETS.md makes them)"
                        + (f"; it holds {', '.join(found)} (a converted cross set? use it with "
                           "+data.cross_sets.humaneva=<file>)" if found else ""))  # fmt: skip


def _sequences(root: Path, split: str):
    """``(subject, action, world 3D, [2D per camera])`` of a split, in the files' order."""
    path3d, path2d = root / "data_3d_humaneva15.npz", root / "data_2d_humaneva15_gt.npz"
    pos3d = load_npz(path3d, ("positions_3d",))["positions_3d"]
    pos2d = load_npz(path2d, ("positions_2d",))["positions_2d"]
    if not isinstance(pos3d, dict) or not isinstance(pos2d, dict):
        raise DataError(f"{root}: positions_3d / positions_2d are not {{subject: {{action: ...}}}}")
    for key, actions in pos3d.items():
        if not key.startswith(SPLITS[split]):
            continue
        subject = key.removeprefix(SPLITS[split])
        if subject not in EXTRINSICS:
            raise DataError(f"{path3d}: no published calibration for subject {key!r}")
        for action, x3 in actions.items():
            views = (pos2d.get(key) or {}).get(action)
            if views is None or len(views) != 3:
                raise DataError(f"{path2d}: {key} {action!r} needs the 2D of the 3 cameras")
            yield subject, action, np.asarray(x3), [np.asarray(v) for v in views]


def convert_humaneva(root: str | Path, split: str = "train", progress=None) -> dict:
    """PoseAug-layout arrays of one split: ``pose3d`` (N, 16, 3) camera frame, metres;
    ``pose2d`` (N, 16, 2) normalised; ``subject``, ``action`` (``Walking``, ...), ``chunk``
    (``Walking 1 chunk0``), ``camera`` (0-2) and ``frame`` per row; chunks in the files' order,
    each as its three cameras' views. Every frame is kept (VideoPose3D's preparation already
    split the mocap's broken stretches out of the chunks).

    Args:
        root: the folder of VideoPose3D's HumanEva-I files; split: ``train`` or ``validate``.
        progress: optional callable wrapping the iterable of sequences (a progress bar).

    Raises:
        DataError: a missing or unreadable file, an unknown subject, a chunk without its three
            cameras' 2D or whose 2D and 3D lengths differ, or an unknown split; one line.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {sorted(SPLITS)} for humaneva, got {split!r}")
    root = Path(root).expanduser()
    _check_files(root)
    seqs = _sequences(root, split)
    parts = {k: [] for k in ("pose3d", "pose2d", "subject", "action", "chunk", "camera", "frame")}
    for subject, action, x3, views in progress(seqs) if progress else seqs:
        for cam, x2 in enumerate(views):
            if x2.shape[:2] != x3.shape[:2] or x3.shape[1:] != (15, 3) or x2.shape[2] != 2:
                raise DataError(f"{root}: {subject} {action!r} camera {cam}: 2D {x2.shape} and "
                                f"3D {x3.shape} are not (T, 15, 2) and (T, 15, 3)")  # fmt: skip
            parts["pose3d"].append(to_16(world_to_camera(x3, subject, cam)))
            parts["pose2d"].append(to_16(normalise(x2)))
            n = len(x3)
            parts["subject"].append(np.full(n, subject))
            parts["action"].append(np.full(n, action.split(" ")[0]))
            parts["chunk"].append(np.full(n, action))
            parts["camera"].append(np.full(n, cam, np.int8))
            parts["frame"].append(np.arange(n, dtype=np.int32))
    if not parts["pose3d"]:
        raise DataError(f"{root}: no {split} sequences in data_3d_humaneva15.npz")
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["pose3d"], out["pose2d"] = (
        out["pose3d"].astype(np.float32),
        out["pose2d"].astype(np.float32),
    )
    return out
