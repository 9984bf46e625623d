"""Specification of scripts/augmentation_views.py: from how high up augmentations look at people."""

import math
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from helpers import load_script
from poseaug_pl.geometry import camera

SCRIPT = REPO / "scripts" / "augmentation_views.py"


def _script():
    return load_script("augmentation_views")


def test_elevation_row_of_level_and_raised_views():
    pose = torch.zeros(10, 16, 3)
    pose[..., 2] = 4.0
    pose[:, 8, 1] = -0.5  # thorax above the pelvis: seen from a level camera
    row = _script().elevation_row("level", pose)
    assert row["elev p50"] == pytest.approx(0.0, abs=1e-3)
    assert row["elev >= 30 (%)"] == 0.0
    angle = torch.tensor([math.radians(40)] * 5 + [math.radians(10)] * 5)
    raised = _script().elevation_row("raised", camera.orbit_camera_up(pose, pose[:, 0], angle))
    assert raised["elev >= 30 (%)"] == 50.0
    assert raised["elev p10"] == pytest.approx(10.0, abs=1e-3)
    assert raised["elev p90"] == pytest.approx(40.0, abs=1e-3)
    assert raised["spread p50"] == "-"
    spread = _script().elevation_row("x", pose, torch.full((10,), math.radians(30)))["spread p50"]
    assert spread == pytest.approx(30.0)


@pytest.mark.realdata
def test_augmentation_views_runs_on_real_data(h36m, h36m_cache, tiny_ckpt, monkeypatch):
    monkeypatch.setenv("POSEAUG_CACHE", str(h36m_cache))
    r = subprocess.run([sys.executable, str(SCRIPT), str(h36m), str(tiny_ckpt), "--num", "256"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["poses", "elev"] and len(lines) == 4  # head, rule, 2 rows
    assert lines[2].startswith("real") and lines[3].startswith(str(tiny_ckpt))
