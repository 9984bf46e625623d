"""2D keypoint layouts a user's detector may give, converted to PoseAug's 16 joints.

Three layouts are understood (``layout=`` of `poseaug_pl.predict` and `poseaug_pl.Lifter`):

* ``poseaug16``: the package's own order (`geometry.skeleton.JOINT_NAMES`); nothing changes.
* ``h36m17``: the common 17-joint Human3.6M order (VideoPose3D, PoseAug's 17-joint files): the
  same joints plus a neck/nose joint at index 9, which is dropped (as the data readers do).
* ``coco``: the 17 COCO keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips, knees,
  ankles). Limbs map one to one. COCO has no pelvis, spine, thorax or head top, so they are
  built from the points it has, with weights fitted on the Human3.6M training subjects' 3D
  (S1-S8, every 20th frame; their median 3D error there is given):

  - pelvis = the mid-point of the hips (exact in Human3.6M);
  - thorax = pelvis + 1.13 (mid-shoulders - pelvis) (1.6 cm);
  - spine = pelvis + 0.544 (mid-shoulders - pelvis) (3.1 cm);
  - head top = nose + 0.2 (thorax - pelvis) (3.5 cm), Human3.6M's neck/nose joint standing in
    for COCO's nose; without a nose the mean of the visible eyes and ears stands in for it.

  COCO's hips are annotated on the body's outline, higher and wider than Human3.6M's
  motion-capture hip joints, and its face points are not Human3.6M's; expect a few millimetres
  to centimetres of extra error on real COCO detections beyond what the test on Human3.6M
  keypoints (which share Human3.6M's hips) measures (README, "Use a trained model").

All functions are pure NumPy on ``(N, J, 2)`` pixel arrays with ``(N, J)`` confidence scores.
"""

from __future__ import annotations

import warnings

import numpy as np

from poseaug_pl.geometry.skeleton import H36M17_TO_16, NUM_JOINTS

LAYOUTS: tuple[str, ...] = ("poseaug16", "h36m17", "coco")
NUM_LAYOUT_JOINTS = {"poseaug16": 16, "h36m17": 17, "coco": 17}

COCO_NAMES: tuple[str, ...] = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow",
    "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)  # fmt: skip
COCO_FACE: tuple[int, ...] = (0, 1, 2, 3, 4)

#: Weights of the derived joints (fitted on Human3.6M S1-S8, see the module docstring).
THORAX_ALONG_TORSO = 1.13
SPINE_ALONG_TORSO = 0.544
HEAD_ABOVE_NOSE = 0.2

#: Telling COCO from Human3.6M-17 by geometry (shares of the body's height, per pose): joints
#: 0-4 (COCO's face; Human3.6M-17's pelvis, right leg and left hip) span under
#: `FACE_SPREAD_THRESHOLD` in COCO; where fewer than 4 of them are visible, joint 0 lies within
#: `NOSE_SHOULDER_THRESHOLD` of the mid-point of joints 5 and 6 in COCO (nose and shoulders)
#: and farther in Human3.6M-17 (pelvis and left knee/foot). Measured on S9/S11 projections: COCO
#: medians 0.07-0.13, Human3.6M-17 0.20-0.45 (the second test).
FACE_SPREAD_THRESHOLD = 0.3
NOSE_SHOULDER_THRESHOLD = 0.17

