"""Specification of the losses and the evaluation metrics."""

import numpy as np
import pytest
import torch

from poseaug_pl.evaluation import metrics
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.geometry.rotation import axis_angle_to_matrix
from poseaug_pl.training import losses


def random_poses(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return sk.root_relative(torch.randn(n, 16, 3, generator=g, dtype=dtype) * 0.3)


# --- losses ------------------------------------------------------------------------------------


def test_band_and_rectified_l2_are_zero_inside_and_squared_outside():
    x = torch.tensor([0.0, 0.05, 0.2, -0.3])
    assert losses.rectified_l2(x, 0.1).item() == pytest.approx((0.04 + 0.09) / 4)
    r = torch.tensor([4.0, 8.0, 0.5])
    assert losses.band_loss(r, 5.0, 2.0).item() == pytest.approx((9 + 4.5**2) / 3)


def test_lsgan_losses():
    real, fake = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0])
    assert losses.lsgan_discriminator_loss(real, fake).item() == pytest.approx(0.5 * (0.125 + 0.5))
    assert losses.lsgan_generator_loss(fake).item() == pytest.approx(0.5 * 0.5)


def test_ba_regulariser_forms():
    diff = torch.full((4, 15), 0.5)  # mean 1 - cos = 0.5, outside [0.04, 0.37]
    assert losses.ba_regulariser(diff, None, "released").item() == pytest.approx((0.5 - 0.205) ** 2)
    inside = torch.full((4, 15), 0.2)
    assert losses.ba_regulariser(inside, None, "released").item() == 0
    res = torch.full((4, 15, 3), 0.2)
    assert losses.ba_regulariser(None, res, "paper").item() == pytest.approx(0.04)
    with pytest.raises(ValueError, match="recipe"):
        losses.ba_regulariser(diff, res, "other")


def test_grouped_error_weights_and_groups():
    pred, target = torch.zeros(1, 16, 3), torch.zeros(1, 16, 3)
    pred[0, 3, 0] = 1.0  # right foot: weight 1, group 3 (4 joints)
    pred[0, 1, 0] = 1.0  # right hip: weight 5, group 1 (4 joints)
    pred[0, 9, 0] = 2.0  # head: weight 1, group 2 (5 joints)
    expected = torch.tensor([[5 / 4, 2 / 5, 1 / 4]])
    torch.testing.assert_close(losses.grouped_pose_error(pred, target), expected)


def test_feedback_losses():
    src, aug = torch.tensor([0.05, 0.05]), torch.tensor([0.1, 0.25])
    expected = ((1 - np.exp(0.1 - 2 * 0.05)) ** 2) ** 0.5 / 2 + abs(1 - np.exp(0.25 - 0.1)) / 2
    assert losses.feedback_loss_paper(aug, src, 2.0).item() == pytest.approx(expected)
    e_src, e_aug = torch.full((2, 3), 0.05), torch.tensor([[0.2] * 3, [0.5] * 3])  # ratios 4, 10
    assert losses.feedback_loss_released(e_aug, e_src, 5.0, 2.0).item() == pytest.approx(
        25 / 2, rel=1e-5
    )


# --- metrics -----------------------------------------------------------------------------------


def numpy_pa_mpjpe(pred, target):
    """Independent reference: per-frame orthogonal Procrustes with scale, no reflections."""
    out = []
    for p, t in zip(pred, target):
        p0, t0 = p - p.mean(0), t - t.mean(0)
        u, s, vt = np.linalg.svd(p0.T @ t0)
        d = np.sign(np.linalg.det(u @ vt))
        fix = np.diag([1.0, 1.0, d])
        rot = u @ fix @ vt  # maps p0 onto t0
        scale = (s * np.diag(fix)).sum() / (p0**2).sum()
        aligned = scale * p0 @ rot + t.mean(0)
        out.append(np.linalg.norm(aligned - t, axis=-1).mean())
    return np.array(out)


def test_pa_mpjpe_is_zero_for_any_similarity_transform():
    x = random_poses(20)
    rot = axis_angle_to_matrix(torch.randn(20, 3, dtype=torch.float64))
    y = 2.5 * x @ rot.transpose(1, 2) + torch.randn(20, 1, 3, dtype=torch.float64)
    assert metrics.pa_mpjpe(y, x).max() < 1e-9


def test_pa_mpjpe_equals_the_numpy_reference_including_reflections():
    target, pred = random_poses(200, 1), random_poses(200, 2)
    pred[:50] = target[:50] * torch.tensor([-1.0, 1, 1], dtype=torch.float64) + 0.01 * pred[:50]
    ours = metrics.pa_mpjpe(pred.float(), target.float()).double().numpy()
    np.testing.assert_allclose(ours, numpy_pa_mpjpe(pred.numpy(), target.numpy()), atol=1e-4)
    assert (ours[:50] > 0.01).all()  # a mirror image is not explained away by a reflection


