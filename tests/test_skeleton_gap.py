"""Specification of scripts/skeleton_gap.py: how far a cross set's skeleton is from Human3.6M's."""

import subprocess
import sys

import pytest
import torch

from conftest import REPO
from helpers import load_script
from poseaug_pl.geometry import skeleton as sk

SCRIPT = REPO / "scripts" / "skeleton_gap.py"
HUMANEVA = REPO.parent / "shared" / "data" / "humaneva" / "humaneva_train_16j.npz"


def _script():
    return load_script("skeleton_gap")


def _poses(n=64, seed=0):
    """Random bone directions, one skeleton (every pose has the same bone lengths)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.rand(15, generator=g) * 0.3 + 0.1
    poses = sk.root_relative(torch.randn(n, 16, 3, generator=g))
    return sk.set_bone_lengths(poses, lengths.expand(n, -1))


def test_the_same_skeleton_has_no_gap_and_a_scaled_one_has_its_scale():
    gap = _script().skeleton_gap
    ref = _poses()
    same = gap(ref, ref.flip(0)[:32])  # the same skeleton, other poses
    assert same["floor"] == pytest.approx(0.0, abs=1e-3)
    assert torch.allclose(same["lengths"][0], same["lengths"][1], rtol=1e-5)
    big = gap(ref, 1.5 * ref)
    assert torch.allclose(big["lengths"][1] / big["lengths"][0], torch.full((15,), 1.5))
    expected = (1.5 * ref - ref).norm(dim=-1).mean() * 1000  # rebuilt at the reference's size
    assert big["floor"] == pytest.approx(float(expected), rel=1e-4)


@pytest.mark.realdata
def test_humaneva_skeleton_gap_on_real_data(h36m, h36m_cache, monkeypatch):
    if not HUMANEVA.is_file():
        pytest.skip(f"HumanEva-I development set not found at {HUMANEVA}")
    monkeypatch.setenv("POSEAUG_CACHE", str(h36m_cache))
    r = subprocess.run([sys.executable, str(SCRIPT), str(h36m), str(HUMANEVA)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "r_hip" in r.stdout and "0.51" in r.stdout  # HumanEva's hips: half Human3.6M's
    assert "floor:" in r.stdout


def test_definition_factors_read_back_a_redefinition():
    one = sk.root_relative(torch.randn(1, 16, 3, generator=torch.Generator().manual_seed(3)))
    one[:, 4] = -one[:, 1]  # hips symmetric about the pelvis, as Human3.6M defines them
    ref = one.expand(8, -1, -1)
    cross = sk.redefine_joints(ref, 0.4, 0.03, 1.8, 1.2, hip_forward=0.05)
    factors = _script().definition_factors(ref, cross)
    expected = {"hip_width": 0.4, "hip_drop": 0.03, "hip_forward": 0.05, "head": 1.8,
                "clavicle": 1.2}  # fmt: skip
    assert factors == pytest.approx(expected, abs=1e-5)


def test_as_reference_places_the_joints_as_the_reference_does_and_keeps_the_limbs():
    g = torch.Generator().manual_seed(4)
    ref = sk.root_relative(torch.randn(64, 16, 3, generator=g, dtype=torch.float64))
    ref[:, 4] = -ref[:, 1]  # hips symmetric about the pelvis, as Human3.6M defines them
    cross = sk.redefine_joints(ref, 0.4, 0.03, 1.8, 1.2, hip_forward=0.05)
    moved = _script().as_reference(cross, ref)
    mean = {k: v.mean() for k, v in sk.joint_placement(ref).items()}
    placed = sk.joint_placement(moved["all"])
    for key in ("hip_width", "head", "clavicle", "hip_drop", "hip_forward"):
        assert torch.allclose(placed[key], mean[key].expand(64), atol=1e-9), key
    limbs = list(sk.LIMB_JOINTS)
    for variant in moved.values():
        assert torch.equal(variant[:, limbs], cross[:, limbs])
    assert torch.equal(moved["hips"][:, sk.HEAD], cross[:, sk.HEAD])
    assert torch.equal(moved["head and shoulders"][:, list(sk.HIPS)], cross[:, list(sk.HIPS)])
