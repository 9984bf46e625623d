"""3DPW from its official release to PoseAug's cross-set layout.

``python -m poseaug_pl.prepare_data dataset=3dpw root=DIR output=FILE.npz split=test``, with
``root`` the unpacked ``sequenceFiles/`` folder (``train/``, ``validation/``, ``test/``, one
pickle per sequence). The pickles were written by Python 2: they are read with the restricted
unpickler (`poseaug_pl.data.safe_pickle`, latin-1 strings), never with plain ``pickle``.

Per sequence and actor, the frames whose camera pose is valid (``campose_valid``) become rows:
``jointPositions`` (24 SMPL joints, world frame, metres) moved into the frame's camera with
``cam_poses`` (world to camera, 4 x 4), mapped to PoseAug's 16 joints (`SMPL_TO_16`) and
projected with ``cam_intrinsics`` into the portrait 1080 x 1920 image (ground-truth 2D, as the
other cross sets) and normalised by the frame's longer side, as the PoseAug authors normalised
3DPW (their issue #23: the frame padded to a 1920 x 1920 square, so that every coordinate lies
within +-1 as in Human3.6M): ``x / 1920 * 2 - 1``, ``y / 1920 * 2 - 1``. Each row's ``cam`` holds
its sequence's intrinsics in the same units.

How SMPL's joints differ from Human3.6M's: SMPL's hips are the femur heads and its pelvis sits
above their midpoint; it has no head top (the head joint is the skull's centre) and no joint
where Human3.6M's spine is (we take the pelvis-neck midpoint, as for HumanEva-I). An estimator
trained on Human3.6M keeps a structural error on these joints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poseaug_pl.data.poseset import DataError
from poseaug_pl.geometry.camera import intrinsics_9

#: SMPL's 24 joints for each of PoseAug's 16: pelvis 0, right hip 2, knee 5, ankle 8, left hip
#: 1, knee 4, ankle 7, spine (None: the pelvis-neck midpoint), thorax = neck 12, head 15 (the
#: skull's centre), left shoulder 16, elbow 18, wrist 20, right shoulder 17, elbow 19, wrist 21.
SMPL_TO_16 = (0, 2, 5, 8, 1, 4, 7, None, 12, 15, 16, 18, 20, 17, 19, 21)
#: 3DPW's portrait video frames (pixels), and the side its 2D is normalised by: the longer one.
WIDTH, HEIGHT = 1080, 1920
SIDE = max(WIDTH, HEIGHT)
SPLITS = ("train", "validation", "test")


def to_16(x: np.ndarray) -> np.ndarray:
    """(T, 24, C) SMPL joints -> (T, 16, C) PoseAug joints (`SMPL_TO_16`)."""
    return np.stack([x[:, j] if j is not None else (x[:, 0] + x[:, 12]) / 2
                     for j in SMPL_TO_16], axis=1)  # fmt: skip


def intrinsics(k: np.ndarray) -> np.ndarray:
    """A 3 x 3 pixel ``cam_intrinsics`` as 9 normalised intrinsics (`geometry.camera`), in the
    units of the converted 2D (the longer side `SIDE`)."""
    return intrinsics_9([k[0, 0], k[1, 1]], [k[0, 2], k[1, 2]], SIDE, SIDE)


def read_sequence(path: Path) -> dict:
    """One sequence file's dict, read without running code (`safe_pickle_load`, latin-1)."""
    from poseaug_pl.data.safe_pickle import safe_pickle_load

    try:
        with open(path, "rb") as f:
            seq = safe_pickle_load(f, path, encoding="latin1")
    except DataError:
        raise
    except Exception as e:  # a damaged or foreign file
        raise DataError(f"{path}: not a readable 3DPW sequence file ({type(e).__name__})") from None
    keys = ("jointPositions", "cam_poses", "campose_valid", "cam_intrinsics")
    if not isinstance(seq, dict) or any(k not in seq for k in keys):
        raise DataError(f"{path}: not a 3DPW sequence file (needs {', '.join(keys)})")
    return seq


def convert_3dpw(
    root: str | Path, split: str = "test", progress=None, dropped: dict | None = None
) -> dict:
    """PoseAug-layout arrays of one split: ``pose3d`` (N, 16, 3) camera frame, metres,
    ``pose2d`` (N, 16, 2) normalised by the longer side, and per row ``subject`` (the sequence),
    ``actor`` (0 or 1), ``camera`` (0), ``frame`` (the image's index) and ``cam``. ``dropped``,
    if given, receives the count of actor-frames left out per reason.

    Raises:
        DataError: an unknown split, a missing folder, an unreadable, foreign or code-carrying
            file, or arrays of the wrong shape; one line naming the file.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {list(SPLITS)} for 3dpw, got {split!r}")
    root = Path(root).expanduser()
    if not (root / split).is_dir() and (root / "sequenceFiles" / split).is_dir():
        root = root / "sequenceFiles"  # the dataset's own root: its sequenceFiles folder
    folder = root / split
    files = sorted(folder.glob("*.pkl"))
    if not files:
        raise DataError(f"{folder}: no sequence files (*.pkl); root is 3DPW's folder (or its "
                        "sequenceFiles folder)")  # fmt: skip
    parts = {k: [] for k in ("pose3d", "pose2d", "subject", "actor", "camera", "frame", "cam")}
    for path in progress(files) if progress else files:
        seq = read_sequence(path)
        poses = np.asarray(seq["cam_poses"], np.float64)  # (T, 4, 4) world -> camera
        k = np.asarray(seq["cam_intrinsics"], np.float64)
        for actor, (joints, valid) in enumerate(zip(seq["jointPositions"], seq["campose_valid"])):
            joints = np.asarray(joints, np.float64).reshape(len(joints), 24, 3)
            valid = np.asarray(valid).astype(bool)
            if len(joints) != len(poses) or len(valid) != len(poses) or k.shape != (3, 3):
                raise DataError(f"{path}: actor {actor}: {len(joints)} joint frames, "
                                f"{len(valid)} valid flags, {len(poses)} camera poses")  # fmt: skip
            frames = np.flatnonzero(valid)
            if dropped is not None:
                why = "no valid camera pose (campose_valid 0)"
                dropped[why] = dropped.get(why, 0) + len(valid) - len(frames)
            rot, t = poses[frames, :3, :3], poses[frames, :3, 3]
            cam = np.einsum("tij,tnj->tni", rot, joints[frames]) + t[:, None]
            x3 = to_16(cam)
            px = np.einsum("ij,tnj->tni", k, x3)
            x2 = px[..., :2] / px[..., 2:] / SIDE * 2 - 1.0
            name = str(seq.get("sequence", path.stem))
            parts["pose3d"].append(x3)
            parts["pose2d"].append(x2)
            parts["subject"].append(np.full(len(frames), name))
            parts["actor"].append(np.full(len(frames), actor, np.int8))
            parts["camera"].append(np.zeros(len(frames), np.int8))
            parts["frame"].append(frames.astype(np.int32))
            parts["cam"].append(np.tile(intrinsics(k), (len(frames), 1)))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    if not len(out["pose3d"]):
        raise DataError(f"{folder}: no frame with a valid camera pose")
    for key in ("pose3d", "pose2d"):
        out[key] = out[key].astype(np.float32)
    return out
