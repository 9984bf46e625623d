"""MPI-INF-3DHP's official test set to PoseAug's cross-set layout.

``python -m poseaug_pl.prepare_data dataset=mpi_inf_3dhp root=DIR output=FILE.npz``, with
``root`` the unpacked ``mpi_inf_3dhp_test_set/`` (``TS1`` .. ``TS6``, each with its
``annot_data.mat``, MATLAB v7.3, i.e. HDF5: read with h5py, the ``datasets`` extra).

Every valid frame (``valid_frame``) of the six sequences becomes a row: 3D from ``univ_annot3``
(camera frame, the subject rescaled to Human3.6M's universal skeleton; what the official
evaluation script, SPIN's test file and the PoseAug authors' 2,929-frame file use) or, with
``annotation=annot3``, the true-scale 3D; millimetres to metres. 2D from ``annot2``, the pixels of
the real image (2048 x 2048 in the studio, TS1-TS4; 1920 x 1080 outdoors, TS5-TS6), normalised
as ``x / w * 2 - 1``, ``y / w * 2 - h / w``. With ``univ_annot3`` the 2D is the real subject's, so
the pair is not an exact projection (as in the published protocol). Each row also carries its
``scene``: ``GS`` (green screen, TS1-TS2), ``noGS`` (TS3-TS4) or ``outdoor`` (TS5-TS6), and its
``activity`` (1-7: stand/walk, exercise, sit, reach/crouch, on the floor, sports, misc.).

The 17 test joints map to PoseAug's 16 (`TEST_17_TO_16`) as the PoseAug authors' file has them:
the thorax is 3DHP's neck and the head is its head top; 3DHP's own head joint is dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poseaug_pl.data.poseset import DataError

#: The 17 test joints (head top, neck, right shoulder, elbow, wrist, left shoulder, elbow,
#: wrist, right hip, knee, ankle, left hip, knee, ankle, pelvis, spine, head) for each of
#: PoseAug's 16: pelvis, right hip, knee, ankle, left hip, knee, ankle, spine, thorax (= neck),
#: head (= head top), left shoulder, elbow, wrist, right shoulder, elbow, wrist.
TEST_17_TO_16 = (14, 8, 9, 10, 11, 12, 13, 15, 1, 0, 5, 6, 7, 2, 3, 4)
#: Sequence -> (scene, image width, image height).
SEQUENCES = {
    "TS1": ("GS", 2048, 2048), "TS2": ("GS", 2048, 2048),
    "TS3": ("noGS", 2048, 2048), "TS4": ("noGS", 2048, 2048),
    "TS5": ("outdoor", 1920, 1080), "TS6": ("outdoor", 1920, 1080),
}  # fmt: skip
ANNOTATIONS = ("univ_annot3", "annot3")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise DataError("reading MPI-INF-3DHP's annot_data.mat needs h5py: "
                        "pip install 'poseaug-pl[datasets]'") from None  # fmt: skip
    return h5py


def read_sequence(path: Path, annotation: str) -> dict[str, np.ndarray]:
    """``{pose3d (n, 17, 3) mm, pose2d (n, 17, 2) px, valid (n,), activity (n,)}`` of one
    ``annot_data.mat``."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            keys = (annotation, "annot2", "valid_frame", "activity_annotation")
            missing = [k for k in keys if k not in f]
            if missing:
                raise DataError(f"{path}: no {missing[0]} (needs {', '.join(keys)})")
            data = {name: f[key][()] for name, key in zip(("pose3d", "pose2d", "valid", "activity"),
                                                           keys)}  # fmt: skip
    except OSError as e:
        raise DataError(f"{path}: not a readable MATLAB v7.3 (HDF5) file ({e})") from None
    n = len(data["valid"])
    x3, x2 = np.asarray(data["pose3d"]), np.asarray(data["pose2d"])
    if x3.shape != (n, 1, 17, 3) or x2.shape != (n, 1, 17, 2):
        raise DataError(f"{path}: {annotation} {x3.shape} / annot2 {x2.shape}, expected "
                        f"({n}, 1, 17, 3) / ({n}, 1, 17, 2)")  # fmt: skip
    return {"pose3d": x3[:, 0], "pose2d": x2[:, 0], "valid": np.asarray(data["valid"]).ravel(),
            "activity": np.asarray(data["activity"]).ravel()}  # fmt: skip


def convert_mpi_inf_3dhp(root: str | Path, split: str = "test", progress=None,
                         annotation: str = "univ_annot3") -> dict:  # fmt: skip
    """PoseAug-layout arrays of the test set's valid frames: ``pose3d`` (N, 16, 3) camera frame,
    metres; ``pose2d`` (N, 16, 2) normalised; per row ``subject`` (the sequence), ``action``
    (the scene), ``activity``, ``camera`` (0) and ``frame`` (0-based in its sequence).

    Raises:
        DataError: another split or annotation, a missing sequence or key, a file of the wrong
            shape, or h5py missing; one line.
    """
    if split != "test":
        raise DataError(
            f"split must be test for mpi_inf_3dhp (its official test set), got {split!r}"
        )
    if annotation not in ANNOTATIONS:
        raise DataError(f"annotation must be one of {list(ANNOTATIONS)}, got {annotation!r}")
    root = Path(root).expanduser()
    names = list(SEQUENCES)
    missing = [n for n in names if not (root / n / "annot_data.mat").is_file()]
    if missing:
        raise DataError(f"{root}: no {missing[0]}/annot_data.mat (root is the folder holding "
                        "TS1 .. TS6 of mpi_inf_3dhp_test_set)")  # fmt: skip
    parts = {k: [] for k in ("pose3d", "pose2d", "subject", "action", "activity", "camera",
                             "frame")}  # fmt: skip
    for name in progress(names) if progress else names:
        seq = read_sequence(root / name / "annot_data.mat", annotation)
        scene, w, h = SEQUENCES[name]
        frames = np.flatnonzero(seq["valid"] == 1)
        idx = list(TEST_17_TO_16)
        parts["pose3d"].append(np.asarray(seq["pose3d"][frames][:, idx], np.float64) / 1000)
        px = np.asarray(seq["pose2d"][frames][:, idx], np.float64)
        parts["pose2d"].append(px / w * 2 - [1.0, h / w])
        parts["subject"].append(np.full(len(frames), name))
        parts["action"].append(np.full(len(frames), scene))
        parts["activity"].append(seq["activity"][frames].astype(np.int8))
        parts["camera"].append(np.zeros(len(frames), np.int8))
        parts["frame"].append(frames.astype(np.int32))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    for key in ("pose3d", "pose2d"):
        out[key] = out[key].astype(np.float32)
    return out
