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

``dataset=mpi_inf_3dhp_spin`` (`convert_spin`) takes the route the PoseAug authors took instead:
SPIN's processed ``mpi_inf_3dhp_valid.npz`` (SPIN's ``dataset_extras``), which SPIN made from
the same six files: every valid frame, ``univ_annot3`` in metres minus the pelvis and ``annot2``,
its 17 joints placed in SPIN's 24-joint list (`SPIN_24_TO_16` takes them back out, the index the
authors' ``prepare_data_3dhp.py`` uses). The two routes give the same frames in the same order
and the same poses (the official route's 3D is not root-centred, which ``evaluate`` does). SPIN
also drops a frame with a joint outside the image; the authors' script reads exactly 2,929 rows
of SPIN's file, the sum of the valid frames the test set's README lists per sequence (TS1-TS6:
603, 540, 505, 553, 276, 452), so no valid frame was dropped and both routes hold 2,929.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from poseaug_pl.data.poseset import DataError
from poseaug_pl.geometry.camera import intrinsics_9

log = logging.getLogger(__name__)

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
#: SPIN's 24-joint slots of PoseAug's 16 joints (where SPIN put the 17 test joints: neck in its
#: "Neck (LSP)" slot 12, head top in its "Head (H36M)" slot 18, spine in 16).
SPIN_24_TO_16 = (14, 2, 1, 0, 3, 4, 5, 16, 12, 18, 9, 10, 11, 8, 7, 6)
#: Each camera's calibration (the test set's ``ts1-4cameras.calib`` and ``ts5-6cameras.calib``):
#: focal length and sensor size (mm), pixel aspect (y / x) and principal-point offset from the
#: image centre (mm, right and down). The outdoor GoPro's lens distortion is left out (a pinhole).
CALIBRATION = {
    "studio": {"focal": 7.32506, "sensor": (10.0, 10.0), "aspect": 1.00044,
               "offset": (-0.0322884, 0.0929296)},
    "outdoor": {"focal": 8.770747185, "sensor": (10.0, 5.625), "aspect": 0.993236423,
                "offset": (-0.104908645, 0.104899704)},
}  # fmt: skip


def intrinsics(sequence: str) -> np.ndarray:
    """A sequence's 9 normalised intrinsics ``(fx, fy, cx, cy, 0, ...)`` (`geometry.camera`) from
    `CALIBRATION`: studio fx, fy, cx, cy = 1500.2, 1500.8, 1017.4, 1043.0 px (2048 x 2048),
    outdoor 1684.0, 1672.6, 939.9, 560.1 px (1920 x 1080)."""
    _, w, h = SEQUENCES[sequence]
    cal = CALIBRATION["outdoor" if SEQUENCES[sequence][0] == "outdoor" else "studio"]
    px_per_mm = w / cal["sensor"][0]
    fx = cal["focal"] * px_per_mm
    f = np.array([fx, fx * cal["aspect"]])
    c = np.array([w / 2, h / 2]) + np.array(cal["offset"]) * px_per_mm
    return intrinsics_9(f, c, w, h)


#: Valid frames per sequence (the test set's README weights its scenes by them; 2,929 in all).
VALID_FRAMES = {"TS1": 603, "TS2": 540, "TS3": 505, "TS4": 553, "TS5": 276, "TS6": 452}
#: More frames than any sequence of the test set has (TS1 has 6,151).
MAX_FRAMES = 100_000
#: SPIN's file name in its ``dataset_extras``.
SPIN_FILE = "mpi_inf_3dhp_valid.npz"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise DataError("reading MPI-INF-3DHP's annot_data.mat needs h5py: "
                        "pip install 'poseaug-pl[datasets]'") from None  # fmt: skip
    return h5py


#: The most a dataset of one ``annot_data.mat`` may hold (a sequence's is a few megabytes).
MAX_DATASET_BYTES = 256 << 20


def _dataset(f, key: str, path: Path) -> np.ndarray:
    """Dataset ``key`` of the open HDF5 file ``f``, read as data: a plain (hard-linked) dataset
    of numbers stored in the file itself, within `MAX_DATASET_BYTES`. Soft and external links,
    groups, object references, external or virtual storage are refused before anything is read.
    """
    h5py = _h5py()
    link = f.get(key, getlink=True)
    if link is None:
        raise DataError(f"{path}: no {key}")
    if not isinstance(link, h5py.HardLink):
        raise DataError(f"{path}: {key} is a {type(link).__name__}, not a dataset stored in "
                        "this file: refused")  # fmt: skip
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: {key} is a {type(obj).__name__}, not a dataset of numbers")
    if obj.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} holds {obj.dtype}, not numbers")
    if obj.external or obj.is_virtual:
        raise DataError(f"{path}: {key} is stored outside this file (external or virtual "
                        "storage): refused")  # fmt: skip
    size = int(np.prod(obj.shape, dtype=np.float64)) * obj.dtype.itemsize
    if size > MAX_DATASET_BYTES:
        raise DataError(f"{path}: {key} declares {obj.shape} ({size / 2**20:.0f} MiB), more than "
                        f"a sequence holds (at most {MAX_DATASET_BYTES >> 20} MiB)")  # fmt: skip
    return np.asarray(obj[()])


