"""poseaug-pl: PoseAug (differentiable pose augmentation for 3D human pose estimation) on
PyTorch Lightning and Hydra.

``from poseaug_pl import Lifter`` lifts 2D keypoints with a trained checkpoint
(`poseaug_pl.inference.lifter`).
"""

__version__ = "0.1.0"

__all__ = ["Lifter"]


def __getattr__(name):  # keep ``import poseaug_pl`` light: the Lifter loads torch on first use
    if name == "Lifter":
        from poseaug_pl.inference.lifter import Lifter

        return Lifter
    raise AttributeError(f"module 'poseaug_pl' has no attribute {name!r}")
