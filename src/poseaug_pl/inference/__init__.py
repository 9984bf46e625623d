"""Inference: lifting 2D keypoints of any layout to 3D."""
