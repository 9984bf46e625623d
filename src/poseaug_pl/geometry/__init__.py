"""Pose geometry: skeleton, cameras, rotations and plausibility measures."""
