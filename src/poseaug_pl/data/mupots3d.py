"""MuPoTS-3D's official test annotations to PoseAug's cross-set layout.

``python -m poseaug_pl.prepare_data dataset=mupots3d root=DIR output=FILE.npz``, with ``root``
the unpacked ``MultiPersonTestSet/`` (``TS1`` .. ``TS20``, each with ``annot.mat`` and
``occlusion.mat``, MATLAB v5: read by `matfile.read_mat5`, scipy from the ``datasets`` extra).

MuPoTS-3D (Mehta et al., 3DV 2018) comes from the MPI-INF-3DHP group: the same 17 test joints and
universal skeleton, 2-3 people per frame, 5 indoor sequences (TS1-TS5, 2048 x 2048) and 15
outdoor ones (TS6-TS20, 1920 x 1080). Every valid person of every frame (``isValidFrame``)
becomes a row, in the order sequence, frame, person: 3D from ``univ_annot3`` (camera frame, the
person rescaled to the universal skeleton; what the official evaluation uses) or, with
``annotation=annot3``, true scale; millimetres to metres. 2D from ``annot2`` normalised for the
sequence's image size (``x / w * 2 - 1``, ``y / w * 2 - h / w``). The 17 joints map to PoseAug's
16 as MPI-INF-3DHP's test joints do (`mpi_inf_3dhp.TEST_17_TO_16`).

Rows carry ``subject`` (the sequence), ``action`` (its scene: ``indoor`` or ``outdoor``),
``frame`` (0-based), ``person`` (0-based column of ``annot.mat``), ``occluded`` (N, 16) (the
``occlusion.mat`` flags, mapped as the joints) and ``cam``: the release holds no camera
intrinsics, so each sequence gets a pinhole fitted to all its valid ``annot2`` / ``annot3``
pairs (`fit_intrinsics`; f is about 1,500 px indoors and 1,100-1,190 px outdoors).

A converted folder may hold a subset of the sequences (a development split, say): the
converter takes those present and says which of the 20 it did not find.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from poseaug_pl.data.matfile import read_mat5
from poseaug_pl.data.mpi_inf_3dhp import TEST_17_TO_16
from poseaug_pl.data.poseset import DataError
from poseaug_pl.geometry.camera import intrinsics_9

log = logging.getLogger(__name__)

#: The official sequences, their scene and image size (width, height).
SEQUENCES = {f"TS{k}": ("indoor" if k <= 5 else "outdoor", *((2048, 2048) if k <= 5 else
                                                             (1920, 1080)))
             for k in range(1, 21)}  # fmt: skip
ANNOTATIONS = ("univ_annot3", "annot3")
#: The fields every ``annotations`` entry holds.
FIELDS = ("annot2", "annot3", "univ_annot3", "isValidFrame")
#: Bounds on a sequence's frames x people, far above the release's (the development half: at
#: most 701 frames, 3 people); larger tables are refused before they are read into rows.
MAX_FRAMES, MAX_PEOPLE = 10_000, 16


def fit_intrinsics(x3: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares pinhole ``(f, c)`` (pixels, (2,) each) with ``x2 = f * x3[:2] / x3[2] + c``.

    Args:
        x3: (M, 3) camera-frame points (any unit, in front of the camera).
        x2: (M, 2) their pixels.
    """
    f, c = np.zeros(2), np.zeros(2)
    for a in range(2):
        design = np.stack([x3[:, a] / x3[:, 2], np.ones(len(x3))], 1)
        (f[a], c[a]), *_ = np.linalg.lstsq(design, x2[:, a], rcond=None)
    return f, c


