"""Human3.6M in the VideoPose3D npz layout, preprocessed once into a 16-joint cache.

Files under ``root``:

* ``data_3d_h36m.npz``: ``positions_3d[subject][action]`` (T, 32|17|16, 3), metres, world frame.
* ``data_2d_h36m_<keypoints>.npz`` (optional): ``positions_2d[subject][action]`` = list of 4
  (T, 16|17, 2) pixel arrays, one per camera in `H36M_CAMERA_IDS` order. With
  ``keypoints="gt"`` no 2D file is read: the 2D input is the projection of the 3D through the
  embedded calibration, lens distortion included (the common preprocessing).

Every (subject, action, camera) sequence becomes camera-frame 3D (metres) and normalised 2D;
where the 2D and 3D lengths differ the longer is trimmed. The result for all subjects is cached
(``torch.save``, written atomically) so the second load only reads one file and selects rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from poseaug_pl.data.poseset import DataError, PoseSet, check_array, check_units, load_npz
from poseaug_pl.geometry import skeleton
from poseaug_pl.geometry.camera import (
    H36M_CAMERA_IDS,
    h36m_camera_arrays,
    h36m_cameras,
    normalize_screen_coordinates,
    project_to_2d,
    world_to_camera,
)
from poseaug_pl.preflight import FILE_3D, file_2d  # noqa: F401 (their users import them here)
from poseaug_pl.utils import os_error_behind

log = logging.getLogger(__name__)

TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")
CACHE_VERSION = 1


def canonical_action(name: str) -> str:
    """Action class of a sequence name: ``"Directions 1"`` -> ``"Directions"``."""
    return name.split(" ")[0]


def default_cache_dir() -> Path:
    """``$POSEAUG_CACHE`` or ``~/.cache/poseaug_pl``."""
    return Path(os.environ.get("POSEAUG_CACHE", Path.home() / ".cache" / "poseaug_pl"))


def _subject_key(s: str):
    m = re.fullmatch(r"S(\d+)", s)
    return (0, int(m.group(1))) if m else (1, s)


def _to_16(path, key: str, arr, coords: int) -> np.ndarray:
    """Check one pose array and map it to 16 joints; DataError naming file and key otherwise."""
    if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[-1] != coords:
        shape = getattr(arr, "shape", type(arr).__name__)
        raise DataError(f"{path}: '{key}' has shape {shape}, expected (T,J,{coords})")
    if arr.shape[1] not in (16, 17, 32):
        raise DataError(
            f"{path}: '{key}' has {arr.shape[1]} joints, expected 32, 17 or 16 (shape {arr.shape})"
        )
    check_array(path, key, arr, (arr.shape[1], coords))
    return skeleton.remap_joints(arr, skeleton.layout_for(arr.shape[1])).astype(np.float32)


def _file_id(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _build(path3d: Path, path2d: Path | None) -> dict:
    """Preprocess every subject/action/camera of the files into flat arrays (see module doc)."""
    pos3d = load_npz(path3d, ("positions_3d",))["positions_3d"]
    if not isinstance(pos3d, dict) or not pos3d:
        raise DataError(
            f"{path3d}: 'positions_3d' is not a non-empty {{subject: {{action: array}}}}"
        )
    pos2d = None
    if path2d is not None:
        pos2d = load_npz(path2d, ("positions_2d",))["positions_2d"]
        if not isinstance(pos2d, dict):
            raise DataError(f"{path2d}: 'positions_2d' is not a {{subject: {{action: list}}}} dict")
    calib = h36m_cameras()
    subjects = sorted(pos3d, key=_subject_key)
    first = next(iter(pos3d[subjects[0]].values()), None) if subjects else None
    if isinstance(first, np.ndarray) and first.ndim == 3 and first.shape[-1] == 3:
        check_units(path3d, pose3d=first[:: max(1, len(first) // 50)], key3d="positions_3d")
    unknown = [s for s in subjects if s not in calib]
    if unknown:
        raise DataError(f"{path3d}: subject(s) {unknown} have no Human3.6M calibration")
    cams = h36m_camera_arrays(subjects)
    actions = sorted({canonical_action(a) for s in subjects for a in pos3d[s]})
    parts = {
        k: [] for k in ("pose3d", "pose2d", "subject", "camera", "action", "sequence", "frame")
    }
    seq_names, skipped = [], []
    bar = tqdm(
        total=sum(len(pos3d[s]) for s in subjects), desc="Human3.6M", unit="seq", disable=None
    )
    for si, s in enumerate(subjects):
        for a in sorted(pos3d[s]):
            bar.update()
            x3 = torch.from_numpy(_to_16(path3d, f"positions_3d[{s}][{a}]", pos3d[s][a], 3))
            check_units(path3d, pose3d=x3[:: max(1, len(x3) // 20)].numpy(),
                        key3d=f"positions_3d[{s}][{a}]")  # fmt: skip (every sequence: no mix)
            xc = world_to_camera(
                x3.double(), cams["rot"][si, :, None].double(), cams["trans"][si, :, None].double()
            ).float()  # (4, T, 16, 3)
            if pos2d is None:
                x2 = [project_to_2d(xc[c], cams["intrinsics"][si, c]) for c in range(4)]
            else:
                views = pos2d.get(s, {}).get(a)
                if views is None:
                    skipped.append(f"{s}/{a}")
                    continue
                if len(views) != len(H36M_CAMERA_IDS):
                    raise DataError(
                        f"{path2d}: 'positions_2d[{s}][{a}]' has {len(views)} cameras, expected 4"
                    )
                x2 = []
                for c, v in enumerate(views):
                    v = _to_16(path2d, f"positions_2d[{s}][{a}][{c}]", np.asarray(v), 2)
                    w, h = cams["res"][si, c]
                    x2.append(normalize_screen_coordinates(torch.from_numpy(v), w, h))
            seq = len(seq_names)
            seq_names.append(f"{s}/{a}")
            for c in range(4):
                n = min(len(x2[c]), xc.shape[1])  # trim to the shorter of 2D and 3D
                if n == 0:
                    skipped.append(f"{s}/{a}/cam{c}")
                    continue
                parts["pose3d"].append(xc[c, :n])
                parts["pose2d"].append(x2[c][:n].float())
                for key, val in (
                    ("subject", si),
                    ("camera", c),
                    ("sequence", seq),
                    ("action", actions.index(canonical_action(a))),
                ):
                    parts[key].append(torch.full((n,), val, dtype=torch.int64))
                parts["frame"].append(torch.arange(n))
    bar.close()
    if skipped:
        log.warning(
            "Human3.6M: no 2D for %d sequence(s), skipped: %s", len(skipped), ", ".join(skipped)
        )
    if not parts["pose3d"]:
        raise DataError(f"{path3d}: no sequences with both 3D and 2D poses")
    out = {k: torch.cat(v) for k, v in parts.items()}
    out["meta"] = {"subjects": subjects, "actions": actions, "sequences": seq_names}
    return out


def _remove_stale_temporaries(cache_dir: Path) -> None:
    """Delete cache temporaries left by killed processes (their pid no longer runs)."""
    for tmp in Path(cache_dir).glob(".h36m_*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            log.info("removed a stale cache temporary %s", tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cached_build(path3d: Path, path2d: Path | None, keypoints: str, cache_dir) -> dict:
    """`_build` with an on-disk cache keyed by the files' identity; never leaves a partial file."""
    if cache_dir is False:
        return _build(path3d, path2d)
    key = {"version": CACHE_VERSION, "keypoints": keypoints, "3d": _file_id(path3d)}
    if path2d is not None:
        key["2d"] = _file_id(path2d)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache = cache_dir / f"h36m_{keypoints}_{digest}.pt"
    if cache.is_file():
        try:
            return torch.load(cache, weights_only=True, mmap=True)
        except Exception as e:  # unreadable cache: rebuild it
            log.warning("Human3.6M cache %s unreadable (%s); rebuilding", cache, e)
    _remove_stale_temporaries(cache_dir)
    try:
        data = _build(path3d, path2d)
    except DataError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:  # damaged content
        files = f"{path3d}" + (f" or {path2d}" if path2d else "")
        raise DataError(f"{files}: unexpected content ({type(e).__name__}: {e})") from None
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:  # (a file object: a full disk surfaces as its OSError)
            torch.save(data, f)
        os.replace(tmp, cache)
        log.info("Human3.6M cache written: %s", cache)
    except Exception as e:  # a full disk or read-only folder only; anything else is a bug
        why = os_error_behind(e)
        if why is None:
            raise
        log.warning(
            "could not write the Human3.6M cache %s (%s); continuing without it", cache, why
        )
    finally:
        tmp.unlink(missing_ok=True)
    return data


