"""Camera geometry: world <-> camera transforms, the Human3.6M lens model, screen normalisation,
and the embedded Human3.6M calibration (7 subjects x 4 cameras).

Conventions (those of Human3.6M, VideoPose3D and PoseAug):

* ``X_cam = R @ (X_world - T)``; camera frame x right, y down, z forward; metres.
* Normalised screen coordinates map pixel ``u`` in an image of width ``w`` and height ``h`` to
  ``u / w * 2 - [1, h / w]``: x spans [-1, 1] and the aspect ratio is kept.
* Intrinsics are 9 numbers ``(fx, fy, cx, cy, k1, k2, k3, t1, t2)`` in normalised units
  (``f / w * 2`` and the normalised centre): the layout VideoPose3D and PoseAug use, so PoseAug's
  ``cam`` arrays can be used as they are. The tangential pair ``(t1, t2)`` is Human3.6M's
  ``(p2, p1)``, i.e. ``cameras.json``'s ``p`` reversed; with it the Human3.6M model reads
  ``x_d = x (1 + k1 r^2 + k2 r^4 + k3 r^6 + t1 x + t2 y) + (t1, t2) r^2``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

from poseaug_pl.geometry.angles import elevation_range  # noqa: F401 (its users import it here)

#: Human3.6M camera ids in the standard order used by every released file.
H36M_CAMERA_IDS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")
#: Subjects with calibration, in the order used by `h36m_camera_arrays`.
H36M_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")


def world_to_camera(x_world: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """World to camera frame, ``R @ (X - T)``.

    Args:
        x_world: (..., J, 3) points in the world frame.
        rot: (..., 3, 3) world-to-camera rotation R (broadcast over the batch).
        trans: (..., 3) camera centre T in the world frame, same units as ``x_world``.

    Returns:
        (..., J, 3) points in the camera frame.
    """
    return torch.matmul(x_world - trans.unsqueeze(-2), rot.transpose(-1, -2))


def camera_to_world(x_cam: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """Camera to world frame, ``R^T X + T``; inverse of `world_to_camera`.

    Args:
        x_cam: (..., J, 3) points in the camera frame.
        rot: (..., 3, 3) world-to-camera rotation R.
        trans: (..., 3) camera centre T in the world frame.

    Returns:
        (..., J, 3) points in the world frame.
    """
    return torch.matmul(x_cam, rot) + trans.unsqueeze(-2)


def project_to_2d(x_cam: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Project camera-frame points with the Human3.6M lens model (radial k1..k3, tangential).

    The perspective-divided coordinates are clamped to [-1, 1] (a 90-degree field of view, far
    wider than any Human3.6M camera) before distortion, as VideoPose3D does, so the distortion
    polynomial cannot diverge for points far outside the image.

    Args:
        x_cam: (..., J, 3) camera-frame points with positive depth.
        intrinsics: (..., 9) ``(fx, fy, cx, cy, k1, k2, k3, t1, t2)`` (see module docstring).
            With normalised intrinsics the result is in normalised screen coordinates; with
            pixel ``f`` and ``c`` it is in pixels.

    Returns:
        (..., J, 2) image points.
    """
    # Per-coordinate planes: several times faster on CPU than (..., 2)-shaped arithmetic.
    fx, fy, cx, cy, k1, k2, k3, t1, t2 = intrinsics.unsqueeze(-2).unbind(-1)  # (..., 1) each
    z = x_cam[..., 2]
    u = (x_cam[..., 0] / z).clamp(-1.0, 1.0)
    v = (x_cam[..., 1] / z).clamp(-1.0, 1.0)
    r2 = u * u + v * v
    d = 1 + r2 * (k1 + r2 * (k2 + r2 * k3)) + t1 * u + t2 * v
    return torch.stack([fx * (u * d + t1 * r2) + cx, fy * (v * d + t2 * r2) + cy], dim=-1)


