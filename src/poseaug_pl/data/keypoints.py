"""Readers of the 2D keypoint files users have, for lifting (`poseaug_pl.predict`).

* COCO keypoint annotations (``.json`` with ``images`` and ``annotations``; visibility 0 is a
  missing point, 1 or 2 a present one) and a detector's COCO results list (``.json``, a list of
  ``{"image_id", "keypoints": [x, y, score] * 17, "score"}``; no image size in the file).
* VideoPose3D's custom 2D file (``.npz`` with ``positions_2d[video]["custom"][0]`` (T, J, 2)
  pixels and ``metadata`` with ``layout_name`` and ``video_metadata[video] = {"w", "h"}``).
* A plain array (``.npy``, or ``.npz`` holding one array or a ``keypoints`` array) of shape
  (N, J, 2) pixels or (N, J, 3) pixels and score; its rows are the frames of one track.

Every reader returns a `Keypoints` record and raises `DataError` with one line for a file it
cannot use.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poseaug_pl.data.poseset import DataError
from poseaug_pl.data.safe_pickle import SafeNpz
from poseaug_pl.preflight import missing_input


@dataclass
class Keypoints:
    """2D keypoints of N poses as read from a file.

    Attributes:
        xy: (N, J, 2) float64 pixels.
        score: (N, J) float64 confidence (1 for a present point where the file has no scores,
            0 for a missing one).
        image_size: (N, 2) float64 image width and height (NaN rows where unknown), or None
            when the file has none.
        track: (N,) int64 track id (frames of one video share it; -1: a lone image).
        frame: (N,) int64 frame number within the track (the row number for lone images).
        image_id: (N,) int64 COCO image id (-1 where the source has none).
        tracks: names of the track ids (video names).
        kind: what the file was (``coco annotations``, ``coco results``, ``videopose3d npz``,
            ``array``).
        layout: the layout the file names, if any (``coco``, ``h36m17``, ``poseaug16``).
    """

    xy: np.ndarray
    score: np.ndarray
    image_size: np.ndarray | None
    track: np.ndarray
    frame: np.ndarray
    image_id: np.ndarray
    tracks: tuple[str, ...] = field(default=())
    kind: str = "array"
    layout: str | None = None

    def __len__(self) -> int:
        return len(self.xy)


def from_array(arr, path="keypoints", image_size=None) -> Keypoints:
    """A `Keypoints` record of one track from an (N, J, 2|3) array (pixels[, score]).

    Raises:
        DataError: not numeric, another shape, or NaN/inf pixel values.
    """
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{path}: keypoints are not a numeric array (dtype {arr.dtype})")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] not in (2, 3) or len(arr) == 0:
        raise DataError(f"{path}: keypoints have shape {arr.shape}, expected (N, J, 2) pixels or "
                        "(N, J, 3) pixels and score")  # fmt: skip
    arr = arr.astype(np.float64)
    score = arr[..., 2] if arr.shape[2] == 3 else np.ones(arr.shape[:2])
    xy = arr[..., :2]
    bad = ~np.isfinite(xy).all(-1)
    score = np.where(bad | ~np.isfinite(score), 0.0, score)  # a NaN point is a missing point
    n = len(arr)
    return Keypoints(
        np.where(bad[..., None], 0.0, xy),
        score,
        image_size,
        np.zeros(n, np.int64),
        np.arange(n),
        np.full(n, -1, np.int64),
        ("array",),
    )


def _coco_rows(items, path) -> tuple[np.ndarray, np.ndarray]:
    try:
        kp = np.array([a["keypoints"] for a in items], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: a COCO entry has no usable 'keypoints' list ({e})") from None
    if kp.ndim != 2 or kp.shape[1] % 3:
        raise DataError(f"{path}: COCO 'keypoints' must be [x, y, v] * J lists of one length")
    kp = kp.reshape(len(kp), -1, 3)
    return kp[..., :2], kp[..., 2]


def read_coco(path: Path, data) -> Keypoints:
    """COCO annotations (``dict`` with ``images``/``annotations``) or a results ``list``."""
    if isinstance(data, dict) and "annotations" in data:
        items = [a for a in data["annotations"] if "keypoints" in a]
        sizes = {im["id"]: (im["width"], im["height"]) for im in data.get("images", [])
                 if "width" in im and "height" in im}  # fmt: skip
        kind = "coco annotations"
    elif isinstance(data, list) and all(isinstance(a, dict) for a in data):
        items, sizes, kind = data, {}, "coco results"
    else:
        raise DataError(f"{path}: neither COCO annotations (a dict with 'images' and "
                        "'annotations') nor a COCO results list")  # fmt: skip
    if not items:
        raise DataError(f"{path}: no keypoints in the file")
    xy, score = _coco_rows(items, path)
    if kind == "coco annotations":
        score = (score > 0).astype(np.float64)  # visibility flag: 0 = not labelled
    try:
        ids = np.array([int(a.get("image_id", -1)) for a in items], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: an 'image_id' is not an integer of at most 64 bits") from None
    size = None
    if sizes:
        missing = sorted({int(i) for i in ids if i not in sizes})
        if missing:
            raise DataError(f"{path}: no width/height for image ids {missing[:5]} in 'images'")
        size = np.array([sizes[i] for i in ids], dtype=np.float64)
    n = len(items)
    return Keypoints(xy, score, size, np.full(n, -1, np.int64), np.arange(n), ids, kind=kind,
                     layout="coco" if xy.shape[1] == 17 else None)  # fmt: skip


def _videopose_layout(meta: dict) -> str | None:
    name = str(meta.get("layout_name", "")).lower()
    joints = meta.get("num_joints")
    if name.startswith("coco"):
        return "coco"
    if name.startswith("h36m") or name.startswith("human3"):
        return {16: "poseaug16", 17: "h36m17"}.get(joints)
    return None


def read_videopose(path: Path, npz) -> Keypoints:
    """VideoPose3D's custom 2D npz: one track per video."""
    try:
        pos = npz["positions_2d"].item()
        meta = npz["metadata"].item() if "metadata" in npz.files else {}
    except DataError:
        raise
    except (ValueError, AttributeError) as e:
        raise DataError(
            f"{path}: 'positions_2d' is not VideoPose3D's dict of videos ({e})"
        ) from None
    if not isinstance(pos, dict) or not pos:
        raise DataError(f"{path}: 'positions_2d' holds no videos")
    video_meta = meta.get("video_metadata", {}) if isinstance(meta, dict) else {}
    parts, names, sizes = [], [], []
    for t, (video, entry) in enumerate(pos.items()):
        arr = entry["custom"][0] if isinstance(entry, dict) and "custom" in entry else entry
        if isinstance(arr, (list, tuple)):
            arr = arr[0]
        kp = from_array(arr, f"{path}[{video}]")
        kp.track[:] = t
        parts.append(kp)
        names.append(str(video))
        vm = video_meta.get(video)
        try:
            sizes.append((np.nan, np.nan) if vm is None else (float(vm["w"]), float(vm["h"])))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: metadata['video_metadata'][{video!r}] has no numeric 'w' "
                            "and 'h' (image width and height)") from None  # fmt: skip
    if len({p.xy.shape[1] for p in parts}) > 1:
        raise DataError(f"{path}: the videos have different joint counts")
    size = None  # per video; NaN rows (videos without metadata) take image_width/height
    if any(not np.isnan(s[0]) for s in sizes):
        size = np.concatenate([np.tile(s, (len(p), 1)) for s, p in zip(sizes, parts)])
    cat = {k: np.concatenate([getattr(p, k) for p in parts])
           for k in ("xy", "score", "track", "frame", "image_id")}  # fmt: skip
    return Keypoints(**cat, image_size=size, tracks=tuple(names), kind="videopose3d npz",
                     layout=_videopose_layout(meta if isinstance(meta, dict) else {}))  # fmt: skip