def read_sequence(path: Path, annotation: str) -> dict[str, np.ndarray]:
    """``{pose3d (n, 17, 3) mm, pose2d (n, 17, 2) px, valid (n,), activity (n,)}`` of one
    ``annot_data.mat`` (each dataset read by `_dataset`)."""
    h5py = _h5py()
    keys = (annotation, "annot2", "valid_frame", "activity_annotation")
    try:
        with h5py.File(path, "r") as f:
            names = ("pose3d", "pose2d", "valid", "activity")
            data = {name: _dataset(f, key, path) for name, key in zip(names, keys)}
    except DataError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a readable MATLAB v7.3 (HDF5) file ({why})") from None
    n = len(data["valid"])
    x3, x2 = data["pose3d"], data["pose2d"]
    if x3.shape != (n, 1, 17, 3) or x2.shape != (n, 1, 17, 2) or data["activity"].size != n:
        raise DataError(f"{path}: {annotation} {x3.shape} / annot2 {x2.shape} / "
                        f"activity_annotation {data['activity'].shape}, expected ({n}, 1, 17, 3) "
                        f"/ ({n}, 1, 17, 2) / {n} values")  # fmt: skip
    return {"pose3d": x3[:, 0], "pose2d": x2[:, 0], "valid": data["valid"].ravel(),
            "activity": data["activity"].ravel()}  # fmt: skip