def orbit_camera_up(x_cam: torch.Tensor, pivot: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Re-film camera-frame points from a camera raised by ``angle`` on a circle about ``pivot``.

    The camera swings about its own x axis through ``pivot`` (tilting down by the same angle), so
    the pivot keeps its position in the camera frame (and image) and an upright person seen from
    a level camera is then seen from ``angle`` above. Negative angles lower the camera.

    Args:
        x_cam: (..., J, 3) camera-frame points.
        pivot: (..., 3) the point the camera circles (usually the root joint).
        angle: (...,) radians.

    Returns:
        (..., J, 3) the points in the new camera's frame (a rigid motion of ``x_cam``).
    """
    c, s = torch.cos(angle).unsqueeze(-1), torch.sin(angle).unsqueeze(-1)
    x, y, z = (x_cam - pivot.unsqueeze(-2)).unbind(-1)
    return torch.stack([x, c * y - s * z, s * y + c * z], dim=-1) + pivot.unsqueeze(-2)


def raise_randomly(
    x_cam: torch.Tensor, low_deg: float, high_deg: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """`orbit_camera_up` about each pose's root joint by a per-pose angle drawn from U(low, high).

    Args:
        x_cam: (..., J, 3) camera-frame poses, root joint first.
        low_deg, high_deg: the range of the angle, degrees.
        generator: a (CPU) random generator for reproducible angles; None: the global one, on
            ``x_cam``'s device (no host transfer).

    Returns:
        (..., J, 3) the poses seen from the raised cameras.
    """
    shape = x_cam.shape[:-2]
    if generator is None:
        u = torch.rand(shape, device=x_cam.device, dtype=x_cam.dtype)
    else:
        u = torch.rand(shape, generator=generator, dtype=x_cam.dtype).to(x_cam.device)
    angle = math.radians(low_deg) + u * math.radians(high_deg - low_deg)
    return orbit_camera_up(x_cam, x_cam[..., 0, :], angle)


def fit_pinhole(x_cam: torch.Tensor, x_2d: torch.Tensor) -> torch.Tensor:
    """Least-squares pinhole intrinsics of each group of 2D-3D correspondences (e.g. one pose).

    Solves ``u = fx X / Z + cx`` and ``v = fy Y / Z + cy`` over the points of each group (the
    second-last axis), in closed form.

    Args:
        x_cam: (..., J, 3) camera-frame points with positive depth, J >= 2 spread in X/Z and Y/Z.
        x_2d: (..., J, 2) their image points (normalised or pixels; the result is in those units).

    Returns:
        (..., 9) intrinsics ``(fx, fy, cx, cy, 0, 0, 0, 0, 0)`` for `project_to_2d`.
    """
    p = (x_cam[..., :2] / x_cam[..., 2:3]).double()  # (..., J, 2)
    uv = x_2d.double()
    dp = p - p.mean(-2, keepdim=True)
    f = (dp * (uv - uv.mean(-2, keepdim=True))).sum(-2) / dp.pow(2).sum(-2)  # (..., 2)
    c = uv.mean(-2) - f * p.mean(-2)
    zeros = torch.zeros(*f.shape[:-1], 5, dtype=f.dtype, device=f.device)
    return torch.cat([f, c, zeros], dim=-1).to(x_cam.dtype)


def normalize_screen_coordinates(x: torch.Tensor, w, h) -> torch.Tensor:
    """Pixels to normalised screen coordinates, ``x / w * 2 - [1, h / w]``.

    Args:
        x: (..., 2) pixel coordinates.
        w, h: image width and height, scalars or tensors broadcastable to (..., 1).

    Returns:
        (..., 2) normalised coordinates (x in [-1, 1] inside the image).
    """
    w = torch.as_tensor(w, dtype=x.dtype, device=x.device)
    h = torch.as_tensor(h, dtype=x.dtype, device=x.device)
    offset = torch.stack(torch.broadcast_tensors(torch.ones_like(w), h / w), dim=-1)
    return x / w.unsqueeze(-1) * 2 - offset


def image_coordinates(x: torch.Tensor, w, h) -> torch.Tensor:
    """Normalised screen coordinates back to pixels; inverse of `normalize_screen_coordinates`.

    Args:
        x: (..., 2) normalised coordinates.
        w, h: image width and height, scalars or tensors broadcastable to (..., 1).

    Returns:
        (..., 2) pixel coordinates.
    """
    w = torch.as_tensor(w, dtype=x.dtype, device=x.device)
    h = torch.as_tensor(h, dtype=x.dtype, device=x.device)
    offset = torch.stack(torch.broadcast_tensors(torch.ones_like(w), h / w), dim=-1)
    return (x + offset) * w.unsqueeze(-1) / 2


def intrinsics_9(f, c, w, h, k=(0.0, 0.0, 0.0), p=(0.0, 0.0)) -> np.ndarray:
    """The 9 normalised intrinsics ``(fx, fy, cx, cy, k1, k2, k3, t1, t2)`` (float32) of a camera
    with focal length ``f`` and principal point ``c`` (pixels) in a ``w`` x ``h`` image, radial
    ``k`` and tangential ``p`` distortion (Human3.6M's order); as `normalize_screen_coordinates`
    maps pixels."""
    f = np.asarray(f, np.float64) / w * 2
    c = np.asarray(c, np.float64) / w * 2 - np.array([1.0, h / w])
    return np.concatenate([f, c, k, np.asarray(p)[::-1]]).astype(np.float32)


@dataclass(frozen=True)
class Camera:
    """One calibrated camera. Extrinsics in metres; intrinsics in pixels as calibrated."""

    id: str
    rot: np.ndarray  #: (3, 3) world-to-camera rotation R
    trans: np.ndarray  #: (3,) camera centre T in the world frame, metres
    f: np.ndarray  #: (2,) focal length, pixels
    c: np.ndarray  #: (2,) principal point, pixels
    k: np.ndarray  #: (3,) radial distortion k1..k3
    p: np.ndarray  #: (2,) tangential distortion (p1, p2) in Human3.6M's order
    res_w: int
    res_h: int

    def intrinsics(self, normalised: bool = True) -> np.ndarray:
        """The 9-number intrinsics ``(fx, fy, cx, cy, k1, k2, k3, t1, t2)``, float32.

        With ``normalised`` (default) f and c are in normalised screen units, so
        `project_to_2d` returns normalised coordinates; otherwise in pixels.
        """
        if normalised:
            return intrinsics_9(self.f, self.c, self.res_w, self.res_h, self.k, self.p)
        return np.concatenate([self.f, self.c, self.k, self.p[::-1]]).astype(np.float32)


@lru_cache(maxsize=1)
def h36m_cameras() -> dict[str, tuple[Camera, ...]]:
    """The embedded Human3.6M calibration: subject -> its 4 cameras in `H36M_CAMERA_IDS` order."""
    raw = json.loads(resources.files("poseaug_pl.assets").joinpath("h36m_cameras.json").read_text())
    out = {}
    for subject, cams in raw["cameras"].items():
        out[subject] = tuple(
            Camera(
                id=cid,
                rot=np.asarray(cams[cid]["R"], dtype=np.float64),
                trans=np.asarray(cams[cid]["T_mm"], dtype=np.float64) / 1000.0,
                f=np.asarray(cams[cid]["f"], dtype=np.float64),
                c=np.asarray(cams[cid]["c"], dtype=np.float64),
                k=np.asarray(cams[cid]["k"], dtype=np.float64),
                p=np.asarray(cams[cid]["p"], dtype=np.float64),
                res_w=int(cams[cid]["res_w"]),
                res_h=int(cams[cid]["res_h"]),
            )
            for cid in H36M_CAMERA_IDS
        )
    return out


def h36m_camera_arrays(subjects=H36M_SUBJECTS) -> dict[str, torch.Tensor]:
    """Stacked Human3.6M calibration for batched use, float32.

    Returns:
        dict with ``rot`` (S, 4, 3, 3), ``trans`` (S, 4, 3) metres, ``intrinsics`` (S, 4, 9)
        normalised, ``res`` (S, 4, 2) as (w, h); S follows ``subjects``.
    """
    cams = h36m_cameras()
    unknown = [s for s in subjects if s not in cams]
    if unknown:
        raise ValueError(f"no Human3.6M calibration for {unknown}; known: {sorted(cams)}")
    sel = [cams[s] for s in subjects]

    def stack(fn):
        return torch.as_tensor(np.array([[fn(c) for c in row] for row in sel]), dtype=torch.float32)

    return {
        "rot": stack(lambda c: c.rot),
        "trans": stack(lambda c: c.trans),
        "intrinsics": stack(lambda c: c.intrinsics()),
        "res": stack(lambda c: np.array([c.res_w, c.res_h], dtype=np.float64)),
    }


#: A quarter turn of the camera about its optical axis, radians.
QUARTER = math.pi / 2
#: `quarter_turns`' k -> the degrees that turn such footage upright (positive: clockwise on screen).
UPRIGHT_DEGREES = {1: -90, 2: 180, 3: 90}


def quarter_turns(pose2d: torch.Tensor) -> int:
    """How many quarter turns (0-3) footage was filmed rolled by: the median angle of its 2D
    body axes (pelvis to thorax, PoseAug's joints 0 and 8) from image-up, clockwise on screen,
    rounded to a multiple of 90 degrees. 0 for upright footage (its people within 45 degrees
    of upright in most frames), 1 for footage stored sideways, as a phone's whose orientation
    sits in metadata that video readers ignore. pose2d: (N, 16, 2), N >= 1."""
    axis = pose2d[:, 8] - pose2d[:, 0]
    angle = torch.atan2(axis[:, 0], -axis[:, 1])
    return int(torch.round(angle.median() / QUARTER)) % 4


def roll_points(points: torch.Tensor, angle, centre=None) -> torch.Tensor:
    """``points`` (..., 2 or 3) seen by their camera rolled about its optical axis: x and y
    turned by ``angle`` radians (a number or a tensor broadcastable to ``points[..., 0]``),
    clockwise on screen (y points down), about ``centre`` (2D: the principal point; None: the
    origin); z is kept. Through a pinhole with equal focal lengths, rolling the 3D about the
    camera's z axis rolls its 2D by the same angle about the principal point, exactly."""
    angle = torch.as_tensor(angle, dtype=points.dtype, device=points.device)
    c, s = angle.cos(), angle.sin()
    xy = points[..., :2] if centre is None else points[..., :2] - centre
    x, y = xy.unbind(-1)
    turned = torch.stack([c * x - s * y, s * x + c * y], -1)
    if centre is not None:
        turned = turned + centre
    return torch.cat([turned, points[..., 2:]], -1)