def load_h36m(
    root: str | Path,
    keypoints: str = "gt",
    subjects=TRAIN_SUBJECTS,
    actions=None,
    stride: int = 1,
    name: str = "h36m",
    cache_dir: str | Path | bool | None = None,
) -> PoseSet:
    """Load Human3.6M pose pairs for some subjects.

    Args:
        root: folder with ``data_3d_h36m.npz`` (and the 2D file unless ``keypoints="gt"``).
        keypoints: ``"gt"`` for projected ground-truth 2D, or a 2D source name such as
            ``"sh_pt_mpii"`` (reads ``data_2d_h36m_<keypoints>.npz``).
        subjects: subject names, e.g. ``("S9", "S11")``.
        actions: optional action filter: action classes (``"Walking"``) or exact sequence names
            (``"Walking 1"``); None keeps all.
        stride: keep every ``stride``-th frame of each sequence.
        name: the returned set's name.
        cache_dir: cache folder (default `default_cache_dir`); ``False`` disables the cache.

    Returns:
        A `PoseSet` ordered by subject, action and camera, with ``cam`` filled from the embedded
        calibration.

    Raises:
        DataError: missing file or key, wrong joint count, NaN/inf, unknown subject, or an
            empty selection; the message names the file.
    """
    root = Path(root).expanduser()
    if int(stride) < 1:
        raise DataError(f"{root}: stride must be >= 1, got {stride}")
    path3d = root / FILE_3D
    if not path3d.is_file():
        raise DataError(
            f"{path3d}: file not found (Human3.6M in the VideoPose3D layout is expected in "
            f"{root}; set data.root to the folder holding {FILE_3D})"
        )
    path2d = None
    if keypoints != "gt":
        path2d = root / file_2d(keypoints)
        if not path2d.is_file():
            raise DataError(
                f"{path2d}: file not found (keypoints={keypoints!r}; use 'gt' for ground-truth 2D)"
            )
    t0 = time.perf_counter()
    full = _cached_build(path3d, path2d, keypoints, cache_dir)
    meta = full["meta"]
    subjects = [subjects] if isinstance(subjects, str) else list(subjects)
    unknown = [s for s in subjects if s not in meta["subjects"]]
    if unknown:
        raise DataError(f"{path3d}: unknown subject(s) {unknown}; the file has {meta['subjects']}")
    sub_ids = torch.tensor([meta["subjects"].index(s) for s in subjects])
    keep = torch.isin(full["subject"], sub_ids)
    if actions:
        actions = [actions] if isinstance(actions, str) else list(actions)
        seq_ok = torch.tensor(
            [
                n.split("/", 1)[1] in actions or canonical_action(n.split("/", 1)[1]) in actions
                for n in meta["sequences"]
            ]
        )
        keep &= seq_ok[full["sequence"]]
    if stride > 1:
        keep &= full["frame"] % int(stride) == 0
    idx = keep.nonzero().squeeze(1)
    if len(idx) == 0:
        raise DataError(
            f"{path3d}: no frames left after filtering (subjects={subjects}, actions={actions}, "
            f"stride={stride}); the file has actions {meta['actions']}"
        )
    intr = h36m_camera_arrays(meta["subjects"])["intrinsics"]  # (S, 4, 9)
    sub, cam = full["subject"][idx], full["camera"][idx]
    out = PoseSet(
        name=name,
        pose3d=full["pose3d"][idx],
        pose2d=full["pose2d"][idx],
        cam=intr[sub, cam],
        subject=sub,
        action=full["action"][idx],
        sequence=full["sequence"][idx],
        subjects=tuple(meta["subjects"]),
        actions=tuple(meta["actions"]),
        camera=cam,
        frame=full["frame"][idx],
    )
    log.info(
        "Human3.6M %s: %d pairs from %s in %.1fs",
        name,
        len(out),
        subjects,
        time.perf_counter() - t0,
    )
    return out
