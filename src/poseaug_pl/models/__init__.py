"""Networks: 2D-to-3D estimators, the PoseAug augmentor, the discriminators (plain Modules)."""

from poseaug_pl.models.augmentor import (
    Augmentor,
    NoiseMLP,
    augmentation_parameters,
    bone_angle_change_deg,
)
from poseaug_pl.models.discriminators import KCS_PARTS, KCSDiscriminator, Pose2DDiscriminator
from poseaug_pl.models.estimators import (
    ESTIMATORS,
    STGCN,
    Estimator,
    SemGCN,
    SimpleBaseline,
    VideoPose,
)

__all__ = [
    "Augmentor", "ESTIMATORS", "Estimator", "KCS_PARTS", "KCSDiscriminator", "NoiseMLP",
    "Pose2DDiscriminator", "STGCN", "SemGCN", "SimpleBaseline", "VideoPose",
    "augmentation_parameters", "bone_angle_change_deg",
]  # fmt: skip
