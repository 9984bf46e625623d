"""Specification of the 16-joint skeleton and bone geometry."""

import numpy as np
import pytest
import torch

from poseaug_pl.geometry import skeleton as sk


def random_pose(*batch, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*batch, 16, 3, generator=g, dtype=dtype)


def test_layout_constants_are_consistent():
    assert len(sk.JOINT_NAMES) == 16 and len(sk.PARENTS) == 16 and len(sk.BONES) == 15
    expected = [
        (0, 1),
        (1, 2),
        (2, 3),
        (0, 4),
        (4, 5),
        (5, 6),
        (0, 7),
        (7, 8),
        (8, 9),
        (8, 10),
        (10, 11),
        (11, 12),
        (8, 13),
        (13, 14),
        (14, 15),
    ]
    assert list(sk.BONES) == expected  # METHOD.md order, bone k ends at joint k + 1
    assert all(sk.PARENTS[j] < j for j in range(1, 16))
    assert [sk.JOINT_NAMES[j] for j in sk.LEFT_JOINTS] == [
        "l_hip",
        "l_knee",
        "l_foot",
        "l_shoulder",
        "l_elbow",
        "l_wrist",
    ]
    assert [sk.JOINT_NAMES[j] for j in sk.RIGHT_JOINTS] == [
        "r_hip",
        "r_knee",
        "r_foot",
        "r_shoulder",
        "r_elbow",
        "r_wrist",
    ]
    assert [sk.BONE_NAMES[b] for b in sk.TORSO_BONES] == ["hip-spine", "spine-thorax"]
    groups = sk.BONE_SYMMETRY_GROUP
    assert len(set(groups)) == sk.NUM_BONE_GROUPS == 9
    assert all(groups[l] == groups[r] for l, r in zip(sk.LEFT_BONES, sk.RIGHT_BONES))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_bone_round_trip_is_exact(dtype, tol):
    pose = random_pose(7, 5, dtype=dtype)
    back = sk.bones_to_pose(sk.pose_to_bones(pose), root=pose[..., 0, :])
    assert back.dtype == dtype
    torch.testing.assert_close(back, pose, atol=tol, rtol=0)


def test_bones_are_child_minus_parent():
    pose = random_pose(3)
    bones = sk.pose_to_bones(pose)
    for k, (p, c) in enumerate(sk.BONES):
        torch.testing.assert_close(bones[:, k], pose[:, c] - pose[:, p])


def test_lengths_and_directions_rebuild_bones():
    pose = random_pose(10)
    dirs = sk.bone_directions(pose)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(10, 15, dtype=torch.float64))
    torch.testing.assert_close(dirs * sk.bone_lengths(pose)[..., None], sk.pose_to_bones(pose))


def test_set_bone_lengths_keeps_directions_and_root():
    pose = random_pose(4)
    new = torch.rand(15, dtype=torch.float64) + 0.1
    out = sk.set_bone_lengths(pose, new)
    torch.testing.assert_close(sk.bone_lengths(out), new.expand(4, 15))
    torch.testing.assert_close(sk.bone_directions(out), sk.bone_directions(pose))
    torch.testing.assert_close(out[:, 0], pose[:, 0])


def test_redefine_joints_with_unit_factors_is_the_identity():
    pose = random_pose(4, 2)
    assert torch.allclose(sk.redefine_joints(pose, 1.0, 0.0, 1.0, 1.0), pose)


def test_redefine_joints_moves_only_hips_head_and_shoulders():
    pose = random_pose(64, seed=1)
    g = torch.Generator().manual_seed(2)
    width, drop, head, clav = (torch.rand(4, 64, generator=g, dtype=pose.dtype) + 0.5).unbind()
    out = sk.redefine_joints(pose, width, drop, head, clav)
    moved = [1, 4, 9, 10, 13]
    kept = [j for j in range(16) if j not in moved]
    assert torch.equal(out[:, kept], pose[:, kept])  # limbs, spine, thorax and root stay
    pelvis, thorax = pose[:, :1], pose[:, 8:9]
    up = (pose[:, 7:8] - pelvis) / (pose[:, 7:8] - pelvis).norm(dim=-1, keepdim=True)
    # undo the drop along the spine axis, then the hips' offsets are the old ones scaled
    hips = out[:, [1, 4]] + drop[:, None, None] * up - pelvis
    assert torch.allclose(hips, width[:, None, None] * (pose[:, [1, 4]] - pelvis))
    assert torch.allclose(out[:, 9] - thorax[:, 0], head[:, None] * (pose[:, 9] - thorax[:, 0]))
    assert torch.allclose(
        out[:, [10, 13]] - thorax, clav[:, None, None] * (pose[:, [10, 13]] - thorax)
    )


