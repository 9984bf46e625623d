"""Specification of camera transforms, the lens model and the embedded calibration."""

import json
import math

import numpy as np
import pytest
import torch

from poseaug_pl.geometry import camera, rotation
from poseaug_pl.geometry import skeleton as sk


def random_rotation(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return rotation.axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=torch.float64))


def test_world_camera_round_trip():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 16, 3, generator=g, dtype=torch.float64)
    rot, trans = random_rotation(5), torch.randn(5, 3, generator=g, dtype=torch.float64)
    cam = camera.world_to_camera(x, rot, trans)
    torch.testing.assert_close(camera.camera_to_world(cam, rot, trans), x)
    torch.testing.assert_close(cam[:, 0], torch.einsum("nij,nj->ni", rot, x[:, 0] - trans))


def test_normalisation_round_trip_and_range():
    px = torch.tensor([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]], dtype=torch.float64)
    n = camera.normalize_screen_coordinates(px, 1000, 1002)
    torch.testing.assert_close(n[:, 0], torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(n[1, 1], torch.tensor(1002 / 1000, dtype=torch.float64))
    torch.testing.assert_close(camera.image_coordinates(n, 1000, 1002), px)
    w = torch.tensor([[1000.0], [640.0]], dtype=torch.float64)
    h = torch.tensor([[1000.0], [480.0]], dtype=torch.float64)  # per-row sizes
    x = torch.rand(2, 16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 600
    torch.testing.assert_close(
        camera.image_coordinates(camera.normalize_screen_coordinates(x, w, h), w, h), x
    )


def test_projection_without_distortion_is_pinhole():
    x = torch.tensor([[[0.3, -0.2, 4.0], [0.0, 0.0, 5.0]]], dtype=torch.float64)
    intr = torch.tensor([[2.0, 2.1, 0.05, -0.03, 0, 0, 0, 0, 0]], dtype=torch.float64)
    expected = torch.stack(
        [2.0 * x[..., 0] / x[..., 2] + 0.05, 2.1 * x[..., 1] / x[..., 2] - 0.03], -1
    )
    torch.testing.assert_close(camera.project_to_2d(x, intr), expected)


def test_lens_model_matches_the_human36m_formula():
    """Human3.6M's reference: tan = p1*y + p2*x; x_d = x*(radial + tan) + [p2, p1] * r^2."""
    cam = camera.h36m_cameras()["S9"][2]
    x = torch.tensor([[0.4, -0.3, 3.5], [-0.6, 0.5, 5.0]], dtype=torch.float64)
    xy = (x[:, :2] / x[:, 2:]).numpy()
    r2 = (xy**2).sum(1, keepdims=True)
    radial = 1 + cam.k[0] * r2 + cam.k[1] * r2**2 + cam.k[2] * r2**3
    tan = cam.p[0] * xy[:, 1:] + cam.p[1] * xy[:, :1]
    ref = cam.f * (xy * (radial + tan) + np.array([cam.p[1], cam.p[0]]) * r2) + cam.c
    px = camera.project_to_2d(
        x, torch.tensor(cam.intrinsics(normalised=False), dtype=torch.float64)
    )
    np.testing.assert_allclose(px.numpy(), ref, rtol=1e-5)


def test_normalised_intrinsics_give_normalised_projection_for_every_camera():
    x = torch.tensor([[0.3, -0.4, 4.5], [-0.5, 0.6, 5.5]], dtype=torch.float64)
    for cams in camera.h36m_cameras().values():
        for c in cams:
            px = camera.project_to_2d(x, torch.tensor(c.intrinsics(False), dtype=torch.float64))
            nrm = camera.project_to_2d(x, torch.tensor(c.intrinsics(True), dtype=torch.float64))
            torch.testing.assert_close(
                camera.image_coordinates(nrm, c.res_w, c.res_h), px, rtol=0, atol=1e-3
            )


def test_projection_gradients_are_finite():
    x = torch.tensor([[[0.3, -0.2, 4.0], [5.0, 0.0, 1.0]]], requires_grad=True)  # 2nd beyond clamp
    intr = torch.as_tensor(camera.h36m_cameras()["S1"][0].intrinsics()).unsqueeze(0)
    camera.project_to_2d(x, intr).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_embedded_calibration_shape_and_values():
    cams = camera.h36m_cameras()
    assert list(cams) == list(camera.H36M_SUBJECTS)
    assert all(tuple(c.id for c in v) == camera.H36M_CAMERA_IDS for v in cams.values())
    arr = camera.h36m_camera_arrays()
    assert arr["rot"].shape == (7, 4, 3, 3) and arr["intrinsics"].shape == (7, 4, 9)
    eye = torch.eye(3).expand(7, 4, 3, 3)
    torch.testing.assert_close(arr["rot"] @ arr["rot"].transpose(-1, -2), eye, atol=1e-5, rtol=0)
    s1 = cams["S1"][0]  # published Human3.6M numbers, camera 54138969
    assert s1.f[0] == pytest.approx(1145.0494, abs=1e-3) and s1.res_h == 1002
    assert arr["intrinsics"][0, 0, 0].item() == pytest.approx(1145.0494 / 1000 * 2, abs=1e-5)
    with pytest.raises(ValueError, match="no Human3.6M calibration"):
        camera.h36m_camera_arrays(["S2"])


@pytest.mark.realdata
def test_embedded_calibration_equals_the_shared_file(h36m):
    raw = json.loads((h36m / "cameras.json").read_text())["cameras"]
    for s, cams in camera.h36m_cameras().items():
        for c in cams:
            np.testing.assert_allclose(c.rot, raw[s][c.id]["R"])
            np.testing.assert_allclose(c.trans * 1000, raw[s][c.id]["T_mm"])


@pytest.mark.realdata
def test_projection_of_real_3d_matches_s9_detections(h36m):
    """Camera order, extrinsic convention and distortion, checked against real detections."""
    d3 = np.load(h36m / "data_3d_h36m.npz", allow_pickle=True)["positions_3d"].item()["S9"]
    d2 = np.load(h36m / "data_2d_h36m_sh_pt_mpii.npz", allow_pickle=True)["positions_2d"].item()[
        "S9"
    ]
    errs = []
    for action in sorted(d3)[:8]:
        x = torch.as_tensor(sk.remap_joints(d3[action], "h36m32"), dtype=torch.float64)
        for i, c in enumerate(camera.h36m_cameras()["S9"]):
            xc = camera.world_to_camera(x, torch.as_tensor(c.rot), torch.as_tensor(c.trans))
            px = camera.project_to_2d(xc, torch.as_tensor(c.intrinsics(False), dtype=torch.float64))
            det = torch.as_tensor(d2[action][i], dtype=torch.float64)
            errs.append((px[: len(det)] - det[: len(px)]).norm(dim=-1).flatten())
    assert torch.cat(errs).median().item() < 15.0


def test_rotations_are_orthonormal_and_match_their_definition():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(50, 3, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    r = rotation.euler_yxz_to_matrix(a)
    ax, ay, az = a.unbind(-1)
    zero, one = torch.zeros_like(ax), torch.ones_like(ax)

    def m(rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = m([(one, zero, zero), (zero, ax.cos(), -ax.sin()), (zero, ax.sin(), ax.cos())])
    ry = m([(ay.cos(), zero, ay.sin()), (zero, one, zero), (-ay.sin(), zero, ay.cos())])
    rz = m([(az.cos(), -az.sin(), zero), (az.sin(), az.cos(), zero), (zero, zero, one)])
    torch.testing.assert_close(r, ry @ rx @ rz)
    aa = torch.randn(50, 3, generator=g, dtype=torch.float64)
    q = rotation.axis_angle_to_matrix(aa)
    torch.testing.assert_close(
        q @ q.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    )
    torch.testing.assert_close(torch.linalg.det(q), torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(torch.einsum("nij,nj->ni", q, aa), aa)  # the axis is fixed
    eye = rotation.axis_angle_to_matrix(torch.zeros(1, 3, requires_grad=True))
    torch.testing.assert_close(eye[0], torch.eye(3))


def test_relative_angle_is_the_angle_of_the_rotation_between_two():
    base = random_rotation(40)
    g = torch.Generator().manual_seed(1)
    angle = torch.rand(40, generator=g, dtype=torch.float64) * math.pi
    axis = torch.nn.functional.normalize(
        torch.randn(40, 3, generator=g, dtype=torch.float64), dim=-1
    )
    turned = rotation.axis_angle_to_matrix(axis * angle[:, None]) @ base
    torch.testing.assert_close(rotation.relative_angle(base, turned), angle)
    torch.testing.assert_close(rotation.relative_angle(turned, base), angle)  # symmetric
    same = rotation.relative_angle(base, base)
    torch.testing.assert_close(same, torch.zeros_like(same), atol=1e-6, rtol=0)


def test_look_at_points_the_camera_at_the_target():
    eye = torch.tensor([[4.0, -3.0, 2.0]])
    target = torch.tensor([[0.0, 0.0, 1.0]])
    rot = rotation.look_at(eye, target, torch.tensor([0.0, 0.0, 1.0]))
    xc = camera.world_to_camera(target.unsqueeze(1), rot, eye)[0, 0]
    torch.testing.assert_close(xc[:2], torch.zeros(2), atol=1e-6, rtol=0)
    assert xc[2] > 0
    up = camera.world_to_camera(torch.tensor([[[0.0, 0.0, 2.0]]]), rot, eye)[0, 0]
    assert up[1] < 0  # world up is image up (camera y points down)


def test_orbit_camera_up_is_a_rigid_motion_that_keeps_the_pivot():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 16, 3, generator=g, dtype=torch.float64) * 0.4 + torch.tensor([0, 0, 5.0])
    angle = torch.rand(6, generator=g, dtype=torch.float64) * 1.2 - 0.3
    y = camera.orbit_camera_up(x, x[:, 0], angle)
    torch.testing.assert_close(y[:, 0], x[:, 0])  # the pivot stays put
    torch.testing.assert_close(torch.cdist(y, y), torch.cdist(x, x))  # distances kept
    torch.testing.assert_close(y[..., 0], x[..., 0])  # a rotation about the camera's x axis
    torch.testing.assert_close(camera.orbit_camera_up(y, x[:, 0], -angle), x)  # inverse
    torch.testing.assert_close(camera.orbit_camera_up(x, x[:, 0], torch.zeros(6).double()), x)


def test_raising_the_camera_by_an_angle_raises_the_implied_elevation_by_it():
    from poseaug_pl.geometry.plausibility import camera_elevation_deg

    pose = torch.zeros(1, 16, 3)
    pose[0, :, 2] = 4.0
    pose[0, 8, 1] = -0.5  # thorax straight above the pelvis: a level camera (elevation 0)
    for deg in (10.0, 30.0, -20.0):
        raised = camera.orbit_camera_up(pose, pose[:, 0], torch.tensor([math.radians(deg)]))
        assert camera_elevation_deg(raised).item() == pytest.approx(deg, abs=1e-4)
        assert raised[0, 8, 2] < 4.0 if deg > 0 else raised[0, 8, 2] > 4.0  # thorax nearer


def test_fit_pinhole_recovers_each_rows_intrinsics():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(50, 16, 3, generator=g) * 0.5 + torch.tensor([0.2, -0.1, 4.5])
    intr = torch.zeros(50, 9)  # a different camera for every row
    intr[:, :2] = 2.0 + 0.5 * torch.rand(50, 1, generator=g)
    intr[:, 2:4] = 0.1 * torch.randn(50, 2, generator=g)
    fitted = camera.fit_pinhole(x, camera.project_to_2d(x, intr))
    assert fitted.shape == (50, 9)
    torch.testing.assert_close(fitted, intr, atol=1e-4, rtol=1e-4)
    one = camera.fit_pinhole(
        x.reshape(1, -1, 3), camera.project_to_2d(x, intr[:1]).reshape(1, -1, 2)
    )
    torch.testing.assert_close(one[0], intr[0], atol=1e-4, rtol=1e-4)  # one group of all points


def test_raise_randomly_turns_each_pose_about_its_root_within_the_range():
    pose = torch.zeros(200, 16, 3)
    pose[..., 2] = 4.0
    pose[:, 8, 1] = -0.5  # thorax above the pelvis, level camera
    a = camera.raise_randomly(pose, 10.0, 30.0, torch.Generator().manual_seed(1))
    b = camera.raise_randomly(pose, 10.0, 30.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)  # a seeded generator: reproducible
    torch.testing.assert_close(a[:, 0], pose[:, 0])  # roots stay
    from poseaug_pl.geometry.plausibility import camera_elevation_deg

    e = camera_elevation_deg(a)
    assert e.min() >= 10 - 1e-3 and e.max() <= 30 + 1e-3 and e.max() - e.min() > 15
