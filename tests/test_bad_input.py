"""Every kind of bad input gives one clear line naming the file, and no half-written cache."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from poseaug_pl.data import DataError, load_cross_set, load_h36m
from poseaug_pl.data import h36m as h36m_module

RNG = np.random.default_rng(0)


def write_h36m(root, subjects=("S1", "S9"), joints=32, frames=12, bad=None, with_2d=False):
    """A tiny fake Human3.6M folder: random world-frame poses standing near the origin."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pos = {}
    for s in subjects:
        pos[s] = {}
        for a in ("Walking 1", "Eating"):
            x = rng.normal(0, 0.3, (frames, joints, 3)).astype(np.float32)
            x[..., 2] += 1.0
            pos[s][a] = x
    if bad == "nan":
        pos[subjects[0]]["Eating"][3, 2, 1] = np.nan
    np.savez(root / "data_3d_h36m.npz", positions_3d=pos)
    if with_2d:
        p2 = {
            s: {
                a: [rng.uniform(0, 1000, (frames - 2, 16, 2)).astype(np.float32)] * 4
                for a in pos[s]
            }
            for s in subjects
        }
        np.savez(root / "data_2d_h36m_det.npz", positions_2d=p2, metadata={"num_joints": 16})
    return root


def write_cross(path, n=10, joints=16, **override):
    arrays = {
        "pose3d": RNG.random((n, joints, 3)).astype(np.float32) + [0, 0, 4],
        "pose2d": RNG.random((n, joints, 2)).astype(np.float32),
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_fake_folder_loads(tmp_path):
    data = load_h36m(write_h36m(tmp_path / "h"), subjects=["S1", "S9"], cache_dir=False)
    assert len(data) == 2 * 2 * 4 * 12


def test_missing_3d_file(tmp_path):
    with pytest.raises(DataError, match=r"data_3d_h36m\.npz: file not found.*data\.root"):
        load_h36m(tmp_path, cache_dir=False)


def test_missing_2d_file(tmp_path):
    root = write_h36m(tmp_path / "h")
    with pytest.raises(DataError, match=r"data_2d_h36m_cpn\.npz: file not found"):
        load_h36m(root, keypoints="cpn", subjects=["S1"], cache_dir=False)


def test_2d_trimmed_to_shorter_length(tmp_path):
    root = write_h36m(tmp_path / "h", with_2d=True)
    data = load_h36m(root, keypoints="det", subjects=["S1"], cache_dir=False)
    assert len(data) == 2 * 4 * 10  # 2D has 2 frames fewer than 3D


def test_missing_key(tmp_path):
    np.savez(tmp_path / "data_3d_h36m.npz", positions=np.zeros(3))
    with pytest.raises(DataError, match=r"data_3d_h36m\.npz: missing key\(s\) \['positions_3d'\]"):
        load_h36m(tmp_path, cache_dir=False)


def test_wrong_joint_count(tmp_path):
    root = write_h36m(tmp_path / "h", joints=15)
    with pytest.raises(DataError, match=r"positions_3d\[S1\]\[Eating\]' has 15 joints"):
        load_h36m(root, cache_dir=False)


def test_nan_values(tmp_path):
    root = write_h36m(tmp_path / "h", bad="nan")
    with pytest.raises(
        DataError,
        match=r"'positions_3d\[S1\]\[Eating\]' contains NaN or inf values in 1 of 12 rows",
    ):  # noqa: E501
        load_h36m(root, cache_dir=False)


def test_unknown_subject(tmp_path):
    root = write_h36m(tmp_path / "h")
    with pytest.raises(
        DataError, match=r"unknown subject\(s\) \['S2'\]; the file has \['S1', 'S9'\]"
    ):
        load_h36m(root, subjects=["S2"], cache_dir=False)


def test_empty_selection_after_filtering(tmp_path):
    root = write_h36m(tmp_path / "h")
    with pytest.raises(DataError, match="no frames left after filtering"):
        load_h36m(root, subjects=["S1"], actions=["Smoking"], cache_dir=False)


def test_not_an_npz(tmp_path):
    (tmp_path / "data_3d_h36m.npz").write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_h36m(tmp_path, cache_dir=False)


def test_interrupted_cache_write_leaves_nothing_behind(tmp_path, monkeypatch):
    root, cache = write_h36m(tmp_path / "h"), tmp_path / "cache"

    def broken_save(obj, f):
        f.write(b"partial")
        raise RuntimeError("disk went away")

    monkeypatch.setattr(h36m_module.torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk went away"):
        load_h36m(root, subjects=["S1"], cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_unwritable_cache_still_loads(tmp_path, monkeypatch):
    root, cache = write_h36m(tmp_path / "h"), tmp_path / "cache"

    def full_disk(obj, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h36m_module.torch, "save", full_disk)
    assert len(load_h36m(root, subjects=["S1"], cache_dir=cache)) == 2 * 4 * 12
    assert list(cache.iterdir()) == []


def test_a_full_disk_under_torch_save_still_loads_without_the_cache(tmp_path, monkeypatch):
    """torch.save reports a full disk as a RuntimeError raised while handling the OSError."""
    root, cache = write_h36m(tmp_path / "h"), tmp_path / "cache"

    def full_disk(obj, f):
        f.write(b"partial")
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("PytorchStreamWriter failed writing file data") from None

    monkeypatch.setattr(h36m_module.torch, "save", full_disk)
    assert len(load_h36m(root, subjects=["S1"], cache_dir=cache)) == 2 * 4 * 12
    assert list(cache.iterdir()) == []


def test_corrupt_cache_is_rebuilt(tmp_path):
    root, cache = write_h36m(tmp_path / "h"), tmp_path / "cache"
    first = load_h36m(root, subjects=["S1"], cache_dir=cache)
    (f,) = cache.iterdir()
    f.write_bytes(b"garbage")
    again = load_h36m(root, subjects=["S1"], cache_dir=cache)
    assert torch.equal(first.pose3d, again.pose3d)


# --- cross-dataset sets ---------------------------------------------------------------------


def test_cross_set_loads_and_accepts_17_joints(tmp_path):
    s = load_cross_set(write_cross(tmp_path / "mpi_inf_3dhp.npz"))
    assert s.name == "mpi_inf_3dhp" and len(s) == 10 and s.cam is None
    s17 = load_cross_set(write_cross(tmp_path / "c17.npz", joints=17), name="x")
    assert s17.pose3d.shape == (10, 16, 3) and s17.name == "x"


@pytest.mark.parametrize(
    "override,message",
    [
        ({"pose2d": None}, r"missing key\(s\) \['pose2d'\]"),
        ({"pose3d": np.zeros((10, 15, 3), np.float32)}, "'pose3d' has 15 joints"),
        ({"pose3d": np.full((10, 16, 3), np.inf, np.float32)}, "'pose3d' contains NaN or inf"),
        ({"pose2d": np.zeros((9, 16, 2), np.float32)}, "'pose3d' has 10 rows but 'pose2d' has 9"),
        (
            {
                "pose3d": np.zeros((0, 16, 3), np.float32),
                "pose2d": np.zeros((0, 16, 2), np.float32),
            },
            "the set is empty",
        ),  # noqa: E501
    ],
)
def test_cross_set_errors(tmp_path, override, message):
    path = write_cross(tmp_path / "bad.npz", **override)
    with pytest.raises(DataError, match=message) as err:
        load_cross_set(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_cross_set_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.npz: file not found"):
        load_cross_set(tmp_path / "nope.npz")


def test_cli_reports_bad_data_in_one_line_with_exit_2(tmp_path):
    root = write_h36m(tmp_path / "h", joints=15)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "poseaug_pl.prepare_data",
            "data=h36m",
            f"data.root={root}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "has 15 joints" in lines[0] and str(root) in lines[0]


def test_a_cross_set_whose_pose3d_is_a_pickled_dict_is_one_line(tmp_path):
    """A 0-d object array of plain data unpickles safely; it is still no pose array."""
    path = tmp_path / "dict.npz"
    np.savez(path, pose3d=np.array({"a": 1}, dtype=object), pose2d=np.zeros((3, 16, 2)))
    with pytest.raises(DataError, match=r"dict\.npz: 'pose3d' is not a numeric array"):
        load_cross_set(path)
