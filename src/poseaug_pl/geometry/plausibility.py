"""Named plausibility statistics of augmented pose pairs (x', X'), beside the same of real data.

They answer "does x' look like a person seen from a camera a dataset could have?" with numbers:

* ``upright``: share of poses whose 2D spine (pelvis -> thorax) is within 45 degrees of image-up
  (image y points down);
* ``inside``: share of poses with every 2D coordinate within [-1, 1] (inside the image);
* ``scale_2d``: median 2D size (RMS distance of the joints from their centroid), relative to
  the real poses' median (1.0 for real data);
* ``elevation_deg``: median implied camera elevation, ``asin(-u_z)`` of the unit 3D spine
  vector in the camera frame (positive: the camera looks down on the person);
* ``high_view``: share of poses seen from a camera at least `HIGH_VIEW_DEG` above them (implied
  elevation), the viewpoints MPI-INF-3DHP and 3DPW have and Human3.6M's cameras rarely do;
* ``rotation_deg``, ``bone_angle_deg``, ``bone_length_change``: medians of the augmentor's
  rotation angle (folded to [0, 180]), per-bone angle change (bones BA may turn) and relative
  bone-length change (|ratio - 1|);
* ``d3d_acc``, ``d2d_acc``: the discriminators' accuracy, the mean of their real and fake
  accuracies (0.5: they cannot tell real from augmented).

All functions are pure and batched; poses are (B, 16, 3) camera-frame metres and (B, 16, 2)
normalised screen coordinates.
"""

from __future__ import annotations

import torch

from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.models.augmentor import augmentation_parameters

#: Joints of the spine used for uprightness and elevation: pelvis (root) and thorax.
PELVIS, THORAX = 0, sk.THORAX
#: The statistics of `pose_statistics` (real and augmented alike).
POSE_STATS = ("upright", "inside", "scale_2d", "elevation_deg", "high_view")
#: Implied camera elevation (degrees) from which a view counts as ``high_view``.
HIGH_VIEW_DEG = 30.0
#: The statistics of `augmentation_statistics` that exist for augmented poses only.
AUGMENTATION_STATS = ("rotation_deg", "bone_angle_deg", "bone_length_change", "d3d_acc", "d2d_acc")


def spine_tilt_2d_deg(pose2d: torch.Tensor) -> torch.Tensor:
    """(B, 16, 2) -> (B,) angle in degrees between the 2D spine and image-up, in [0, 180]."""
    spine = pose2d[:, THORAX] - pose2d[:, PELVIS]
    return torch.rad2deg(torch.atan2(spine[:, 0].abs(), -spine[:, 1]))


def upright_share(pose2d: torch.Tensor, max_tilt_deg: float = 45.0) -> torch.Tensor:
    """Share of poses whose 2D spine is within ``max_tilt_deg`` of image-up; scalar tensor."""
    return (spine_tilt_2d_deg(pose2d) <= max_tilt_deg).float().mean()


def inside_share(pose2d: torch.Tensor) -> torch.Tensor:
    """Share of poses with every coordinate in [-1, 1] (inside the image); scalar tensor."""
    return (pose2d.abs() <= 1).flatten(1).all(1).float().mean()


def size_2d(pose2d: torch.Tensor) -> torch.Tensor:
    """(B, 16, 2) -> (B,) RMS distance of the joints from their centroid (rotation-invariant)."""
    centred = pose2d - pose2d.mean(1, keepdim=True)
    return centred.pow(2).sum(-1).mean(-1).sqrt()


def camera_elevation_deg(pose3d: torch.Tensor) -> torch.Tensor:
    """(B, 16, 3) camera-frame poses -> (B,) implied camera elevation in degrees.

    ``asin(-u_z)`` of the unit spine vector u: 0 for an upright person seen from a level
    camera, positive when the camera looks down (the thorax is nearer than the pelvis).
    Differentiable: ``u_z`` is kept off +-1, where
    ``asin`` has no finite gradient.
    """
    u = torch.nn.functional.normalize(pose3d[:, THORAX] - pose3d[:, PELVIS], dim=-1)
    return torch.rad2deg(torch.asin((-u[:, 2]).clamp(-1.0 + 1e-6, 1.0 - 1e-6)))


def high_view_share(elevation_deg: torch.Tensor) -> torch.Tensor:
    """(B,) implied camera elevations -> share at least `HIGH_VIEW_DEG`; scalar tensor."""
    return (elevation_deg >= HIGH_VIEW_DEG).float().mean()


def pose_statistics(pose2d: torch.Tensor, pose3d: torch.Tensor,
                    reference_size: torch.Tensor | None = None) -> dict[str, float]:  # fmt: skip
    """`POSE_STATS` of a set of pose pairs, as plain floats.

    Args:
        pose2d: (B, 16, 2); pose3d: (B, 16, 3) the same poses in the camera frame.
        reference_size: median `size_2d` of the real poses that ``scale_2d`` is relative to
            (None: these poses' own, so ``scale_2d`` = 1).
    """
    size = size_2d(pose2d).median()
    ref = size if reference_size is None else reference_size
    elevation = camera_elevation_deg(pose3d)
    return {
        "upright": float(upright_share(pose2d)),
        "inside": float(inside_share(pose2d)),
        "scale_2d": float(size / ref),
        "elevation_deg": float(elevation.median()),
        "high_view": float(high_view_share(elevation)),
    }


def augmentation_statistics(
    out: dict[str, torch.Tensor], real2d: torch.Tensor, real3d: torch.Tensor, d3d=None, d2d=None
) -> dict[str, dict]:
    """Statistics of an augmented batch beside the same of its real source poses.

    Args:
        out: the augmentor's output dict for the source poses (`Augmentor.forward`).
        real2d, real3d: the source pairs (B, 16, 2), (B, 16, 3).
        d3d, d2d: the discriminators (optional): their accuracies are added when given.

    Returns:
        ``{"real": {...}, "augmented": {...}}``: `POSE_STATS` for both; `AUGMENTATION_STATS`
        (those computable from the arguments) for the augmented poses.
    """
    ref = size_2d(real2d).median()
    real = pose_statistics(real2d, real3d)
    aug = pose_statistics(out["rt_2d"], out["rt"], reference_size=ref)
    params = augmentation_parameters(out)
    aug["rotation_deg"] = float(params["rotation_angle_deg"].median())
    aug["bone_angle_deg"] = float(params["angle_change_deg"].median())
    aug["bone_length_change"] = float((params["bone_length_ratio"] - 1).abs().median())
    if d3d is not None:
        aug["d3d_acc"] = discriminator_accuracy(d3d(real3d), d3d(out["ba"]))
    if d2d is not None:
        aug["d2d_acc"] = discriminator_accuracy(d2d(real2d), d2d(out["rt_2d"]))
    return {"real": real, "augmented": aug}


def discriminator_accuracy(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> float:
    """Mean of the real accuracy (score > 0.5) and the fake accuracy (score < 0.5)."""
    real = (real_scores > 0.5).float().mean()
    fake = (fake_scores < 0.5).float().mean()
    return float((real + fake) / 2)