def test_mpjpe_and_n_mpjpe():
    x = random_poses(5)
    torch.testing.assert_close(metrics.mpjpe(x + torch.tensor([0.0, 0.0, 0.1], dtype=x.dtype), x),
                               torch.full((5,), 0.1, dtype=x.dtype))  # fmt: skip
    assert metrics.n_mpjpe(1.7 * x, x).max() < 1e-12


def test_pck_and_auc_on_a_hand_computed_case():
    target = torch.zeros(1, 16, 3)
    pred = torch.zeros(1, 16, 3)
    errors_mm = torch.tensor([0, 10, 20, 40, 80, 100, 140, 149, 150, 151, 200, 300, 0, 0, 0, 0.0])
    pred[0, :, 0] = errors_mm / 1000
    assert metrics.pck(pred, target).item() == pytest.approx(100 * 12 / 16)  # < 150 mm
    thresholds = np.arange(0, 151, 5)
    expected_auc = np.mean([100 * (errors_mm.numpy() < t).mean() for t in thresholds])
    assert metrics.auc(pred, target).item() == pytest.approx(expected_auc, abs=1e-4)


def test_pose_metrics_accumulate_and_match_the_functions():
    target, pred = random_poses(300, 3).float(), random_poses(300, 4).float()
    m = metrics.PoseMetrics()
    m.update(pred[:120], target[:120])
    m.update(pred[120:], target[120:])
    out = m.compute()
    assert out["frames"].item() == 300
    assert out["mpjpe"].item() == pytest.approx(
        metrics.mpjpe(pred, target).mean().item() * 1000, rel=1e-5
    )
    assert out["pa_mpjpe"].item() == pytest.approx(
        metrics.pa_mpjpe(pred, target).mean().item() * 1000, rel=1e-5
    )  # noqa: E501
    assert out["n_mpjpe"].item() == pytest.approx(
        metrics.n_mpjpe(pred, target).mean().item() * 1000, rel=1e-5
    )  # noqa: E501
    assert out["pck"].item() == pytest.approx(metrics.pck(pred, target).item(), rel=1e-5)
    assert out["auc"].item() == pytest.approx(metrics.auc(pred, target).item(), rel=1e-5)
    assert out["per_joint"].shape == (16,) and out["per_joint"][0] == 0
    assert torch.allclose(
        out["per_bone_angle"].float(), metrics.bone_angle_errors(pred, target).mean(0), rtol=1e-4
    )
    assert torch.allclose(
        out["per_bone_length"].float(), metrics.bone_length_ratios(pred, target).mean(0), rtol=1e-4
    )
    for state in ("mpjpe", "pa_mpjpe", "frames", "below", "per_joint", "per_bone_angle"):
        assert m._reductions[state] is not None  # summed across processes


def test_bone_diagnostics_separate_a_skeleton_change_from_a_pose_change():
    pose = random_poses(8, 5)
    assert torch.allclose(
        metrics.bone_angle_errors(pose, pose), torch.zeros(8, 15, dtype=pose.dtype), atol=1e-4
    )
    rot = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0], dtype=pose.dtype))
    turned = 2 * pose @ rot.T  # every bone twice as long and turned the same way
    assert torch.allclose(
        metrics.bone_length_ratios(turned, pose), torch.full((8, 15), 2.0, dtype=pose.dtype)
    )
    bones = sk.pose_to_bones(pose)
    axis = torch.nn.functional.normalize(
        torch.cross(bones[:, 0], torch.randn_like(bones[:, 0]), dim=-1), dim=-1
    )
    bones[:, 0] = torch.cross(axis, bones[:, 0], dim=-1)  # the first bone turned by 90 degrees
    bent = sk.bones_to_pose(bones)
    angles = metrics.bone_angle_errors(bent, pose)
    assert torch.allclose(angles[:, 0], torch.full((8,), 90.0, dtype=pose.dtype))
    assert torch.allclose(angles[:, 1:], torch.zeros(8, 14, dtype=pose.dtype), atol=1e-4)
    assert torch.allclose(
        metrics.bone_length_ratios(bent, pose), torch.ones(8, 15, dtype=pose.dtype)
    )


def test_flip_averaging_is_flip_equivariant_for_any_estimator():
    from poseaug_pl.models import VideoPose

    torch.manual_seed(0)
    model = VideoPose(channels=64).eval()
    x = random_poses(8).float()[..., :2]
    avg = sk.flip_average(model, x)
    torch.testing.assert_close(sk.flip_average(model, sk.flip_pose(x)), sk.flip_pose(avg))


def test_flip_averaging_leaves_a_symmetric_estimator_unchanged():
    def lift(x2d):  # mirror-symmetric: flip(lift(x)) == lift(flip(x))
        return sk.root_relative(torch.cat([x2d, x2d.norm(dim=-1, keepdim=True)], -1))

    x = random_poses(8)[..., :2]
    torch.testing.assert_close(sk.flip_average(lift, x), lift(x))
