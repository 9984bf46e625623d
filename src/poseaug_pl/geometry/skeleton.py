"""The 16-joint PoseAug skeleton and pure, batched bone geometry.

Joint order (PoseAug / Human3.6M-16)::

    0 hip        4 l_hip      8 thorax       12 l_wrist
    1 r_hip      5 l_knee     9 head         13 r_shoulder
    2 r_knee     6 l_foot    10 l_shoulder   14 r_elbow
    3 r_foot     7 spine     11 l_elbow      15 r_wrist

The 15 bones are ordered so that bone ``k`` ends at joint ``k + 1``
(``0-1, 1-2, 2-3, 0-4, 4-5, 5-6, 0-7, 7-8, 8-9, 8-10, 10-11, 11-12, 8-13, 13-14, 14-15``).

Every function takes tensors with arbitrary leading batch dimensions ``...`` and works on
any device and floating dtype. Constant index/incidence tensors are built once per
(device, dtype) and cached, never rebuilt per call.
"""

from __future__ import annotations

from functools import lru_cache

import torch

NUM_JOINTS = 16
NUM_BONES = 15

JOINT_NAMES: tuple[str, ...] = (
    "hip", "r_hip", "r_knee", "r_foot", "l_hip", "l_knee", "l_foot", "spine",
    "thorax", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)  # fmt: skip

#: Parent joint of every joint (-1 for the root).
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 8, 10, 11, 8, 13, 14)

#: Bones as (parent, child) joint pairs, in PoseAug's order (bone k ends at joint k+1).
BONES: tuple[tuple[int, int], ...] = tuple((PARENTS[c], c) for c in range(1, NUM_JOINTS))

BONE_NAMES: tuple[str, ...] = tuple(f"{JOINT_NAMES[p]}-{JOINT_NAMES[c]}" for p, c in BONES)

#: Joints on the subject's left and their right counterparts, pairwise.
LEFT_JOINTS: tuple[int, ...] = (4, 5, 6, 10, 11, 12)
RIGHT_JOINTS: tuple[int, ...] = (1, 2, 3, 13, 14, 15)

#: Left bones and their right counterparts, pairwise (bone k ends at joint k+1).
LEFT_BONES: tuple[int, ...] = tuple(j - 1 for j in LEFT_JOINTS)
RIGHT_BONES: tuple[int, ...] = tuple(j - 1 for j in RIGHT_JOINTS)

#: The two torso bones PoseAug's bone-angle branch keeps fixed: hip-spine, spine-thorax.
TORSO_BONES: tuple[int, ...] = (6, 7)

#: The 9 left/right-shared bone groups used by PoseAug's bone-length branch:
#: ``BONE_SYMMETRY_GROUP[k]`` is the group of bone k. Groups 0-2 legs (hip, thigh, shin),
#: 3 hip-spine, 4 spine-thorax, 5 thorax-head, 6-8 arms (clavicle, upper arm, forearm).
BONE_SYMMETRY_GROUP: tuple[int, ...] = (0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 6, 7, 8)
NUM_BONE_GROUPS = 9

#: Permutation that swaps left and right joints (its own inverse).
FLIP_PERMUTATION: tuple[int, ...] = tuple(
    {**dict(zip(LEFT_JOINTS, RIGHT_JOINTS)), **dict(zip(RIGHT_JOINTS, LEFT_JOINTS))}.get(j, j)
    for j in range(NUM_JOINTS)
)

#: Human3.6M 32-joint mocap layout -> 16 PoseAug joints.
H36M32_TO_16: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 15, 17, 18, 19, 25, 26, 27)

#: Common 17-joint Human3.6M layout (with neck/nose at 9) -> 16 PoseAug joints.
H36M17_TO_16: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16)


def _incidence() -> torch.Tensor:
    """(15, 16) matrix D with ``bones = D @ joints`` (child minus parent)."""
    d = torch.zeros(NUM_BONES, NUM_JOINTS, dtype=torch.float64)
    for k, (p, c) in enumerate(BONES):
        d[k, c] = 1.0
        d[k, p] = -1.0
    return d


def _ancestry() -> torch.Tensor:
    """(16, 15) matrix A with ``joints - root = A @ bones`` (bones on each root path)."""
    a = torch.zeros(NUM_JOINTS, NUM_BONES, dtype=torch.float64)
    for j in range(1, NUM_JOINTS):
        k = j
        while k > 0:
            a[j, k - 1] = 1.0
            k = PARENTS[k]
    return a


_BASE = {
    "incidence": _incidence(),
    "ancestry": _ancestry(),
    "flip": torch.tensor(FLIP_PERMUTATION, dtype=torch.long),
    "parent_of_child": torch.tensor([p for p, _ in BONES], dtype=torch.long),
}