#: The largest ``.json`` keypoint file read (COCO's train annotations are about 240 MiB).
MAX_JSON_BYTES = 1 << 30


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a keypoint file holds")


def read_keypoints(path: str | Path) -> Keypoints:
    """Read any supported keypoint file (see the module docstring) by its suffix.

    Raises:
        DataError: a missing, unreadable or unsupported file, in one line.
    """
    path = Path(path).expanduser()
    if problem := missing_input(path):
        raise DataError(problem)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            if path.stat().st_size > MAX_JSON_BYTES:
                raise DataError(f"{path}: {path.stat().st_size >> 20} MiB, more than a keypoint "
                                f"file holds (at most {MAX_JSON_BYTES >> 20} MiB)")  # fmt: skip
            with open(path, "rb") as f:
                return read_coco(path, json.load(f, parse_constant=_no_constant))
        if suffix == ".npy":
            return from_array(np.load(path, allow_pickle=False), path)
        if suffix == ".npz":
            if not zipfile.is_zipfile(path):
                raise DataError(f"{path}: cannot read (not an npz archive)")
            with SafeNpz(path) as npz:  # object arrays: unpickled without running code
                if "positions_2d" in npz.files:
                    return read_videopose(path, npz)
                key = "keypoints" if "keypoints" in npz.files else None
                if key is None and len(npz.files) != 1:
                    raise DataError(f"{path}: expected 'positions_2d' (VideoPose3D), 'keypoints', "
                                    f"or a single array; found {npz.files}")  # fmt: skip
                return from_array(npz[key or npz.files[0]], path)
    except DataError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
        MemoryError,
        OverflowError,
        RecursionError,
    ) as e:  # damaged content
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    raise DataError(f"{path}: unsupported input type '{suffix}' (expected .json, .npz or .npy)")
