"""poseaug-pl: PoseAug (differentiable pose augmentation for 3D human pose estimation) on
PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
