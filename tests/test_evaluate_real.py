"""`evaluate` on a real Human3.6M checkpoint: it keeps the run's data, adds what the command line
adds, and reports the papers' per-action table (skipped without the real data)."""

import json

import numpy as np
import pytest

from helpers import cli
from poseaug_pl.data import generate

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # a 20-epoch real training (h36m_run)


def test_per_action_table_sums_back_to_the_overall_mpjpe(h36m_run):
    h36m = h36m_run["metrics"]["h36m"]
    per_action = h36m["per_action"]
    assert len(per_action) == 15  # actions merged over their numbered takes
    frames = sum(a["frames"] for a in per_action.values())
    assert frames == h36m["frames"]
    for key in ("mpjpe", "pa_mpjpe"):
        weighted = sum(a[key] * a["frames"] for a in per_action.values()) / frames
        assert weighted == pytest.approx(h36m[key], abs=0.01)
    out = h36m_run["stdout"]
    assert "P1 (MPJPE)" in out and "P2 (PA-MPJPE)" in out and "WalkT." in out and "Avg" in out
    print(out[out.index("h36m ") :])


def test_predictions_carry_subject_action_camera_and_frame(h36m_run):
    pred = np.load(h36m_run["evaluate_dir"] / "predictions" / "h36m.npz")
    n = len(pred["pred"])
    assert {"subject", "action", "camera", "frame", "sequence"} <= set(pred.files)
    assert set(pred["subject"]) == {"S9", "S11"} and len(set(pred["action"])) == 15
    assert set(pred["camera"]) == {0, 1, 2, 3} and (pred["frame"] % 50 == 0).all()
    assert all(len(pred[k]) == n for k in ("subject", "action", "camera", "frame"))
    err = np.linalg.norm(pred["pred"] - pred["target"], axis=-1).mean()
    assert err == pytest.approx(h36m_run["metrics"]["h36m"]["mpjpe"], abs=0.01)


def test_overrides_apply_on_top_of_the_runs_data(h36m_run, h36m, tmp_path):
    data = generate(sequences=1, frames=20, seed=5)
    np.savez(tmp_path / "extra.npz", pose3d=data.pose3d.numpy(), pose2d=data.pose2d.numpy())
    ckpt = h36m_run["ckpt"]
    for name in ("cross", "root"):
        (tmp_path / name).mkdir()
    runs = {
        "cross": ("+data.cross_sets.extra=" + str(tmp_path / "extra.npz"),),
        "root": (f"data.root={h36m}",),
    }
    for name, extra in runs.items():  # default output folder: outputs/evaluate/<experiment>/
        r = cli("evaluate", f"ckpt_path={ckpt}", *extra, cwd=tmp_path / name)
        assert r.returncode == 0, (name, r.stderr[-2000:])
        (found,) = (tmp_path / name / "outputs" / "evaluate" / "baseline_h36m").glob(
            "*/metrics.json"
        )
        metrics = json.loads(found.read_text())
        assert "h36m" in metrics and "synthetic" not in metrics, name
        assert metrics["h36m"]["mpjpe"] == pytest.approx(h36m_run["metrics"]["h36m"]["mpjpe"])
        assert ("extra" in metrics) == (name == "cross")
    r = cli("evaluate", f"ckpt_path={ckpt}", "+model.estimator.channels=64")
    assert r.returncode == 2 and "evaluate uses the checkpoint's model" in r.stderr