@lru_cache(maxsize=64)
def constant(name: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
    """Cached constant tensor ``name`` on ``device`` (floating ones cast to ``dtype``).

    Names: ``incidence`` (15,16), ``ancestry`` (16,15), ``flip`` (16,) long,
    ``parent_of_child`` (15,) long.
    """
    t = _BASE[name]
    if t.is_floating_point() and dtype is not None:
        t = t.to(dtype)
    return t.to(device)


def _check_joints(x: torch.Tensor, what: str = "pose") -> None:
    if x.ndim < 2 or x.shape[-2] != NUM_JOINTS:
        raise ValueError(f"{what} must have shape (..., {NUM_JOINTS}, C), got {tuple(x.shape)}")


def pose_to_bones(pose: torch.Tensor) -> torch.Tensor:
    """Bone vectors (child minus parent) of a pose.

    Args:
        pose: (..., 16, C) joint positions (C = 2 or 3).

    Returns:
        (..., 15, C) bone vectors in PoseAug's bone order.
    """
    _check_joints(pose)
    parent = constant("parent_of_child", pose.device)
    return pose[..., 1:, :] - pose.index_select(-2, parent)


def bones_to_pose(bones: torch.Tensor, root: torch.Tensor | None = None) -> torch.Tensor:
    """Forward kinematics: joint positions from bone vectors (inverse of `pose_to_bones`).

    Args:
        bones: (..., 15, C) bone vectors.
        root: optional (..., C) root position; the root is at the origin when omitted.

    Returns:
        (..., 16, C) joint positions.
    """
    if bones.ndim < 2 or bones.shape[-2] != NUM_BONES:
        raise ValueError(f"bones must have shape (..., {NUM_BONES}, C), got {tuple(bones.shape)}")
    pose = torch.matmul(constant("ancestry", bones.device, bones.dtype), bones)
    if root is not None:
        pose = pose + root.unsqueeze(-2)
    return pose


def bone_lengths(pose: torch.Tensor) -> torch.Tensor:
    """Bone lengths. (..., 16, C) pose -> (..., 15)."""
    return torch.linalg.vector_norm(pose_to_bones(pose), dim=-1)


def bone_directions(pose: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Unit bone directions. (..., 16, C) pose -> (..., 15, C); zero-length bones give 0."""
    b = pose_to_bones(pose)
    return b / torch.linalg.vector_norm(b, dim=-1, keepdim=True).clamp_min(eps)


def set_bone_lengths(pose: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Keep every bone's direction and the root position, give the bones new lengths.

    Args:
        pose: (..., 16, C) joint positions.
        lengths: (..., 15) or (15,) new bone lengths (broadcast against the pose batch).

    Returns:
        (..., 16, C) the re-assembled pose, root unchanged.
    """
    bones = bone_directions(pose) * lengths.unsqueeze(-1)
    return bones_to_pose(bones, root=pose[..., 0, :])


#: Joints that datasets define alike: the limbs' middle and end joints (knees, feet, elbows,
#: wrists).
LIMB_JOINTS: tuple[int, ...] = (2, 3, 5, 6, 11, 12, 14, 15)

#: Joints whose placement differs between datasets (marker sets, body-model regressors):
#: the hips about the pelvis, the head and the shoulders about the thorax.
HIPS: tuple[int, ...] = (1, 4)
SHOULDERS: tuple[int, ...] = (10, 13)
HEAD = 9
THORAX = 8
SPINE = 7


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-8)


def body_axes(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The body's unit axes ``(up, right, forward)``, each (..., 3), of (..., 16, 3) poses:
    up from the pelvis to the spine joint, right along the hip line (left hip to right hip)
    made perpendicular to up, forward = up x right (the way the person faces)."""
    _check_joints(pose)
    up = _unit(pose[..., SPINE, :] - pose[..., 0, :])
    right = pose[..., HIPS[0], :] - pose[..., HIPS[1], :]
    right = _unit(right - (right * up).sum(-1, keepdim=True) * up)
    return up, right, torch.linalg.cross(up, right, dim=-1)


def joint_placement(pose: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where a pose puts the joints `redefine_joints` moves, in its parameters' terms.

    Args:
        pose: (..., 16, 3) joints in metres.

    Returns:
        (...) tensors: ``hip_width`` the hips' mean distance from the pelvis once the shifts are
        undone; ``hip_drop`` and ``hip_forward`` how far the hips' midpoint lies below the pelvis
        along the spine axis and in front of it (`body_axes`); ``head`` and ``clavicle`` the
        head's and the shoulders' (mean) distances from the thorax.
    """
    up, _, forward = body_axes(pose)
    hips = pose[..., HIPS, :] - pose[..., :1, :]
    mid = hips.mean(-2)
    drop, ahead = -(mid * up).sum(-1), (mid * forward).sum(-1)
    lateral = hips + (drop[..., None] * up - ahead[..., None] * forward).unsqueeze(-2)
    thorax = pose[..., THORAX : THORAX + 1, :]
    return {
        "hip_width": torch.linalg.vector_norm(lateral, dim=-1).mean(-1),
        "hip_drop": drop,
        "hip_forward": ahead,
        "head": torch.linalg.vector_norm(pose[..., HEAD, :] - thorax[..., 0, :], dim=-1),
        "clavicle": torch.linalg.vector_norm(pose[..., SHOULDERS, :] - thorax, dim=-1).mean(-1),
    }


def redefine_joints(
    pose: torch.Tensor, hip_width, hip_drop, head, clavicle, hip_forward=0.0
) -> torch.Tensor:
    """Place the hips, the head and the shoulders as another dataset might; every other joint
    (the limbs, spine and thorax) stays where it is.

    The hips' offsets from the pelvis (joint 0) are scaled by ``hip_width``, then moved
    ``hip_drop`` metres along the spine axis towards the feet and ``hip_forward`` metres along
    the body's forward axis (spine axis x right, with the right as the hip line made
    perpendicular to the spine); the head's and the shoulders' offsets from the thorax are
    scaled by ``head`` and ``clavicle``. All factors broadcast against the batch; ones and
    zero shifts give the pose back.

    Args:
        pose: (..., 16, 3) joints in metres.
        hip_width, hip_drop, head, clavicle, hip_forward: (...) tensors or numbers.

    Returns:
        (..., 16, 3) the pose with joints 1, 4, 9, 10 and 13 moved.
    """
    _check_joints(pose)

    def col(v):  # (...) -> (..., 1, 1) against (..., J, 3)
        v = torch.as_tensor(v, dtype=pose.dtype, device=pose.device)
        return v[..., None, None]

    pelvis, thorax = pose[..., :1, :], pose[..., THORAX : THORAX + 1, :]
    up, _, forward = (v.unsqueeze(-2) for v in body_axes(pose))
    shift = col(hip_forward) * forward - col(hip_drop) * up
    out = pose.clone()
    out[..., HIPS, :] = pelvis + col(hip_width) * (pose[..., HIPS, :] - pelvis) + shift
    out[..., HEAD : HEAD + 1, :] = thorax + col(head) * (pose[..., HEAD : HEAD + 1, :] - thorax)
    out[..., SHOULDERS, :] = thorax + col(clavicle) * (pose[..., SHOULDERS, :] - thorax)
    return out


def root_relative(pose: torch.Tensor) -> torch.Tensor:
    """Subtract the root (hip) joint. (..., 16, C) -> (..., 16, C) with joint 0 at zero."""
    _check_joints(pose)
    return pose - pose[..., :1, :]


def flip_pose(pose: torch.Tensor) -> torch.Tensor:
    """Mirror a pose left/right: negate x and swap left and right joints.

    Works for 2D poses in normalised screen coordinates (origin at the image centre) and for
    3D camera-frame poses alike; flipping twice is the identity.

    Args:
        pose: (..., 16, C) with C >= 1, x first.

    Returns:
        (..., 16, C) mirrored pose.
    """
    _check_joints(pose)
    out = pose.index_select(-2, constant("flip", pose.device))
    return torch.cat([-out[..., :1], out[..., 1:]], dim=-1)


def remap_joints(pose, layout: str):
    """Convert a pose from another joint layout to the 16-joint PoseAug layout.

    Args:
        pose: (..., J, C) numpy array or tensor with J = 32 (Human3.6M mocap), 17 (common
            Human3.6M layout) or 16 (already PoseAug).
        layout: ``"h36m32"``, ``"h36m17"`` or ``"poseaug16"``.

    Returns:
        (..., 16, C) of the same type.
    """
    index = {"h36m32": H36M32_TO_16, "h36m17": H36M17_TO_16, "poseaug16": None}
    if layout not in index:
        raise ValueError(f"unknown joint layout {layout!r}; expected one of {sorted(index)}")
    expected = {"h36m32": 32, "h36m17": 17, "poseaug16": 16}[layout]
    if pose.shape[-2] != expected:
        raise ValueError(f"{layout} poses have {expected} joints, got shape {tuple(pose.shape)}")
    return pose if index[layout] is None else pose[..., list(index[layout]), :]


def layout_for(num_joints: int) -> str:
    """Joint layout name for a joint count (32, 17 or 16)."""
    layouts = {32: "h36m32", 17: "h36m17", 16: "poseaug16"}
    if num_joints not in layouts:
        raise ValueError(f"unsupported joint count {num_joints}; expected 16, 17 or 32")
    return layouts[num_joints]


def flip_average(estimator, pose2d: torch.Tensor) -> torch.Tensor:
    """Flip test-time augmentation: average ``f(x)`` and ``flip(f(flip(x)))``.

    Args:
        estimator: callable (B, 16, 2) -> (B, 16, 3).
        pose2d: (B, 16, 2) normalised 2D poses.

    Returns:
        (B, 16, 3) the averaged prediction.
    """
    both = estimator(torch.cat([pose2d, flip_pose(pose2d)], 0))
    plain, mirrored = both.chunk(2, 0)
    return (plain + flip_pose(mirrored)) / 2