def _facing_camera() -> torch.Tensor:
    """(1, 16, 3) camera frame (x right in the image, y down, z away): a person facing the
    camera, so their right is the image's left (-x) and their forward is -z."""
    pose = torch.zeros(1, 16, 3, dtype=torch.float64)
    pose[0, 7] = torch.tensor([0.0, -0.25, 0.0])  # spine above the pelvis
    pose[0, 1], pose[0, 4] = torch.tensor([-0.13, 0, 0]), torch.tensor([0.13, 0, 0])
    return pose


def test_body_axes_of_a_person_facing_the_camera():
    up, right, forward = sk.body_axes(_facing_camera())
    f64 = dict(dtype=torch.float64)
    assert torch.allclose(up, torch.tensor([[0.0, -1, 0]], **f64))
    assert torch.allclose(right, torch.tensor([[-1.0, 0, 0]], **f64))
    assert torch.allclose(forward, torch.tensor([[0.0, 0, -1]], **f64))  # towards the camera


def test_redefine_joints_shifts_move_the_hips_down_and_forward():
    pose = _facing_camera()
    out = sk.redefine_joints(pose, 0.5, 0.05, 1.0, 1.0, hip_forward=0.03)
    assert torch.allclose(out[0, 1], torch.tensor([-0.065, 0.05, -0.03], dtype=pose.dtype))
    assert torch.allclose(out[0, 4], torch.tensor([0.065, 0.05, -0.03], dtype=pose.dtype))


def test_gradients_are_finite_even_for_zero_length_bones():
    pose = random_pose(2).requires_grad_()
    with torch.no_grad():
        pose[0, 1] = pose[0, 0]  # bone 0 has zero length
    sk.bone_directions(pose).sum().backward()
    assert torch.isfinite(pose.grad).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_flip_twice_is_identity_and_swaps_sides(dims):
    pose = random_pose(6)[..., :dims]
    flipped = sk.flip_pose(pose)
    torch.testing.assert_close(sk.flip_pose(flipped), pose)
    torch.testing.assert_close(flipped[:, 4, 0], -pose[:, 1, 0])  # l_hip <- mirrored r_hip
    torch.testing.assert_close(flipped[:, 0, 1:], pose[:, 0, 1:])
    lengths = sk.bone_lengths(pose)
    torch.testing.assert_close(
        sk.bone_lengths(flipped)[:, list(sk.LEFT_BONES)], lengths[:, list(sk.RIGHT_BONES)]
    )


def test_flip_of_a_mirror_symmetric_pose_is_itself():
    pose = random_pose(1)[0]
    pose[[0, 7, 8, 9], 0] = 0  # centre joints on the mirror plane
    pose[list(sk.LEFT_JOINTS)] = pose[list(sk.RIGHT_JOINTS)] * torch.tensor(
        [-1.0, 1, 1], dtype=pose.dtype
    )
    torch.testing.assert_close(sk.flip_pose(pose), pose)


def test_remap_from_32_and_17_joint_layouts():
    x32 = np.arange(32 * 3, dtype=np.float32).reshape(1, 32, 3)
    out = sk.remap_joints(x32, "h36m32")
    assert out.shape == (1, 16, 3)
    np.testing.assert_array_equal(out[0, :, 0] / 3, sk.H36M32_TO_16)
    x17 = torch.arange(17.0).view(1, 17, 1)
    assert sk.remap_joints(x17, "h36m17").flatten().tolist() == [float(i) for i in sk.H36M17_TO_16]
    assert 9 not in sk.H36M17_TO_16  # the neck/nose joint is dropped
    with pytest.raises(ValueError, match="17 joints"):
        sk.remap_joints(x32, "h36m17")
    with pytest.raises(ValueError, match="unsupported joint count 15"):
        sk.layout_for(15)


def test_constants_are_built_once_per_device_and_dtype():
    a = sk.constant("ancestry", torch.device("cpu"), torch.float32)
    assert a is sk.constant("ancestry", torch.device("cpu"), torch.float32)
    assert a.dtype == torch.float32 and a.shape == (16, 15)


def test_wrong_joint_count_is_refused():
    with pytest.raises(ValueError, match=r"\(\.\.\., 16, C\)"):
        sk.pose_to_bones(torch.zeros(2, 17, 3))
