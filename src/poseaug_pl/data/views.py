"""Novel-view test sets: a set's own poses re-filmed from a raised camera.

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
from poseaug_pl.geometry.camera import elevation_range, fit_pinhole, project_to_2d, raise_randomly

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
