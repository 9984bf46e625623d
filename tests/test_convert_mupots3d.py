"""``prepare_data dataset=mupots3d``: MuPoTS-3D's official ``TS<k>/annot.mat`` (MATLAB v5) to a
cross set, read within a budget (`data.matfile`), and its benchmark's table in ``evaluate``.

Fixtures are written here in the release's structure with scipy; the real development half
(``../shared/data/mupots3d/`` or ``$POSEAUG_MUPOTS3D``) is used when present."""

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import cli
from poseaug_pl.data import DataError

sio = pytest.importorskip("scipy.io")

REPO = Path(__file__).resolve().parents[1]
#: PoseAug's 16 joints from MuPoTS-3D's 17 (as MPI-INF-3DHP's test joints map), written out.
ORDER = [14, 8, 9, 10, 11, 12, 13, 15, 1, 0, 5, 6, 7, 2, 3, 4]
#: The fixture's sequences: frames x people, and the pinhole each is filmed with (f, cx, cy px).
FIXTURE = {"TS1": (4, 2, (1500.0, 1020.0, 1040.0)), "TS7": (3, 3, (1150.0, 950.0, 530.0))}


def mupots_root() -> Path | None:
    for cand in (os.environ.get("POSEAUG_MUPOTS3D"), REPO.parent / "shared" / "data" / "mupots3d"):
        if cand and (Path(cand) / "MultiPersonTestSet" / "TS1" / "annot.mat").is_file():
            return Path(cand)
    return None


def write_fixture(root: Path, seed: int = 0, compress: bool = True) -> dict:
    """``TS1`` (indoor, 2048 x 2048) and ``TS7`` (outdoor, 1920 x 1080): each person's 17 joints
    in front of the camera, 2D their exact projection, the last person of every second frame
    not valid, occlusion flags at random; returns the arrays per sequence."""
    rng = np.random.default_rng(seed)
    truth = {}
    for name, (frames, people, (f, cx, cy)) in FIXTURE.items():
        table = np.empty((frames, people), object)
        occ = np.empty((frames, people), object)
        rows = {"annot3": np.zeros((frames, people, 3, 17)), "univ": np.zeros((frames, people, 3, 17)),
                "valid": np.ones((frames, people), bool), "occ": rng.random((frames, people, 17)) < 0.3}
        for i in range(frames):
            for p in range(people):
                a3 = rng.normal(0, 300, (3, 17)) + np.array([[p * 800 - 600], [0], [4000]])
                a2 = f * a3[:2] / a3[2] + np.array([[cx], [cy]])
                valid = not (i % 2 and p == people - 1)
                univ = a3 * 0.9 + 0.1 * a3[:, 14:15]  # rescaled about the pelvis
                table[i, p] = {"annot2": a2, "annot3": a3, "univ_annot3": univ,
                               "isValidFrame": np.array([[np.uint8(valid)]])}  # fmt: skip
                occ[i, p] = rows["occ"][i, p].astype(np.uint8)[None]
                rows["annot3"][i, p], rows["univ"][i, p], rows["valid"][i, p] = a3, univ, valid
        (root / name).mkdir(parents=True)
        sio.savemat(root / name / "annot.mat", {"annotations": table}, do_compression=compress)
        sio.savemat(root / name / "occlusion.mat", {"occlusion_labels": occ})
        truth[name] = rows
    return truth