#: ``layout=auto`` guesses only with confidence (`detect_layout`). Each pose with at least 8
#: visible joints votes: COCO when its ratio to the threshold above is below ``1 / AUTO_BAND``
#: (clearly a face); Human3.6M-17 when the ratio is above 1 and its joint 0 (the pelvis) lies
#: within `PELVIS_TOLERANCE` of the body's height from the mid-point of joints 1 and 4 (the
#: hips; where a hip is missing, joint 7 (the spine) that close to the mid-point of joints 0
#: and 8 (pelvis and thorax)); neither otherwise. A layout needs `AUTO_AGREEMENT` of the votes
#: of the poses that could be tested; 16 joints likewise need that share of poses with the
#: pelvis between the hips. Measured on Human3.6M (S1/S9/S11, every 50th frame, all cameras):
#: the pelvis lies 0.001 of the height from the mid-hips in the motion capture's projections
#: (at most 0.003; the spine 0.014 from its mid-point, 99% within 0.08) and 0.01 in the Stacked
#: Hourglass detections (99% within 0.04); 99.7% of the projections vote Human3.6M-17, 87% of
#: the testable COCO keypoints made from them without eyes and ears vote COCO (99.6% with a
#: face). Uniform or Gaussian 17-joint noise: pelvis 0.4 from the mid-hips (5% within 0.11;
#: spine likewise), face ratio 2.7 (1% below 1.1): 2-3% of noise poses vote for any layout.
AUTO_BAND = 1.25
PELVIS_TOLERANCE = 0.08
AUTO_AGREEMENT = 0.75


class LayoutError(ValueError):
    """Keypoints that do not fit the named (or any) layout; the message is one line."""


def _coco_matrix() -> np.ndarray:
    """(16, 18) weights: PoseAug-16 joints from COCO's 17 points plus a 'face' point (index 17)."""
    m = np.zeros((NUM_JOINTS, 18))
    one_to_one = {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 10: 5, 11: 7, 12: 9, 13: 6, 14: 8,
                  15: 10}  # fmt: skip
    for j, c in one_to_one.items():
        m[j, c] = 1.0
    pelvis = np.zeros(18)
    pelvis[[11, 12]] = 0.5
    shoulders = np.zeros(18)
    shoulders[[5, 6]] = 0.5
    m[0] = pelvis
    m[7] = pelvis + SPINE_ALONG_TORSO * (shoulders - pelvis)
    m[8] = pelvis + THORAX_ALONG_TORSO * (shoulders - pelvis)
    m[9, 17] = 1.0
    m[9] += HEAD_ABOVE_NOSE * (m[8] - pelvis)
    return m


COCO_TO_16 = _coco_matrix()


