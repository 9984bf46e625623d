"""PoseAug's differentiable augmentor: bone angle (BA) -> bone length (BL) -> rotation and
translation (RT), each an MLP on the source pose plus Gaussian noise.

Shapes: poses are (B, 16, 3) camera-frame metres; ``cam`` is (B, 9) normalised intrinsics.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from poseaug_pl.geometry import skeleton
from poseaug_pl.geometry.camera import project_to_2d
from poseaug_pl.geometry.rotation import (
    axis_angle_to_matrix,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
)

#: Rotation parametrisations of the RT head.
ROTATIONS = ("axis_angle", "quaternion")


class NoiseMLP(nn.Module):
    """Linear -> BN -> LeakyReLU, ``stages`` x (2 x [Linear -> BN -> LeakyReLU]), Linear.

    The input is concatenated with fresh standard-normal noise of ``noise_dim`` channels on
    every call, which makes the augmentation stochastic. As in the released PoseAug code the
    stages have no residual connection.

    Args:
        in_dim: input features (without the noise); out_dim: output features.
        hidden: hidden width (256); stages: number of two-layer stages (2); noise_dim: 48.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, stages: int = 2,
                 noise_dim: int = 48):  # fmt: skip
        super().__init__()
        self.noise_dim = noise_dim
        layers = [nn.Linear(in_dim + noise_dim, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU()]
        for _ in range(2 * stages):
            layers += [nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, out_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, out_dim)."""
        noise = torch.randn(x.shape[0], self.noise_dim, device=x.device, dtype=x.dtype)
        return self.head(self.body(torch.cat([x, noise], dim=1)))


class Augmentor(nn.Module):
    """The PoseAug augmentor A: X -> (X', x').

    * **BA** predicts a residual for every unit bone vector, re-normalises it and keeps the bone
      lengths; the two torso bones (hip-spine, spine-thorax) stay fixed.
    * **BL** predicts 9 left/right-shared length ratios ``tanh(.) * max_length_ratio`` (spine-thorax
      fixed at 0) and scales the BA pose's bones by ``1 + ratio``.
    * **RT** predicts an axis-angle rotation ``tanh(.) * pi`` and a translation whose depth is
      squared (plus ``min_depth``), rotates the root-centred BL pose and moves its root to the
      translation.

    Every branch reads the source pose (root-relative, flattened) and its own noise; BL also reads
    the source bone lengths.

    Args:
        hidden, stages, noise_dim: `NoiseMLP` sizes of every branch (256, 2, 48).
        max_length_ratio: bone-length change limit (0.2 = +-20%).
        min_depth: metres added to the squared depth. The released code uses 0; the default 1.0
            keeps every joint of an augmented pose in front of the camera (a body's joints lie
            within 1 m of its root).
        init_depth: the translation head starts near (0, 0, init_depth) metres (small weights,
            bias set accordingly), so early augmented poses are mostly inside the image rather
            than discarded; None keeps the plain Kaiming initialisation of the released code.
        identity_rotation_init: start the rotation head near the identity (small weights, zero
            bias) instead of the released Kaiming initialisation, whose ``tanh(.) * pi`` starts
            saturated (random orientations, ~200 degrees from the source on average). Off by
            default: on the CPU Human3.6M protocol it trained less stably (README, Results).
        rotation: ``axis_angle`` (released: ``tanh(.) * pi`` per component, which saturates
            at the corners, rotations of about 48 degrees about a diagonal) or ``quaternion``
            (a normalised 4-vector: every rotation reachable, no saturating gradient; the head
            starts near the identity, spread ``quaternion_init_std``).
        quaternion_init_std: weight std of the quaternion head (0.01: initial rotations of
            about 20 degrees).
    """

    def __init__(self, hidden: int = 256, stages: int = 2, noise_dim: int = 48,
                 max_length_ratio: float = 0.2, min_depth: float = 1.0,
                 init_depth: float | None = 5.0, identity_rotation_init: bool = False,
                 rotation: str = "axis_angle", quaternion_init_std: float = 0.01):  # fmt: skip
        super().__init__()
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
        self.rotation = rotation
        j, b, g = skeleton.NUM_JOINTS, skeleton.NUM_BONES, skeleton.NUM_BONE_GROUPS
        self.ba = NoiseMLP(3 * j, 3 * b, hidden, stages, noise_dim)
        self.bl = NoiseMLP(3 * j + b, g, hidden, stages, noise_dim)
        self.rot = NoiseMLP(3 * j, 4 if rotation == "quaternion" else 3, hidden, stages, noise_dim)
        self.trans = NoiseMLP(3 * j, 3, hidden, stages, noise_dim)
        self.max_length_ratio, self.min_depth = max_length_ratio, min_depth
        if rotation == "quaternion":
            nn.init.normal_(self.rot.head.weight, std=quaternion_init_std)
            with torch.no_grad():
                self.rot.head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        elif identity_rotation_init:
            nn.init.normal_(self.rot.head.weight, std=1e-2)
            nn.init.zeros_(self.rot.head.bias)
        if init_depth is not None:
            if init_depth <= min_depth:
                raise ValueError(f"init_depth ({init_depth}) must exceed min_depth ({min_depth})")
            nn.init.normal_(self.trans.head.weight, std=1e-2)
            with torch.no_grad():
                self.trans.head.bias.copy_(
                    torch.tensor([0.0, 0.0, math.sqrt(init_depth - min_depth)])
                )
        free = torch.ones(b, 1)
        free[list(skeleton.TORSO_BONES)] = 0.0
        self.register_buffer("ba_free", free, persistent=False)  # (15, 1): 0 for fixed bones
        group_mask = torch.ones(g)
        group_mask[skeleton.BONE_SYMMETRY_GROUP[7]] = 0.0  # spine-thorax ratio fixed at 0
        self.register_buffer("bl_group_mask", group_mask, persistent=False)
        group_to_bone = torch.zeros(g, b)
        group_to_bone[skeleton.BONE_SYMMETRY_GROUP, torch.arange(b)] = 1.0
        self.register_buffer("group_to_bone", group_to_bone, persistent=False)  # (9, 15)

    def forward(self, pose3d: torch.Tensor, cam: torch.Tensor) -> dict[str, torch.Tensor]:
        """Augment a batch.

        Args:
            pose3d: (B, 16, 3) source poses X, camera frame, metres.
            cam: (B, 9) each sample's normalised intrinsics.

        Returns:
            dict with ``ba``, ``bl``, ``rt`` (B, 16, 3) the pose after each branch (``rt`` = X');
            ``ba_2d``, ``rt_2d`` (B, 16, 2) their projections through ``cam`` (``rt_2d`` = x');
            ``ba_residual`` (B, 15, 3) the predicted bone-direction residual; ``ba_diff``
            (B, 15) 1 - cos of each bone's angle change; ``bl_ratio`` (B, 9) and
            ``bl_ratio_bones`` (B, 15) the length ratios; ``rotation`` (B, 3) axis-angle
            (radians); ``rotation_matrix`` (B, 3, 3); ``translation`` (B, 3) metres.
        """
        n = pose3d.shape[0]
        root = pose3d[:, :1]
        rel = pose3d - root
        src = rel.reshape(n, -1)
        dirs = skeleton.bone_directions(rel)  # (B, 15, 3)
        lengths = skeleton.bone_lengths(rel)  # (B, 15)

        # BA: new bone directions, same lengths; torso bones untouched
        residual = self.ba(src).view(n, skeleton.NUM_BONES, 3)
        new_dirs = nn.functional.normalize(dirs + residual, dim=-1)
        new_dirs = new_dirs * self.ba_free + dirs * (1 - self.ba_free)
        ba_diff = 1 - (new_dirs * dirs).sum(-1)
        ba = skeleton.bones_to_pose(new_dirs * lengths.unsqueeze(-1), root=root[:, 0])

        # BL: 9 shared ratios scale the BA pose's bones
        ratio = torch.tanh(self.bl(torch.cat([src, lengths], 1)) * self.bl_group_mask)
        ratio = ratio * self.max_length_ratio
        ratio_bones = ratio @ self.group_to_bone
        ba_bones = skeleton.pose_to_bones(ba)
        bl = skeleton.bones_to_pose(ba_bones * (1 + ratio_bones).unsqueeze(-1), root=root[:, 0])

        # RT: rotate the root-centred BL pose, move its root to the predicted translation
        rot_mat, rotation = self._rotate(src)
        t = self.trans(src)
        translation = torch.cat([t[:, :2], t[:, 2:] * t[:, 2:] + self.min_depth], 1)
        rt = (bl - bl[:, :1]) @ rot_mat.transpose(1, 2) + translation.unsqueeze(1)

        return {
            "ba": ba, "bl": bl, "rt": rt,
            "ba_2d": project_to_2d(ba, cam), "rt_2d": project_to_2d(rt, cam),
            "ba_residual": residual, "ba_diff": ba_diff,
            "bl_ratio": ratio, "bl_ratio_bones": ratio_bones,
            "rotation": rotation, "rotation_matrix": rot_mat, "translation": translation,
        }  # fmt: skip

    def _rotate(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RT's rotation for flattened root-relative poses (B, 48): matrices (B, 3, 3) and
        axis-angle (B, 3), with fresh noise."""
        if self.rotation == "quaternion":
            q = self.rot(src)
            return quaternion_to_matrix(q), quaternion_to_axis_angle(q)
        rotation = torch.tanh(self.rot(src)) * math.pi
        return axis_angle_to_matrix(rotation), rotation

    def draw_rotation(self, pose3d: torch.Tensor) -> torch.Tensor:
        """Another draw of RT's rotation for the same poses, the other branches skipped.

        Args:
            pose3d: (B, 16, 3) source poses, camera frame.

        Returns:
            (B, 3, 3) rotation matrices (the distribution of ``forward``'s ``rotation_matrix``).
        """
        rel = pose3d - pose3d[:, :1]
        return self._rotate(rel.reshape(len(rel), -1))[0]


def bone_angle_change_deg(ba_diff: torch.Tensor) -> torch.Tensor:
    """Per-bone angle change in degrees from ``ba_diff`` = 1 - cos (for dashboards; no grad)."""
    return torch.rad2deg(torch.acos((1 - ba_diff.detach()).clamp(-1.0, 1.0)))


def augmentation_parameters(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flat distributions of what the augmentor did to a batch (for histograms; no grad).

    Args:
        out: the augmentor's output dict (``ba_diff``, ``bl_ratio_bones``, ``rotation``,
            ``translation``).

    Returns:
        ``angle_change_deg`` (B * 13) per-bone angle change of the bones BA may turn;
        ``bone_length_ratio`` (B * 15) new / old bone length; ``rotation_angle_deg`` (B,) the
        angle of the rotation, in [0, 180]; ``translation_depth`` (B,) the root depth in
        metres. Same device.
    """
    free = [k for k in range(skeleton.NUM_BONES) if k not in skeleton.TORSO_BONES]
    angle = out["rotation"].detach().norm(dim=-1)  # axis-angle norm, below 2 pi here
    angle = torch.minimum(angle, 2 * math.pi - angle)
    return {
        "angle_change_deg": bone_angle_change_deg(out["ba_diff"][:, free]).flatten(),
        "bone_length_ratio": (1 + out["bl_ratio_bones"].detach()).flatten(),
        "rotation_angle_deg": torch.rad2deg(angle),
        "translation_depth": out["translation"].detach()[:, 2],
    }
