"""Specification of the embedded synthetic mocap generator."""

import time

import pytest
import torch

from helpers import load_script
from poseaug_pl.data import generate
from poseaug_pl.data.synthetic import ACTIONS, BONE_TEMPLATES
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.geometry.camera import project_to_2d


@pytest.fixture(scope="module")
def h36m_domain():
    return generate(sequences=40, frames=50, seed=3)


@pytest.fixture(scope="module")
def wild_domain():
    return generate(sequences=40, frames=50, domain="wild", seed=3)


def test_shapes_and_every_action_and_subject_present(h36m_domain):
    d = h36m_domain
    assert len(d) == 40 * 4 * 50
    assert d.pose3d.dtype == torch.float32 and d.cam.shape == (len(d), 9)
    assert set(d.action.tolist()) == set(range(len(ACTIONS)))
    assert d.subjects == ("S1", "S5", "S6", "S7", "S8") and set(d.subject.tolist()) == set(range(5))


def test_deterministic_by_seed():
    a, b, c = (generate(sequences=6, frames=20, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.pose3d, b.pose3d) and torch.equal(a.pose2d, b.pose2d)
    assert not torch.equal(a.pose3d, c.pose3d)


def test_poses_have_the_template_bone_lengths(h36m_domain):
    d = h36m_domain
    templates = torch.tensor([BONE_TEMPLATES[s] for s in d.subjects])[d.subject]
    torch.testing.assert_close(sk.bone_lengths(d.pose3d), templates, atol=1e-5, rtol=0)


def test_2d_is_the_projection_of_3d_and_people_are_in_view(h36m_domain, wild_domain):
    for d in (h36m_domain, wild_domain):
        torch.testing.assert_close(project_to_2d(d.pose3d, d.cam), d.pose2d)
        assert d.pose3d[..., 2].min() > 1.0  # in front of the camera
        assert (d.pose2d.abs() <= 1).all(-1).all(-1).float().mean() > 0.95


def test_people_stand_upright_on_the_floor(h36m_domain):
    """Cameras are near level, so the head is above the hips in almost every view."""
    d = h36m_domain
    head_above_hip = d.pose3d[:, 9, 1] < d.pose3d[:, 0, 1]  # camera y points down
    assert head_above_hip.float().mean() > 0.97
    # knees never bend backwards: the knee is in front of the thigh-shin line's hinge side
    thigh = d.pose3d[:, 2] - d.pose3d[:, 1]
    shin = d.pose3d[:, 3] - d.pose3d[:, 2]
    cos = torch.nn.functional.cosine_similarity(thigh, shin, dim=-1)
    assert cos.min() > -0.9  # never folded beyond ~155 degrees


def test_motion_is_smooth(h36m_domain):
    d = h36m_domain
    seq = d.pose3d.view(40, 4, 50, 16, 3)  # sequence, camera, frame
    step = (seq[:, :, 1:] - seq[:, :, :-1]).norm(dim=-1)  # metres per frame at 25 fps
    assert step.quantile(0.99) < 0.12  # joints move < 3 m/s nearly always


def test_wild_domain_is_shifted(h36m_domain, wild_domain):
    lengths = sk.bone_lengths(wild_domain.pose3d)
    left, right = lengths[:, list(sk.LEFT_BONES)], lengths[:, list(sk.RIGHT_BONES)]
    torch.testing.assert_close(left, right)  # proportions change symmetrically
    templates = torch.tensor(list(BONE_TEMPLATES.values()))
    assert ((lengths[:, None] - templates[None]).abs().amax(-1) > 0.01).all()  # new bodies
    assert wild_domain.cam[:, 4:].abs().max() == 0  # no lens distortion
    assert wild_domain.cam[:, 0].std() > 0.2  # many focal lengths
    assert h36m_domain.cam[:, 0].unique().numel() <= 20  # vs. 5 x 4 calibrated cameras


def test_generator_speed_on_one_core():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generate(sequences=4, frames=10)
        t0 = time.perf_counter()
        d = generate(sequences=100, frames=250)
        rate = len(d) / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    print(f"{rate:,.0f} rendered poses/s ({rate / 4:,.0f} motion frames/s)")
    assert rate > 100_000


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown bone template"):
        generate(sequences=2, frames=2, subjects=["S2"])
    with pytest.raises(ValueError, match="domain"):
        generate(sequences=2, frames=2, domain="mars")


@pytest.mark.realdata
def test_embedded_templates_equal_the_real_subjects(h36m):
    real = load_script("bone_templates").bone_templates(h36m)
    for s, lengths in BONE_TEMPLATES.items():
        assert lengths == pytest.approx(real[s], abs=6e-5)
