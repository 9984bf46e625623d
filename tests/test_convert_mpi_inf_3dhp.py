"""``prepare_data dataset=mpi_inf_3dhp``: the official test set (written here as fixtures in its
structure: ``TS<k>/annot_data.mat`` as HDF5 with the layout h5py reads from MATLAB v7.3; the
real set is not in this environment) to PoseAug's cross-set layout."""

import numpy as np
import pytest

from helpers import cli
from poseaug_pl.data.cross import load_cross_set

h5py = pytest.importorskip("h5py")

#: The fixture's frames per sequence (every third frame invalid).
FRAMES = {"TS1": 6, "TS2": 4, "TS3": 5, "TS4": 3, "TS5": 6, "TS6": 3}
SIZES = {"TS1": 2048, "TS2": 2048, "TS3": 2048, "TS4": 2048, "TS5": 1920, "TS6": 1920}


def write_fixture(root, seed=0) -> dict:
    """Six ``annot_data.mat`` files: (n, 1, 17, 3) mm 3D (univ_annot3 and annot3), (n, 1, 17, 2)
    px 2D, (n, 1) valid flags and activities; returns them per sequence."""
    rng = np.random.default_rng(seed)
    truth = {}
    for name, n in FRAMES.items():
        univ = rng.normal(0, 300, (n, 1, 17, 3)) + [0, 0, 4000]
        data = {"univ_annot3": univ, "annot3": univ * 1.1,
                "annot2": rng.uniform(0, SIZES[name], (n, 1, 17, 2)),
                "valid_frame": (np.arange(n) % 3 != 2).astype(np.float64)[:, None],
                "activity_annotation": rng.integers(1, 8, (n, 1)).astype(np.float64)}  # fmt: skip
        (root / name).mkdir()
        with h5py.File(root / name / "annot_data.mat", "w") as f:
            for k, v in data.items():
                f[k] = v
        truth[name] = data
    return truth


def expected(truth, annotation="univ_annot3"):
    order = [14, 8, 9, 10, 11, 12, 13, 15, 1, 0, 5, 6, 7, 2, 3, 4]
    p3, p2, scenes = [], [], []
    for name, d in truth.items():
        keep = d["valid_frame"][:, 0] == 1
        w = SIZES[name]
        h = 2048 if w == 2048 else 1080
        p3.append(d[annotation][keep, 0][:, order] / 1000)
        p2.append(d["annot2"][keep, 0][:, order] / w * 2 - [1, h / w])
        scene = {"TS1": "GS", "TS2": "GS", "TS3": "noGS", "TS4": "noGS"}.get(name, "outdoor")
        scenes += [scene] * int(keep.sum())
    return np.concatenate(p3), np.concatenate(p2), scenes


