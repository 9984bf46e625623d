"""`PairTransforms`: what happens to a batch's pairs before the networks see them.

* **Bone swap** (the released code): every source pose takes a random training subject's bone
  lengths (re-projected), so that the augmentor and the discriminators' real samples see every
  subject's proportions with every motion. The estimator's real pass sees the pairs as given.
* **Joint-definition jitter** (``model.definition_jitter``, an extension; off in the released
  code): datasets place the hips, the head and the shoulders differently (HumanEva-I's hips sit
  a third as far apart as Human3.6M's and 5 cm in front of its pelvis, its head joint 14 cm
  higher), and an estimator that learned one placement reads them, and the limbs' depth, wrongly
  from another. Each estimator training pair gets these joints moved by factors drawn per pose
  (`skeleton.redefine_joints`; the limbs stay), in 3D and, re-projected, in 2D. ``pairs``:
  ``augmented`` (x', X' only) or ``all`` (the real pairs too).
* **Re-filming** (``model.refilm``, an extension; off in the released code): the augmentor can
  turn and move a pose but films it through the source sample's own Human3.6M camera (f about
  2.3 half-widths, people 4-6 m away), while the MPI-INF-3DHP family's and phones' lenses are
  wider (1.15-1.75 half-widths) with people 2-7 m away, so they show people smaller and with
  stronger perspective. Each estimator training pair gets a pinhole of focal length drawn from
  ``focal`` (half-widths) and its root moved along its viewing ray to a depth drawn from
  ``depth`` (metres); the pose itself, its orientation to the camera and the principal point
  stay. Augmented pairs that leave the image are dropped as before; re-filmed real pairs
  (``pairs: all``) are all kept.
"""

from __future__ import annotations

import torch
from torch import nn

from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.geometry.camera import project_to_2d

#: `refilm`'s ranges, in the order `PairTransforms.refilm` draws them.
REFILM_KEYS = ("focal", "depth")
#: `definition_jitter`'s factors, in the order `skeleton.redefine_joints` takes them.
JITTER_KEYS = ("hip_width", "hip_drop", "head", "clavicle", "hip_forward")


class PairTransforms(nn.Module):
    """Bone swap of source poses, joint-definition jitter and re-filming of estimator training
    pairs.

    Args:
        bone_swap: give source poses a random training subject's bone lengths (the subjects'
            lengths are set with `set_bone_templates` when training starts).
        definition_jitter: ``{pairs: none | augmented | all, <JITTER_KEYS>: [low, high]}``
            (``hip_forward`` may be left out: no forward shift) or None (off). The values are
            checked where the config is (`poseaug_pl.training.config`).
        refilm: ``{pairs: none | augmented | all, focal: [low, high], depth: [low, high]}`` or
            None (off).
    """

    def __init__(self, bone_swap: bool, definition_jitter: dict | None,
                 refilm: dict | None = None):  # fmt: skip
        super().__init__()
        refilm = refilm or {}
        #: which estimator pairs are re-filmed: None, "augmented" or "all"
        pairs = refilm.get("pairs", "none")
        self.refilm_pairs = None if pairs in (None, "none") else pairs
        rows = [refilm[k] for k in REFILM_KEYS] if self.refilm_pairs else []
        refilm_ranges = torch.tensor(rows, dtype=torch.float32).reshape(-1, 2)
        self.register_buffer("refilm_ranges", refilm_ranges, persistent=False)  # (2, 2) or (0, 2)
        self.bone_swap = bone_swap
        jitter = definition_jitter or {}
        pairs = jitter.get("pairs", "none")
        #: which estimator pairs the jitter moves: None, "augmented" or "all"
        self.jitter_pairs = None if pairs in (None, "none") else pairs
        rows = [jitter.get(k, [0.0, 0.0]) for k in JITTER_KEYS] if self.jitter_pairs else []
        ranges = torch.tensor(rows, dtype=torch.float32).reshape(-1, 2)
        self.register_buffer("jitter_ranges", ranges, persistent=False)  # (5, 2) or (0, 2)
        self.register_buffer("bone_templates", torch.zeros(0, sk.NUM_BONES), persistent=False)

    def set_bone_templates(self, templates: torch.Tensor) -> None:
        """(S, 15) mean bone lengths of the training subjects (a no-op without bone swap)."""
        if self.bone_swap:
            self.bone_templates = templates.to(self.jitter_ranges.device)

    def source(self, batch: dict):
        """``(pose3d, pose2d, cam)`` source poses of a batch, with the bone swap when on."""
        x3, x2, cam = batch["pose3d"], batch["pose2d"], batch["cam"]
        if not len(self.bone_templates):
            return x3, x2, cam
        pick = torch.randint(0, len(self.bone_templates), (x3.shape[0],), device=x3.device)
        x3 = sk.set_bone_lengths(x3, self.bone_templates[pick])
        return x3, project_to_2d(x3, cam), cam

    def jitters(self, pairs: str) -> bool:
        """Whether the jitter moves estimator pairs of this kind (``augmented`` or ``real``)."""
        return self.jitter_pairs in (pairs, "all")

    def refilms(self, pairs: str) -> bool:
        """Whether estimator pairs of this kind (``augmented`` or ``real``) are re-filmed."""
        return self.refilm_pairs in (pairs, "all")

    def refilm(self, pose3d: torch.Tensor, cam: torch.Tensor):
        """``(pose2d, pose3d, cam)``: each pose moved along its root's viewing ray to a random
        depth and projected through a pinhole of random focal length (same principal point and
        aspect, no distortion). pose3d: (B, 16, 3) camera frame; cam: (B, 9) normalised."""
        if cam is None:
            raise ValueError("refilm needs the camera intrinsics of its pairs")
        lo, hi = self.refilm_ranges.unbind(-1)  # (2,)
        u = torch.rand(pose3d.shape[0], 2, device=pose3d.device, dtype=pose3d.dtype)
        focal, depth = (lo + (hi - lo) * u).unbind(-1)
        lens = torch.zeros_like(cam)
        lens[:, 0] = focal
        lens[:, 1] = focal * cam[:, 1] / cam[:, 0]
        lens[:, 2:4] = cam[:, 2:4]
        root = pose3d[:, :1]
        moved = pose3d - root + root * (depth[:, None, None] / root[..., 2:].clamp_min(1e-3))
        return project_to_2d(moved, lens), moved, lens

    def redefine(self, pose3d: torch.Tensor, pose2d: torch.Tensor, cam: torch.Tensor | None):
        """``(pose2d, pose3d)`` with the redefinable joints moved; each 2D joint moves by its 3D
        joint's change in projection, so the unmoved joints keep their 2D as given."""
        if cam is None:
            raise ValueError("definition_jitter needs the camera intrinsics of its pairs")
        lo, hi = self.jitter_ranges.unbind(-1)  # (5,)
        u = torch.rand(pose3d.shape[0], len(lo), device=pose3d.device, dtype=pose3d.dtype)
        moved = sk.redefine_joints(pose3d, *(lo + (hi - lo) * u).unbind(-1))
        return pose2d + project_to_2d(moved, cam) - project_to_2d(pose3d, cam), moved