def convert_mpi_inf_3dhp(
    root: str | Path,
    split: str = "test",
    progress=None,
    annotation: str = "univ_annot3",
    dropped: dict | None = None,
) -> dict:
    """PoseAug-layout arrays of the test set's valid frames: ``pose3d`` (N, 16, 3) camera frame,
    metres; ``pose2d`` (N, 16, 2) normalised; per row ``subject`` (the sequence), ``action``
    (the scene), ``activity``, ``camera`` (0), ``frame`` (0-based in its sequence) and ``cam``
    (its sequence's `intrinsics`). ``dropped``, if given, receives the count of frames left out
    per reason.

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
                             "frame", "cam")}  # fmt: skip
    for name in progress(names) if progress else names:
        seq = read_sequence(root / name / "annot_data.mat", annotation)
        scene, w, h = SEQUENCES[name]
        frames = np.flatnonzero(seq["valid"] == 1)
        if len(frames) != VALID_FRAMES[name]:  # another release of the file, or a damaged one
            log.warning("%s: %d valid frames, where the test set's README lists %d: not the "
                        "release the published numbers use (compare its download date and "
                        "size); converted as it is", root / name / "annot_data.mat",
                        len(frames), VALID_FRAMES[name])  # fmt: skip
        if dropped is not None:
            why = "not valid (valid_frame 0)"
            dropped[why] = dropped.get(why, 0) + len(seq["valid"]) - len(frames)
        idx = list(TEST_17_TO_16)
        parts["pose3d"].append(np.asarray(seq["pose3d"][frames][:, idx], np.float64) / 1000)
        px = np.asarray(seq["pose2d"][frames][:, idx], np.float64)
        parts["pose2d"].append(px / w * 2 - [1.0, h / w])
        parts["subject"].append(np.full(len(frames), name))
        parts["action"].append(np.full(len(frames), scene))
        parts["activity"].append(seq["activity"][frames].astype(np.int8))
        parts["camera"].append(np.zeros(len(frames), np.int8))
        parts["frame"].append(frames.astype(np.int32))
        parts["cam"].append(np.tile(intrinsics(name), (len(frames), 1)))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    for key in ("pose3d", "pose2d"):
        out[key] = out[key].astype(np.float32)
    return out


def convert_spin(root: str | Path, split: str = "test", progress=None,
                 dropped: dict | None = None) -> dict:  # fmt: skip
    """`convert_mpi_inf_3dhp`'s arrays (without ``activity``) from SPIN's ``mpi_inf_3dhp_valid.npz``
    (``imgname``, ``part`` (N, 24, 3) pixels and visibility, ``S`` (N, 24, 4) metres and
    visibility), the route of the PoseAug authors' 2,929-frame file. A row with one of the 16
    joints flagged invisible is left out (the authors' script would keep it with that joint
    zeroed; SPIN's real file has none), and ``dropped`` also counts the test set's valid frames
    (`VALID_FRAMES`) missing from the file.

    Args:
        root: the folder holding SPIN's file (its ``dataset_extras``), or the file.

    Raises:
        DataError: another split, a missing or unreadable file or key, an image name outside
            ``TS1`` .. ``TS6``, arrays of the wrong shape or type, or NaN; one line.
    """
    from poseaug_pl.data.poseset import load_npz

    if split != "test":
        raise DataError(f"split must be test for mpi_inf_3dhp_spin, got {split!r}")
    path = Path(root).expanduser()
    path = path / SPIN_FILE if path.is_dir() else path
    data = load_npz(path, ("imgname", "part", "S"))
    names, part, s = (np.asarray(data[k]) for k in ("imgname", "part", "S"))
    n = len(names) if names.ndim == 1 else -1
    if (
        names.dtype.kind not in "US"
        or part.shape != (n, 24, 3)
        or s.shape != (n, 24, 4)
        or part.dtype.kind not in "fiu"
        or s.dtype.kind not in "fiu"
    ):
        raise DataError(f"{path}: imgname {names.dtype} {names.shape}, part {part.dtype} "
                        f"{part.shape}, S {s.dtype} {s.shape}; expected (N,) strings, (N, 24, 3) "
                        "and (N, 24, 4) numbers")  # fmt: skip
    try:
        names = names.astype(str)
    except UnicodeDecodeError:
        raise DataError(f"{path}: 'imgname' holds names that are not text (UTF-8)") from None
    seqs = [next((q for q in name.replace("\\", "/").split("/") if q in SEQUENCES), None)
            for name in (progress(names) if progress else names)]  # fmt: skip
    if None in seqs:
        bad = names[seqs.index(None)]
        raise DataError(f"{path}: image {bad!r} is not in TS1 .. TS6 of the test set")
    seqs = np.array(seqs)
    idx = list(SPIN_24_TO_16)
    bad = ~(np.isfinite(part[:, idx]).all((1, 2)) & np.isfinite(s[:, idx]).all((1, 2)))
    if bad.any():
        raise DataError(f"{path}: NaN or inf in 'part' or 'S' in {int(bad.sum())} of {n} rows")
    seen = (part[:, idx, 2] > 0).all(1) & (s[:, idx, 3] > 0).all(1)
    if dropped is not None:
        dropped["with a joint flagged missing"] = int((~seen).sum())
        short = sum(max(0, v - int((seqs == q).sum())) for q, v in VALID_FRAMES.items())
        dropped["valid frames of the test set not in SPIN's file"] = short
    size = np.array([SEQUENCES[q][1:] for q in seqs], np.float64)  # (N, 2) width, height
    w, h = size[:, :1, None], size[:, 1:, None]
    pose2d = np.asarray(part[:, idx, :2], np.float64) / w * 2 - np.concatenate(
        [np.ones_like(w), h / w], 2
    )
    try:  # imageSequence/img_000001.jpg is frame 0
        frame = [int(Path(name).stem.split("_")[-1]) - 1 for name in names]
    except ValueError:
        raise DataError(
            f"{path}: image names are not <TSk>/imageSequence/img_<frame>.jpg"
        ) from None
    if frame and not 0 <= min(frame) <= max(frame) < MAX_FRAMES:
        raise DataError(f"{path}: an image name gives frame {max(frame, key=abs) + 1}, outside "
                        f"1 .. {MAX_FRAMES} (a test sequence has a few thousand)")  # fmt: skip
    out = {"pose3d": s[:, idx, :3].astype(np.float32), "pose2d": pose2d.astype(np.float32),
           "subject": seqs, "action": np.array([SEQUENCES[q][0] for q in seqs]),
           "camera": np.zeros(n, np.int8), "frame": np.array(frame, np.int32),
           "cam": np.stack([intrinsics(q) for q in seqs])}  # fmt: skip
    out = {k: v[seen] for k, v in out.items()}
    if not len(out["pose3d"]):
        raise DataError(f"{path}: no frame with every joint present")
    return out