def convert(tmp_path, root, *extra):
    out = tmp_path / "mupots.npz"
    r = cli("prepare_data", "dataset=mupots3d", f"root={root}", f"output={out}", *extra,
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    return r, out


@pytest.mark.parametrize("annotation", [None, "annot3"])
def test_every_valid_person_becomes_a_row_in_sequence_frame_person_order(tmp_path, annotation):
    truth = write_fixture(tmp_path / "MultiPersonTestSet")
    r, out = convert(tmp_path, tmp_path, *([f"annotation={annotation}"] if annotation else []))
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.load(out)
    want3, want2, subjects, frames, persons, occluded = [], [], [], [], [], []
    for name, t in truth.items():
        w, h = (2048, 2048) if name == "TS1" else (1920, 1080)
        _, _, (f, cx, cy) = FIXTURE[name]
        for i, p in zip(*np.nonzero(t["valid"])):  # (row-major: frame, then person)
            x3 = (t["annot3"] if annotation == "annot3" else t["univ"])[i, p].T
            px = f * t["annot3"][i, p][:2].T / t["annot3"][i, p][2:].T + [cx, cy]
            want3.append(x3[ORDER] / 1000)
            want2.append(px[ORDER] / w * 2 - [1, h / w])
            subjects.append(name), frames.append(i), persons.append(p)
            occluded.append(t["occ"][i, p][ORDER])
    np.testing.assert_allclose(got["pose3d"], np.array(want3), atol=1e-6)
    np.testing.assert_allclose(got["pose2d"], np.array(want2), atol=1e-6)
    assert list(got["subject"]) == subjects and list(got["frame"]) == frames
    assert list(got["person"]) == persons
    np.testing.assert_array_equal(got["occluded"], np.array(occluded))
    assert list(got["action"]) == ["indoor" if s == "TS1" else "outdoor" for s in subjects]
    assert str(got["dataset"]) == "mupots3d"
    # the fitted pinhole is the one that filmed the sequence
    for name, (_, _, (f, cx, cy)) in FIXTURE.items():
        w, h = (2048, 2048) if name == "TS1" else (1920, 1080)
        cam = got["cam"][got["subject"] == name][0]
        np.testing.assert_allclose(cam[:4], [f / w * 2, f / w * 2, cx / w * 2 - 1,
                                             cy / w * 2 - h / w], atol=1e-6)  # fmt: skip
    assert "3 not valid (isValidFrame 0), 18 of the 20 sequences not found" in r.stdout
    assert "18 of the 20 sequences are not under" in r.stdout + r.stderr  # (a warning)


@pytest.mark.skipif(mupots_root() is None, reason="MuPoTS-3D development files not found")
def test_the_real_development_files_convert_to_the_shared_set_row_for_row(tmp_path):
    root = mupots_root()
    r, out = convert(tmp_path, root / "MultiPersonTestSet")
    assert r.returncode == 0, r.stderr[-3000:]
    got, ref = np.load(out), np.load(root / "mupots_dev_16j.npz")
    assert len(got["pose3d"]) == len(ref["pose3d"]) == 8568
    for key in ref.files:  # pose3d, pose2d, subject, frame
        np.testing.assert_array_equal(got[key], ref[key])
    # intrinsics fitted per sequence: about 1,500 px indoors, 1,100-1,190 px outdoors
    f_px = got["cam"][:, 0] * np.where(got["action"] == "indoor", 2048, 1920) / 2
    assert ((f_px > 1450) & (f_px < 1550))[got["action"] == "indoor"].all()
    assert ((f_px > 1080) & (f_px < 1200))[got["action"] == "outdoor"].all()


def test_bad_releases_are_refused_in_one_line(tmp_path):
    r, out = convert(tmp_path, tmp_path)
    assert r.returncode == 2 and "no TS<k>/annot.mat" in r.stderr
    write_fixture(tmp_path)
    path = tmp_path / "TS7" / "annot.mat"
    table = sio.loadmat(path)["annotations"]
    table[1, 0][0, 0]["annot2"] = np.zeros((3, 17))
    sio.savemat(path, {"annotations": table})
    r, out = convert(tmp_path, tmp_path)
    assert r.returncode == 2 and "annot.mat: annotations.annot2 is float64 (3, 17)" in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("error:") == 1 and not out.exists()
    import h5py  # a MATLAB v7.3 file

    path.unlink()
    with h5py.File(path, "w") as f:
        f["annotations"] = np.zeros(3)
    r, out = convert(tmp_path, tmp_path)
    assert r.returncode == 2 and "a MATLAB v7.3 (HDF5) file, not v5" in r.stderr


def matrix_file(tmp_path, value, name="annotations") -> tuple[Path, bytearray]:
    path = tmp_path / "m.mat"
    sio.savemat(path, {name: value}, do_compression=False)
    return path, bytearray(path.read_bytes())


def test_a_small_file_cannot_make_the_reader_allocate_much_more_than_it_holds(tmp_path):
    from poseaug_pl.data.matfile import read_mat5

    # a struct array declaring 100,000 x 100,000 elements in a few hundred bytes
    path, raw = matrix_file(tmp_path, np.array([[{"a": 1.0}]], object))
    # (the top-level matrix: tag 128-135, array flags 136-151, dimensions tag 152-159, then dims)
    assert struct.unpack_from("<2i", raw, 160) == (1, 1)
    struct.pack_into("<2i", raw, 160, 100_000, 100_000)
    path.write_bytes(raw)
    with pytest.raises(DataError, match=r"m.mat: a \(100000, 100000\) struct or cell in \d+ bytes"):
        read_mat5(path)
    # a compressed variable that inflates past the budget
    sio.savemat(path, {"annotations": np.zeros((1000, 1000))}, do_compression=True)
    assert path.stat().st_size < 20_000
    with pytest.raises(DataError, match="inflate to more than 1 MiB"):
        read_mat5(path, max_inflated=2**20)
    assert read_mat5(path)["annotations"].shape == (1000, 1000)  # (within the default budget)
    # a file larger than an annotation file holds
    with pytest.raises(DataError, match="more than a MATLAB annotation file holds"):
        read_mat5(path, max_bytes=1000)


def test_classes_that_could_stand_for_code_are_refused(tmp_path):
    from poseaug_pl.data.matfile import read_mat5

    for cls in (3, 16, 17, 5):  # object, function handle, opaque (MCOS), sparse
        path, raw = matrix_file(tmp_path, np.zeros((2, 2)))
        struct.pack_into("<I", raw, 144, cls)  # (the array flags' class byte)
        path.write_bytes(raw)
        with pytest.raises(DataError, match=f"m.mat: a matrix of MATLAB class {cls} "):
            read_mat5(path)
    path, raw = matrix_file(tmp_path, np.zeros((2, 2)))
    path.write_bytes(raw[:-8])  # truncated
    with pytest.raises(DataError, match="m.mat: an element runs past the end"):
        read_mat5(path)
    (tmp_path / "t.mat").write_text("not a mat file at all" * 20)
    with pytest.raises(DataError, match="t.mat: not a MATLAB v5 .mat file"):
        read_mat5(tmp_path / "t.mat")


def test_mupots_pck_gives_bones_their_true_lengths_and_averages_the_sequences():
    """The official 3DPCK rescales each predicted bone to its true length from the pelvis out: a
    prediction that is the truth enlarged by 30% scores 100% (MPJPE still counts the size);
    the seq-mean weighs each sequence once, the pooled number each person."""
    from poseaug_pl.data.poseset import PoseSet
    from poseaug_pl.evaluation.metrics import TestSetMetrics
    from poseaug_pl.evaluation.protocols import protocol_table, protocol_table_data

    gen = torch.Generator().manual_seed(0)
    n = 30
    target = torch.randn(n, 16, 3, generator=gen) * 0.3
    target = target - target[:, :1]
    pred = target * 1.3
    pred[20:, 3] += 0.5  # TS2's right ankle far off (10 of its 10 persons)
    subject = (torch.arange(n) >= 20).long()
    zeros = torch.zeros(n, dtype=torch.int64)
    data = PoseSet("mupots", target, target[..., :2], None, subject, zeros, torch.arange(n),
                   ("TS1", "TS2"), ("indoor",), protocol="mupots3d")  # fmt: skip
    metrics = TestSetMetrics({"mupots": data})
    metrics.update("mupots", pred, target, {"subject": subject, "action": zeros})
    results, logged = metrics.compute()
    m = results["mupots"]
    per = m["per_sequence"]
    assert per["TS1"]["pck_14"] == 100 and per["TS1"]["mpjpe"] > 0
    assert per["TS2"]["pck_14"] == pytest.approx(100 * 13 / 14)
    assert m["pck_14"] == pytest.approx(100 * (20 * 14 + 10 * 13) / (30 * 14))  # persons pooled
    assert m["pck_seq_mean"] == pytest.approx((100 + 100 * 13 / 14) / 2)  # sequences averaged
    assert float(logged["test/mupots/pck_seq_mean"]) == pytest.approx(m["pck_seq_mean"])
    table = protocol_table("mupots", m)
    assert "All (mean of sequences)" in table and "TS2" in table
    assert protocol_table_data(m)[0] == "per_sequence"


def test_evaluate_prints_the_mupots_table_for_a_converted_release(tmp_path, tiny_ckpt):
    write_fixture(tmp_path / "MultiPersonTestSet")
    r, out = convert(tmp_path, tmp_path / "MultiPersonTestSet")
    assert r.returncode == 0, r.stderr[-3000:]
    ev = tmp_path / "evaluate"
    r = cli("evaluate", f"ckpt_path={tiny_ckpt}", f"+data.cross_sets.mupots={out}",
            f"hydra.run.dir={ev}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((ev / "metrics.json").read_text())["mupots"]
    assert m["protocol"] == "mupots3d"
    assert {s: v["frames"] for s, v in m["per_sequence"].items()} == {"TS1": 6, "TS7": 8}
    assert "All (mean of sequences)" in r.stdout and "MuPoTS-3D" in r.stdout