def _pose_statistics(xy: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pose: the COCO-likeness ratio (`coco_likeness`; 17 joints only) and how far the
    pelvis is from the mid-point of the hips (joints 0, 1, 4; where a hip is missing, the spine
    from the mid-point of the pelvis and thorax: joints 7, 0, 8) over the body's height; NaN
    where a pose has under 8 visible joints, no extent, or not the joints a statistic needs."""
    n, joints = valid.shape
    pts = np.where(valid[..., None], xy.astype(np.float64), np.nan)
    ratio = np.full(n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, as wanted
        height = np.nanmax(np.nanmax(pts, 1) - np.nanmin(pts, 1), -1)
        usable = (valid.sum(1) >= 8) & (height > 0)
        if joints == 17:
            face = pts[:, :5]
            spread = np.nanmax(np.nanmax(face, 1) - np.nanmin(face, 1), -1)
            gap = np.linalg.norm(pts[:, 0] - (pts[:, 5] + pts[:, 6]) / 2, axis=-1)
            # (3 of joints 0-4 could be Human3.6M's pelvis and hips alone: hip width)
            ratio = np.where(valid[:, :5].sum(1) >= 4, spread / height / FACE_SPREAD_THRESHOLD,
                             gap / height / NOSE_SHOULDER_THRESHOLD)  # fmt: skip
        pelvis = np.linalg.norm(pts[:, 0] - (pts[:, 1] + pts[:, 4]) / 2, axis=-1) / height
        spine = np.linalg.norm(pts[:, 7] - (pts[:, 0] + pts[:, 8]) / 2, axis=-1) / height
    body = np.where(np.isnan(pelvis), spine, pelvis)
    ratio[~usable] = np.nan
    body[~usable] = np.nan
    return ratio, body


def coco_likeness(xy: np.ndarray, valid: np.ndarray) -> float:
    """How COCO-like 17-joint poses look: below 1 COCO, above 1 Human3.6M-17.

    Per pose, the span of joints 0-4 over `FACE_SPREAD_THRESHOLD` (where at least 4 of them are
    visible), else the distance of joint 0 from the mid-point of joints 5 and 6 over
    `NOSE_SHOULDER_THRESHOLD`, both as shares of the body's height; the median over poses.

    Args:
        xy: (N, 17, 2) pixels; valid: (N, 17) bool.

    Returns:
        the median ratio, or NaN when no pose has 8 visible joints and either test's joints.
    """
    ratio = _pose_statistics(xy, valid)[0]
    ratio = ratio[~np.isnan(ratio)]
    return float(np.median(ratio)) if len(ratio) else float("nan")


def layout_votes(xy: np.ndarray, valid: np.ndarray) -> dict[str, int]:
    """How many poses look clearly like each layout of their joint count, and like none.

    The rule is described at `AUTO_BAND`: 17 joints vote ``coco``, ``h36m17`` or ``neither``;
    16 joints ``poseaug16`` or ``neither``. Poses that cannot be tested (too few visible joints,
    or not those a test needs) do not vote.

    Args:
        xy: (N, 16|17, 2) pixels; valid: (N, 16|17) bool.
    """
    ratio, off = _pose_statistics(xy, valid)
    body = off < PELVIS_TOLERANCE
    if xy.shape[1] == 16:
        return {"poseaug16": int(body.sum()), "neither": int((off >= PELVIS_TOLERANCE).sum())}
    coco = ratio < 1 / AUTO_BAND
    h36m = (ratio > 1) & body
    tested = ~np.isnan(ratio) & ~((ratio > 1) & np.isnan(off))  # h36m17 unconfirmable
    return {"coco": int(coco.sum()), "h36m17": int(h36m.sum()),
            "neither": int((tested & ~coco & ~h36m).sum())}  # fmt: skip


def detect_layout(xy: np.ndarray, valid: np.ndarray) -> str:
    """The layout of ``(N, J, 2)`` keypoints from their joint count and geometry, when sure.

    17 joints: the layout at least `AUTO_AGREEMENT` of the testable poses vote for
    (`layout_votes`); 16 joints: ``poseaug16`` unless fewer than `AUTO_AGREEMENT` of the
    testable poses have their pelvis between their hips (no testable pose: ``poseaug16``).

    Raises:
        LayoutError: a joint count no layout has, 17 joints too sparse to tell, or poses that
            do not agree clearly enough on one layout (noise, or not a body in these orders).
    """
    joints = xy.shape[1]
    if joints not in (16, 17):
        raise LayoutError(f"{joints} joints per pose: expected 16 (poseaug16) or 17 (coco, h36m17)")
    votes = layout_votes(xy, valid)
    tested = sum(votes.values())
    if tested == 0:
        if joints == 16:
            return "poseaug16"
        raise LayoutError("17 joints per pose but too few visible ones to tell coco from h36m17; "
                          "name it with layout=coco or layout=h36m17")  # fmt: skip
    best = max((k for k in votes if k != "neither"), key=votes.get)
    if votes[best] >= AUTO_AGREEMENT * tested:
        return best
    shares = ", ".join(f"{v / tested:.0%} {k}" for k, v in votes.items())
    name = "layout=poseaug16" if joints == 16 else "layout=coco or layout=h36m17"
    raise LayoutError(
        f"layout=auto cannot tell the layout of these {joints}-joint keypoints with confidence "
        f"(of {tested} poses tested: {shares}; noise, or not a body in a known order?): "
        f"if they are keypoints, name their layout with {name}"
    )


def check_layout(xy: np.ndarray, valid: np.ndarray, layout: str) -> None:
    """Raise `LayoutError` unless ``(N, J, 2)`` keypoints fit ``layout`` (count and geometry)."""
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    want = NUM_LAYOUT_JOINTS[layout]
    if xy.shape[1] != want:
        raise LayoutError(f"layout={layout} has {want} joints but the keypoints have "
                          f"{xy.shape[1]}")  # fmt: skip
    if want == 17:
        likeness = coco_likeness(xy, valid)
        looks = "coco" if likeness < 1 else "h36m17"
        if not np.isnan(likeness) and looks != layout:
            raise LayoutError(
                f"layout={layout} but the keypoints look like {looks}: joint 0 and its "
                f"neighbours are {likeness:.1f}x the distance apart (relative to the body's "
                "height) that separates COCO's face from Human3.6M's pelvis and legs"
            )


def to_poseaug16(xy: np.ndarray, valid: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Convert keypoints to PoseAug's 16 joints.

    A derived joint is valid only if every point it is built from is (the head needs a nose or
    any visible eye or ear); invalid joints hold NaN, never a made-up position.

    Args:
        xy: (N, J, 2) pixels in ``layout``; valid: (N, J) bool (score at least ``min_score``).
        layout: one of `LAYOUTS`.

    Returns:
        ``(xy16, valid16)``: (N, 16, 2) float64 pixels (NaN where invalid) and (N, 16) bool.
    """
    check_layout(xy, valid, layout)
    xy = np.where(valid[..., None], xy.astype(np.float64), np.nan)
    if layout == "poseaug16":
        return xy, valid.copy()
    if layout == "h36m17":
        out = xy[:, list(H36M17_TO_16)]
        return out, valid[:, list(H36M17_TO_16)].copy()
    seen = valid[:, 1:5, None]  # coco: eyes and ears stand in for a missing nose
    count = seen.sum(1)
    others = np.where(count > 0, np.where(seen, xy[:, 1:5], 0).sum(1) / np.maximum(count, 1),
                      np.nan)  # fmt: skip
    face = np.where(valid[:, :1], xy[:, 0], others)
    points = np.concatenate([xy, face[:, None]], axis=1)  # (N, 18, 2)
    out = np.einsum("jk,nkc->njc", COCO_TO_16, np.nan_to_num(points))
    missing = (np.isnan(points[..., 0]).astype(np.int64) @ (COCO_TO_16 != 0).T) > 0
    out[missing] = np.nan
    return out, ~missing


def fill_from_track(xy: np.ndarray, track: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Fill missing (NaN) joints from the same track's neighbouring frames.

    Each missing joint is linearly interpolated in time between the nearest frames of its track
    where it is present; before the first or after the last such frame it takes that frame's
    position. A joint missing in every frame of its track stays NaN.

    Args:
        xy: (N, 16, 2) pixels with NaN where missing; track: (N,) track id (``-1``: no track,
            e.g. unrelated images, never filled); frame: (N,) frame number within the track.

    Returns:
        (N, 16, 2) with what could be filled filled.
    """
    out = xy.copy()
    for t in np.unique(track):
        if t < 0:
            continue
        rows = np.flatnonzero(track == t)
        rows = rows[np.argsort(frame[rows], kind="stable")]
        f = frame[rows].astype(np.float64)
        for j in range(xy.shape[1]):
            seen = ~np.isnan(out[rows, j, 0])
            if seen.all() or not seen.any():
                continue
            for c in range(xy.shape[2]):
                out[rows, j, c] = np.interp(f, f[seen], out[rows[seen], j, c])
    return out


#: For each COCO point, the PoseAug joint nearest to it (the face points: the head top).
COCO_FROM_16 = (9, 9, 9, 9, 9, 10, 13, 11, 14, 12, 15, 4, 1, 5, 2, 6, 3)


def coco_like(xy16: np.ndarray, face_px: float = 8.0) -> np.ndarray:
    """COCO-layout keypoints made from PoseAug-16 poses, for tests, demos and benchmarks.

    Limbs and hips are copied; the face points sit at the head joint, eyes ``face_px`` and ears
    ``2 * face_px`` pixels to either side (so a face has some width, as in real COCO data).

    Args:
        xy16: (N, 16, 2) pixels. Returns: (N, 17, 2).
    """
    out = xy16[:, list(COCO_FROM_16)].astype(np.float64)
    out[:, 1:5, 0] += np.array([-1, 1, -2, 2]) * face_px
    return out
