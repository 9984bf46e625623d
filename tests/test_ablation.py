"""Specification of the ablation summary (`python -m poseaug_pl.ablation OUT`)."""

import json

import pytest

from helpers import cli


def _write(out, seed, run, mpjpe):
    d = out / f"seed{seed}" / run
    d.mkdir(parents=True)
    sets = ("h36m", "humaneva_dev")
    m = {s: {"mpjpe": mpjpe + i, "pa_mpjpe": mpjpe / 2, "n_mpjpe": 0.0, "pck": 90.0,
             "auc": 50.0, "frames": 10} for i, s in enumerate(sets)}  # fmt: skip
    (d / "metrics.json").write_text(json.dumps(m))


def test_summary_holds_seed_means_and_stds_per_run_and_set(tmp_path):
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for run, base in (("baseline", 60), ("control", 58), ("variant_a", 57), ("poseaug", 55)):
            _write(tmp_path, seed, run, base + shift)
    r = cli("ablation", str(tmp_path))
    assert r.returncode == 0, r.stderr
    mean = json.loads((tmp_path / "summary.json").read_text())
    std = json.loads((tmp_path / "summary_std.json").read_text())
    assert set(mean) == {"baseline", "control", "variant_a", "poseaug"}
    assert set(mean["poseaug"]) == {"h36m", "humaneva_dev"}
    assert set(mean["poseaug"]["h36m"]) == {"mpjpe", "pa_mpjpe", "pck", "auc"}
    assert mean["poseaug"]["humaneva_dev"]["mpjpe"] == pytest.approx(57.0)
    assert std["poseaug"]["h36m"]["mpjpe"] == pytest.approx(1.0)
    assert "0.949x" in r.stdout  # poseaug / control on h36m: 56 / 59


def test_summary_without_runs_is_one_error_line(tmp_path):
    r = cli("ablation", str(tmp_path))
    assert r.returncode != 0 and r.stderr.strip().startswith("error:")


def test_a_set_missing_in_some_seeds_is_left_out_with_a_warning(tmp_path):
    for seed in (0, 1):
        _write(tmp_path, seed, "control", 58)
    path = tmp_path / "seed1" / "control" / "metrics.json"
    m = json.loads(path.read_text())
    m["h36m_raised"] = dict(m["h36m"])  # only the newer seed has the raised copy
    path.write_text(json.dumps(m))
    r = cli("ablation", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "h36m_raised" not in json.loads((tmp_path / "summary.json").read_text())["control"]
    assert "warning: control: h36m_raised left out (in 1 of 2 seeds)" in r.stderr


def test_mupots_official_pck_is_summarised_and_printed_where_a_set_has_it(tmp_path):
    for seed in (0, 1):
        for run, base in (("control", 58), ("poseaug", 50)):
            _write(tmp_path, seed, run, base)
            path = tmp_path / f"seed{seed}" / run / "metrics.json"
            m = json.loads(path.read_text())
            m["mupots_dev"] = {**m["h36m"], "pck_14": 70.0 + seed, "auc_14": 35.0,
                               "pck_seq_mean": 68.0 + 2 * seed + (run == "poseaug"),
                               "auc_seq_mean": 34.0}  # fmt: skip
            path.write_text(json.dumps(m))
    r = cli("ablation", str(tmp_path))
    assert r.returncode == 0, r.stderr
    mean = json.loads((tmp_path / "summary.json").read_text())
    assert mean["poseaug"]["mupots_dev"]["pck_seq_mean"] == pytest.approx(70.0)
    assert "pck_seq_mean" not in mean["poseaug"]["h36m"]
    assert "MuPoTS-3D 3DPCK" in r.stdout and "70.0 +- 1.0 (1.014x)" in r.stdout
