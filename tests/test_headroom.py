"""Specification of scripts/headroom.py: how much of a cross-set error the limbs leave room for."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO
from helpers import load_script

SCRIPT = REPO / "scripts" / "headroom.py"


def _script():
    return load_script("headroom")


def _pair(errors_mm, n=10):
    """Predictions ``errors_mm[j]`` mm off the target along x at every joint, (n, 16, 3) twice."""
    target = torch.randn(n, 16, 3, dtype=torch.float64) * 100
    shift = torch.zeros(16, 3, dtype=torch.float64)
    shift[:, 0] = torch.as_tensor(errors_mm, dtype=torch.float64)
    return target + shift, target


def test_limb_joints_are_the_knees_feet_elbows_and_wrists():
    hr = _script()
    from poseaug_pl.geometry import skeleton as sk

    names = {sk.JOINT_NAMES[j] for j in hr.LIMB_JOINTS}
    assert names == {"r_knee", "r_foot", "l_knee", "l_foot", "l_elbow", "l_wrist", "r_elbow",
                     "r_wrist"}  # fmt: skip


def test_headroom_scales_limb_errors_down_to_the_in_domain_level_and_never_up():
    hr = _script()
    limbs = list(hr.LIMB_JOINTS)
    away = np.full(16, 80.0)
    away[0] = 0.0  # the root
    home = np.full(16, 40.0)
    home[0] = 0.0
    home[limbs[0]] = 120.0  # worse at home than away: the cross error is kept
    result = hr.headroom(_pair(away), _pair(home))
    assert result["as predicted"] == pytest.approx(80.0 * 15 / 16)
    # 7 limbs down to 40; the 8th limb and the 7 other joints stay at 80; the root at 0
    assert result["in-domain limbs"] == pytest.approx((7 * 40.0 + 8 * 80.0) / 16)
    assert result["exact limbs"] == pytest.approx(80.0 * 7 / 16)  # the 7 non-limb, non-root


def test_cli_prints_both_tables(tmp_path):
    for name, err in (("cross", 80.0), ("home", 40.0)):
        pred, target = _pair(np.full(16, err))
        np.savez(tmp_path / f"{name}.npz", pred=pred.float().numpy(), target=target.float().numpy())
    files = [str(tmp_path / "cross.npz"), str(tmp_path / "home.npz")]
    r = subprocess.run([sys.executable, str(SCRIPT), *files], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "r_wrist" in r.stdout and "in-domain limbs" in r.stdout
    assert "0.750" in r.stdout  # 8 limb joints at 40 instead of 80: (8*40 + 8*80) / (16*80)


def test_a_file_without_predictions_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", pose3d=np.zeros((2, 16, 3)))
    with pytest.raises(ValueError, match="not a predictions file"):
        _script().load_predictions(str(tmp_path / "x.npz"))