def _field(path: Path, entry, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One numeric field of an ``annotations`` entry, checked to be ``shape`` and finite."""
    value = entry[name] if name in (entry.dtype.names or ()) else None
    value = value[0, 0] if isinstance(value, np.ndarray) and value.shape == (1, 1) else value
    if (
        not isinstance(value, np.ndarray)
        or value.dtype.kind not in "fiub"
        or value.shape != shape
        or not np.isfinite(value).all()
    ):
        got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
        raise DataError(f"{path}: annotations.{name} is {got}, expected finite numbers of shape "
                        f"{shape}")  # fmt: skip
    return value


def read_sequence(folder: Path, annotation: str) -> dict[str, np.ndarray]:
    """``{pose3d (n, 17, 3) mm, pose2d (n, 17, 2) px, true3d (n, 17, 3) mm, frame, person (n,),
    occluded (n, 17), people_frames}`` of a sequence's valid people (``people_frames``: the
    table's frames x people, for the count of people left out)."""
    path = folder / "annot.mat"
    table = read_mat5(path).get("annotations")
    if not isinstance(table, np.ndarray) or table.ndim != 2 or table.dtype != object:
        raise DataError(f"{path}: no 'annotations' table of frames x people")
    frames, people = table.shape
    if not (0 < frames <= MAX_FRAMES and 0 < people <= MAX_PEOPLE):
        raise DataError(f"{path}: annotations has {frames} frames x {people} people; the release "
                        f"holds 1 .. {MAX_FRAMES} x 1 .. {MAX_PEOPLE}")  # fmt: skip
    occ_path = folder / "occlusion.mat"
    occ = read_mat5(occ_path).get("occlusion_labels") if occ_path.is_file() else None
    if occ is not None and (not isinstance(occ, np.ndarray) or occ.shape != table.shape):
        raise DataError(f"{occ_path}: occlusion_labels must be a {frames} x {people} table like "
                        "annot.mat's annotations")  # fmt: skip
    rows: dict[str, list] = {k: [] for k in ("pose3d", "pose2d", "true3d", "frame", "person",
                                             "occluded")}  # fmt: skip
    for i in range(frames):
        for p in range(people):
            entry = table[i, p]
            if not isinstance(entry, np.ndarray) or entry.dtype.names is None:
                raise DataError(f"{path}: annotations({i + 1},{p + 1}) is not a struct with "
                                f"{', '.join(FIELDS)}")  # fmt: skip
            if int(_field(path, entry, "isValidFrame", (1, 1))[0, 0]) != 1:
                continue
            rows["pose3d"].append(_field(path, entry, annotation, (3, 17)).T)
            rows["true3d"].append(_field(path, entry, "annot3", (3, 17)).T)
            rows["pose2d"].append(_field(path, entry, "annot2", (2, 17)).T)
            rows["frame"].append(i)
            rows["person"].append(p)
            flags = np.zeros(17, bool)
            if occ is not None:
                cell = occ[i, p]
                if not isinstance(cell, np.ndarray) or cell.size != 17 or cell.dtype.kind not in "biuf":
                    raise DataError(f"{occ_path}: occlusion_labels({i + 1},{p + 1}) must be 17 "
                                    "flags")  # fmt: skip
                flags = cell.ravel() != 0
            rows["occluded"].append(flags)
    if not rows["frame"]:
        raise DataError(f"{path}: no valid person (isValidFrame is 0 everywhere)")
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["people_frames"] = np.asarray(frames * people)
    return out


def convert_mupots3d(
    root: str | Path,
    split: str = "test",
    progress=None,
    annotation: str = "univ_annot3",
    dropped: dict | None = None,
) -> dict:
    """PoseAug-layout arrays of every valid person in the sequences under ``root``: ``pose3d``
    (N, 16, 3) camera frame, metres; ``pose2d`` (N, 16, 2) normalised; per row ``subject`` (the
    sequence), ``action`` (``indoor`` / ``outdoor``), ``camera`` (0), ``frame``, ``person``,
    ``occluded`` (N, 16) and ``cam`` (the sequence's fitted pinhole, `fit_intrinsics`).
    ``dropped``, if given, receives the count of people left out per reason.

    Raises:
        DataError: another split or annotation, no sequence under ``root``, or a file that is
            unreadable or of the wrong structure; one line.
    """
    if split != "test":
        raise DataError(f"split must be test for mupots3d (its official test set), got {split!r}")
    if annotation not in ANNOTATIONS:
        raise DataError(f"annotation must be one of {list(ANNOTATIONS)}, got {annotation!r}")
    root = Path(root).expanduser()
    if (root / "MultiPersonTestSet").is_dir():  # (the folder above it is fine too)
        root = root / "MultiPersonTestSet"
    names = [n for n in SEQUENCES if (root / n / "annot.mat").is_file()]
    if not names:
        raise DataError(f"{root}: no TS<k>/annot.mat (root is MuPoTS-3D's MultiPersonTestSet "
                        "folder, holding TS1 .. TS20)")  # fmt: skip
    absent = [n for n in SEQUENCES if n not in names]
    if absent:
        log.warning("mupots3d: %d of the 20 sequences are not under %s (%s); converting the %d "
                    "found", len(absent), root, ", ".join(absent), len(names))  # fmt: skip
    parts: dict[str, list] = {k: [] for k in ("pose3d", "pose2d", "subject", "action", "camera",
                                              "frame", "person", "occluded", "cam")}  # fmt: skip
    left_out = 0
    idx = list(TEST_17_TO_16)
    for name in progress(names) if progress else names:
        seq = read_sequence(root / name, annotation)
        scene, w, h = SEQUENCES[name]
        n = len(seq["frame"])
        left_out += int(seq["people_frames"]) - n
        if (seq["true3d"][..., 2] <= 0).any():
            raise DataError(f"{root / name / 'annot.mat'}: annot3 has joints at or behind the "
                            "camera (depth <= 0)")  # fmt: skip
        f, c = fit_intrinsics(seq["true3d"].reshape(-1, 3), seq["pose2d"].reshape(-1, 2))
        if not (np.isfinite(f).all() and (f > 0).all()):
            raise DataError(f"{root / name / 'annot.mat'}: annot2 and annot3 do not fit a camera")
        parts["pose3d"].append(seq["pose3d"][:, idx] / 1000)
        parts["pose2d"].append(seq["pose2d"][:, idx] / w * 2 - [1.0, h / w])
        parts["subject"].append(np.full(n, name))
        parts["action"].append(np.full(n, scene))
        parts["camera"].append(np.zeros(n, np.int8))
        parts["frame"].append(seq["frame"].astype(np.int32))
        parts["person"].append(seq["person"].astype(np.int8))
        parts["occluded"].append(seq["occluded"][:, idx])
        parts["cam"].append(np.tile(intrinsics_9(f, c, w, h), (n, 1)))
    if dropped is not None:
        why = "not valid (isValidFrame 0)"
        dropped[why] = dropped.get(why, 0) + left_out
        if absent:
            dropped["of the 20 sequences not found"] = len(absent)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    for key in ("pose3d", "pose2d"):
        out[key] = out[key].astype(np.float32)
    return out
