"""Test sets seen differently: a set's own poses re-filmed from a raised camera
(`raise_camera`), and footage filmed sideways turned upright (`upright`).

Human3.6M's and HumanEva-I's cameras sit near chest height; MPI-INF-3DHP and 3DPW also film from
above. `raise_camera` keeps a set's real poses, skeleton and lens and changes only the camera's
elevation, so the error it adds is the viewpoint's alone (``synthetic_wild`` changes poses,
proportions and cameras at once).

The copies are exact projections of the 3D poses: with a detector's 2D keypoints as input
(``data.keypoints``), the source set holds detections but its raised copy does not.
"""

from __future__ import annotations

import dataclasses

import torch

from poseaug_pl.data.poseset import DataError, PoseSet
from poseaug_pl.geometry.camera import (
    QUARTER,
    UPRIGHT_DEGREES,
    elevation_range,
    fit_pinhole,
    project_to_2d,
    quarter_turns,
    raise_randomly,
    roll_points,
)

#: Suffix of a raised-camera copy of a test set (``h36m`` -> ``h36m_raised``).
RAISED_SUFFIX = "_raised"


def raise_camera(data: PoseSet, low_deg: float, high_deg: float, seed: int = 0) -> PoseSet | None:
    """Re-film every pose of ``data`` from its camera raised by U(low, high) degrees.

    Each row's camera circles its root joint about the camera's x axis (`raise_randomly`), then
    the poses are projected with the set's own intrinsics (``data.cam``) or, for sets without
    calibration, with a pinhole fitted to each row's own 2D-3D pair (`fit_pinhole`; a set may
    mix cameras, as HumanEva-I's three do).

    Args:
        data: a test set (camera-frame ``pose3d`` with the root not subtracted).
        low_deg, high_deg: range of the elevation change, degrees (``low <= high``; equal
            values raise every camera by that angle).
        seed: seed of the per-row angles; equal seeds give identical sets.

    Returns:
        A `PoseSet` named ``<name>_raised`` with the same rows, ids and calibration; None for a
        set whose 3D is root-centred (SPIN's 3DHP file, say): without the camera's position
        there is nothing to circle.

    Raises:
        ValueError: a reversed range, or one outside [-80, 80] degrees.
        DataError: a joint of a re-filmed pose would lie behind the camera.
    """
    low_deg, high_deg = elevation_range((low_deg, high_deg), "raised camera range")
    if bool((data.pose3d[:, 0, 2].abs() < 1e-6).all()):
        return None
    gen = torch.Generator().manual_seed(int(seed))
    pose3d = raise_randomly(data.pose3d, low_deg, high_deg, gen)
    if (pose3d[..., 2] <= 0.1).any():
        raise DataError(
            f"{data.name}: raising the camera by up to {high_deg} degrees puts joints behind "
            "it (poses closer than their own size); use a smaller range"
        )
    intr = data.cam if data.cam is not None else fit_pinhole(data.pose3d, data.pose2d)
    pose2d = project_to_2d(pose3d, intr)
    return dataclasses.replace(data, name=data.name + RAISED_SUFFIX, pose3d=pose3d, pose2d=pose2d)


def upright(data: PoseSet) -> tuple[PoseSet, dict[str, int]]:
    """``data`` with each sideways-filmed sequence turned upright by quarter turns, and which.

    A video pipeline turns such footage upright before its 2D detector runs; a test set of
    ground-truth 2D skips that step, and a lifter trained on upright people (Human3.6M's level
    cameras) reads a sideways person as garbage. The rows of one ``subject`` (and ``camera``,
    when the set has one) are one piece of footage: their median body-axis angle decides its
    quarter turns k (`geometry.camera.quarter_turns`). Turning is exact: the camera rolls about
    its optical axis, so the 3D turns by ``UPRIGHT_DEGREES[k]`` about the camera's z axis and the
    2D by the same angle about the principal point (``data.cam``'s, else the image centre, the
    origin of normalised coordinates). Root-relative errors (MPJPE, PA-MPJPE, 3DPCK) of a prediction
    are the same in either frame; only what the lifter sees changes.

    Returns:
        The set (itself when no footage is sideways) and ``{footage name: degrees turned}``
        (-90, 90 or 180; positive turns clockwise on screen).
    """
    group = data.subject * 1000 + (data.camera if data.camera is not None else 0)
    turns = torch.zeros(len(data.pose2d))
    turned = {}
    for g in torch.unique(group).tolist():
        rows = group == g
        if k := quarter_turns(data.pose2d[rows]):
            turns[rows] = k
            name = data.subjects[g // 1000] if data.subjects else str(g // 1000)
            if data.camera is not None:
                name += f" camera {g % 1000}"
            turned[name] = UPRIGHT_DEGREES[k]
    if not turned:
        return data, {}
    angle = (-turns * QUARTER)[:, None]
    centre = data.cam[:, None, 2:4] if data.cam is not None else None
    pose2d = roll_points(data.pose2d, angle, centre)
    return dataclasses.replace(data, pose2d=pose2d, pose3d=roll_points(data.pose3d, angle)), turned
