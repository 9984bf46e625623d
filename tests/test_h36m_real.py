"""The Human3.6M reader on the real data (skipped when it is absent)."""

import time

import pytest
import torch

from poseaug_pl.data import load_h36m
from poseaug_pl.data.synthetic import BONE_TEMPLATES
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.geometry.camera import H36M_SUBJECTS, h36m_cameras, project_to_2d

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def all_subjects(h36m, h36m_cache):
    t0 = time.perf_counter()
    data = load_h36m(h36m, subjects=H36M_SUBJECTS, cache_dir=h36m_cache)
    return data, time.perf_counter() - t0


def test_loads_all_seven_subjects_in_camera_frame_metres(all_subjects):
    data, _ = all_subjects
    assert data.subjects == H36M_SUBJECTS
    assert torch.unique(data.subject).tolist() == list(range(7))
    assert data.pose3d.shape[1:] == (16, 3) and data.pose2d.shape[1:] == (16, 2)
    assert len(data) == 4 * 248_999  # every frame of every camera (README of the data)
    depth = data.pose3d[:, 0, 2]
    assert 4.0 < depth.median().item() < 6.0 and depth.min() > 2.0 and depth.max() < 8.0
    # metres: bone lengths equal the subjects' templates (computed once from this file)
    for s in ("S1", "S9"):
        rows = data.subject == data.subjects.index(s)
        lengths = sk.bone_lengths(data.pose3d[rows][::97]).mean(0)
        torch.testing.assert_close(lengths, torch.tensor(BONE_TEMPLATES[s]), atol=1e-3, rtol=0)


def test_ground_truth_2d_is_the_projection_through_each_rows_camera(all_subjects):
    data, _ = all_subjects
    idx = torch.arange(0, len(data), 1009)
    torch.testing.assert_close(project_to_2d(data.pose3d[idx], data.cam[idx]), data.pose2d[idx])
    assert (data.pose2d.abs() <= 1.05).float().mean() > 0.999  # people are in the image


def test_cache_makes_the_second_load_fast_and_identical(all_subjects, h36m, h36m_cache):
    data, first = all_subjects
    assert len(list(h36m_cache.glob("*.pt"))) == 1
    assert not list(h36m_cache.glob(".*tmp"))
    t0 = time.perf_counter()
    again = load_h36m(h36m, subjects=H36M_SUBJECTS, cache_dir=h36m_cache)
    second = time.perf_counter() - t0
    assert torch.equal(again.pose3d, data.pose3d) and torch.equal(again.pose2d, data.pose2d)
    print(f"first load {first:.1f}s, cached {second:.1f}s")
    assert first < 60 and second < 5


def test_stride_and_action_filters(h36m, h36m_cache):
    every = load_h36m(h36m, subjects=["S9"], actions=["Walking"], cache_dir=h36m_cache)
    strided = load_h36m(h36m, subjects=["S9"], actions=["Walking"], stride=10, cache_dir=h36m_cache)
    assert set(every.actions[a] for a in every.action.unique().tolist()) == {"Walking"}
    assert len(every.sequence.unique()) == 2  # "Walking" and "Walking 1"
    assert abs(len(strided) - len(every) / 10) <= 8  # per sequence and camera, ceil(T / 10)
    exact = load_h36m(h36m, subjects=["S9"], actions=["Walking 1"], cache_dir=h36m_cache)
    assert len(exact.sequence.unique()) == 1


def test_detected_keypoints_match_projected_ground_truth_on_s9(h36m, h36m_cache):
    """Reader-level check of camera order and lens model: median error under 15 px."""
    gt = load_h36m(h36m, "gt", subjects=["S9"], cache_dir=h36m_cache)
    det = load_h36m(h36m, "sh_pt_mpii", subjects=["S9"], cache_dir=h36m_cache)
    assert len(gt) == len(det)
    widths = {c.res_w for c in h36m_cameras()["S9"]}
    assert widths == {1000}  # normalised units are pixels * 2 / w for every camera
    err = (gt.pose2d - det.pose2d).norm(dim=-1) * 1000 / 2
    assert err.median().item() < 15.0