@pytest.mark.parametrize("annotation", [None, "annot3"])
def test_the_converter_keeps_every_valid_frame_in_papers_joint_order(tmp_path, annotation):
    truth = write_fixture(tmp_path)
    out = tmp_path / "3dhp.npz"
    extra = [f"annotation={annotation}"] if annotation else []
    r = cli("prepare_data", "dataset=mpi_inf_3dhp", f"root={tmp_path}", f"output={out}",
            *extra, f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.load(out)
    want3, want2, scenes = expected(truth, annotation or "univ_annot3")
    np.testing.assert_allclose(got["pose3d"], want3, atol=1e-6)
    np.testing.assert_allclose(got["pose2d"], want2, atol=1e-6)
    assert list(got["action"]) == scenes  # the scene: GS, noGS, outdoor
    assert len(got["pose3d"]) == sum(n - n // 3 for n in FRAMES.values())
    assert len(load_cross_set(out)) == len(want3)


def test_a_missing_sequence_or_key_is_one_line(tmp_path):
    r = cli("prepare_data", "dataset=mpi_inf_3dhp", f"root={tmp_path}",
            f"output={tmp_path}/x.npz", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 2 and "no TS1/annot_data.mat" in r.stderr
    write_fixture(tmp_path)
    with h5py.File(tmp_path / "TS3" / "annot_data.mat", "a") as f:
        del f["valid_frame"]
    r = cli("prepare_data", "dataset=mpi_inf_3dhp", f"root={tmp_path}",
            f"output={tmp_path}/x.npz", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 2 and "TS3/annot_data.mat: no valid_frame" in r.stderr
    assert not (tmp_path / "x.npz").exists()


def write_spin_file(path, truth, payload=None):
    """SPIN's ``mpi_inf_3dhp_valid.npz`` made from the official files as SPIN's preprocessing
    documents it (written out here, independently of the converter): each valid frame's 17
    joints reordered, ``univ_annot3`` in metres minus the pelvis, placed with ``annot2`` in
    SPIN's 24-joint slots with visibility 1; image names ``.../TS<k>/imageSequence/img_%06d``."""
    joints17 = [14, 11, 12, 13, 8, 9, 10, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]
    slots = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]
    names, parts, ss = [], [], []
    for name, d in truth.items():
        for i in np.flatnonzero(d["valid_frame"][:, 0] == 1):
            s17 = d["univ_annot3"][i, 0, joints17] / 1000
            part, s = np.zeros((24, 3)), np.zeros((24, 4))
            part[slots] = np.hstack([d["annot2"][i, 0, joints17], np.ones((17, 1))])
            s[slots] = np.hstack([s17 - s17[0], np.ones((17, 1))])
            names.append(f"mpi_inf_3dhp_test_set/{name}/imageSequence/img_{i + 1:06d}.jpg")
            parts.append(part)
            ss.append(s)
    imgname = np.array(names) if payload is None else np.array([payload] * len(names), object)
    np.savez(path, imgname=imgname, center=np.zeros((len(names), 2)), scale=np.ones(len(names)),
             part=np.array(parts), S=np.array(ss))  # fmt: skip


def test_the_spin_route_gives_the_official_routes_frames_and_poses(tmp_path):
    """The PoseAug authors' route (SPIN's processed file) and the official one agree: the same
    frames in the same order, with the same scenes and poses (SPIN's 3D is root-centred)."""
    truth = write_fixture(tmp_path)
    (tmp_path / "dataset_extras").mkdir()
    write_spin_file(tmp_path / "dataset_extras" / "mpi_inf_3dhp_valid.npz", truth)
    got = {}
    for dataset, root in (("mpi_inf_3dhp", tmp_path), ("mpi_inf_3dhp_spin",
                                                       tmp_path / "dataset_extras")):  # fmt: skip
        out = tmp_path / f"{dataset}.npz"
        r = cli("prepare_data", f"dataset={dataset}", f"root={root}", f"output={out}",
                f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        got[dataset] = dict(np.load(out))
    official, spin = got["mpi_inf_3dhp"], got["mpi_inf_3dhp_spin"]
    for key in ("subject", "action", "frame", "pose2d", "dataset"):
        np.testing.assert_array_equal(spin[key], official[key])
    np.testing.assert_allclose(spin["pose3d"], official["pose3d"] - official["pose3d"][:, :1],
                               atol=1e-6)  # fmt: skip
    want3, _, _ = expected(truth)
    np.testing.assert_allclose(spin["pose3d"], want3 - want3[:, :1], atol=1e-6)
    assert len(load_cross_set(tmp_path / "mpi_inf_3dhp_spin.npz")) == len(want3)


def test_the_spin_route_refuses_foreign_files_in_one_line(tmp_path):
    from test_trust_npz import MakesFolder, assert_cli_refused

    truth = write_fixture(tmp_path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, imgname=np.array(["elsewhere/img_000001.jpg"]), part=np.ones((1, 24, 3)),
             S=np.ones((1, 24, 4)))  # fmt: skip
    r = cli("prepare_data", "dataset=mpi_inf_3dhp_spin", f"root={bad}", f"output={tmp_path}/x.npz",
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 2 and "is not in TS1 .. TS6 of the test set" in r.stderr
    s = np.ones((1, 24, 4))
    s[0, 3, 0] = np.nan
    np.savez(bad, imgname=np.array(["TS1/imageSequence/img_000001.jpg"]), part=np.ones((1, 24, 3)),
             S=s)  # fmt: skip
    r = cli("prepare_data", "dataset=mpi_inf_3dhp_spin", f"root={bad}", f"output={tmp_path}/x.npz",
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 2 and "NaN or inf in 'part' or 'S' in 1 of 1 rows" in r.stderr
    marker = tmp_path / "PAYLOAD_RAN"
    write_spin_file(tmp_path / "mpi_inf_3dhp_valid.npz", truth, payload=MakesFolder(marker))
    r = cli("prepare_data", "dataset=mpi_inf_3dhp_spin", f"root={tmp_path}",
            f"output={tmp_path}/x.npz", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert_cli_refused(r, tmp_path / "mpi_inf_3dhp_valid.npz", marker)
    assert not (tmp_path / "x.npz").exists()


def test_without_h5py_the_error_names_the_extra(tmp_path, monkeypatch):
    import sys

    from poseaug_pl.data import DataError
    from poseaug_pl.data.mpi_inf_3dhp import convert_mpi_inf_3dhp

    write_fixture(tmp_path)
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if not installed
    with pytest.raises(DataError, match=r"needs h5py: pip install 'poseaug-pl\[datasets\]'"):
        convert_mpi_inf_3dhp(tmp_path)
