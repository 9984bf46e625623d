"""The three cross-dataset benchmarks as a user runs them: each official structure written from
real Human3.6M poses (``../shared``; the embedded synthetic poses without it) and published
cameras, converted by ``prepare_data`` (which gives those poses back), then ``evaluate``, which
prints and writes each benchmark's own table. None of the three releases is in this
environment: the converters are tested on these fixtures only."""

import json
import pickle

import numpy as np
import pytest
import torch

from conftest import h36m_root
from helpers import cli
from poseaug_pl.data.humaneva import EXTRINSICS, rotation_matrix
from poseaug_pl.evaluation import metrics as ev_metrics
from poseaug_pl.evaluation.metrics import PCK_JOINTS_14, cell_rows, cell_summary
from poseaug_pl.geometry.camera import project_to_2d

h5py = pytest.importorskip("h5py")

#: MPI-INF-3DHP's pixel intrinsics (fx, fy, cx, cy) as published fitted to its data (SRNet's
#: loader), independently of the converter's, from the calibration files; and image sizes.
INTRINSICS_3DHP = {
    "studio": ((1500.0686, 1500.6591, 1017.3795, 1043.0628), (2048, 2048)),
    "outdoor": ((1683.4826, 1671.9272, 939.9278, 560.2072), (1920, 1080)),
}
#: 3DPW's intrinsics (portrait 1080 x 1920 frames).
K_3DPW = np.array([[1961.0, 0, 540.0], [0, 1969.0, 960.0], [0, 0, 1]])
#: Pinhole intrinsics for HumanEva-I's 640 x 480 colour cameras (the 2D is only carried along).
K_HUMANEVA = np.array([[1000.0, 0, 320.0], [0, 1000.0, 240.0], [0, 0, 1]])


@pytest.fixture(scope="module")
def poses() -> np.ndarray:
    """(96, 16, 3) camera-frame metres, 5 m in front of the camera: Human3.6M S9's poses
    (16 joints, 96 frames spread over a walk) where ``../shared`` has them, else synthetic ones."""
    root = h36m_root()
    if root is not None:
        from poseaug_pl.data.poseset import load_npz
        from poseaug_pl.geometry.skeleton import remap_joints

        world = load_npz(root / "data_3d_h36m.npz", ("positions_3d",))["positions_3d"]
        walk = np.asarray(world["S9"]["Walking"], np.float64)
        x = remap_joints(walk[:: len(walk) // 96][:96], "h36m32")
    else:
        from poseaug_pl.data.synthetic import generate

        x = generate(sequences=1, frames=24, subjects=("S1",)).pose3d.double().numpy()[:96]
        x = x - x[:, :1]
    x = x - x[:, :1]
    up_to_down = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # z up -> y down, looking at +y
    return x @ up_to_down.T + [0.0, 0.2, 5.0]


def project(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    px = x @ k.T
    return px[..., :2] / px[..., 2:]


def write_3dhp(root, poses) -> dict:
    """TS1 .. TS6 from 16 poses each (every fourth frame invalid); 3DHP's own head (which PoseAug
    drops) between neck and head top. Returns the valid poses per scene."""
    order = [14, 8, 9, 10, 11, 12, 13, 15, 1, 0, 5, 6, 7, 2, 3, 4]  # 17 test joints -> 16
    kept = {}
    for i, seq in enumerate(("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")):
        x16 = poses[i * 16 : (i + 1) * 16]
        x17 = np.zeros((16, 17, 3))
        x17[:, order] = x16
        x17[:, 16] = (x16[:, 8] + x16[:, 9]) / 2
        (fx, fy, cx, cy), _ = INTRINSICS_3DHP["studio" if i < 4 else "outdoor"]
        k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        valid = (np.arange(16) % 4 != 3).astype(np.float64)
        (root / seq).mkdir(parents=True)
        with h5py.File(root / seq / "annot_data.mat", "w") as f:
            f["univ_annot3"] = x17[:, None] * 1000
            f["annot3"] = x17[:, None] * 1000
            f["annot2"] = project(x17, k)[:, None]
            f["valid_frame"] = valid[:, None]
            f["activity_annotation"] = np.ones((16, 1))
        scene = ("GS", "noGS", "outdoor")[i // 2]
        kept[scene] = np.concatenate([kept.get(scene, np.zeros((0, 16, 3))), x16[valid == 1]])
    return kept


def smpl_24(x16: np.ndarray) -> np.ndarray:
    """SMPL's 24 joints around 16 PoseAug joints: PoseAug's joints where SMPL has them (its
    neck at the thorax, its head at the head), the rest in between."""
    x = np.zeros((len(x16), 24, 3))
    same = {0: 0, 1: 4, 2: 1, 4: 5, 5: 2, 7: 6, 8: 3, 10: 6, 11: 3, 12: 8, 15: 9, 16: 10,
            17: 13, 18: 11, 19: 14, 20: 12, 21: 15, 22: 12, 23: 15}  # fmt: skip
    for smpl, j in same.items():
        x[:, smpl] = x16[:, j]
    x[:, 3], x[:, 6], x[:, 9] = x16[:, 7], (x16[:, 7] + x16[:, 8]) / 2, x16[:, 8]
    x[:, 13], x[:, 14] = (x16[:, 8] + x16[:, 10]) / 2, (x16[:, 8] + x16[:, 13]) / 2
    return x


def write_3dpw(root, poses) -> np.ndarray:
    """test/<two sequences>.pkl (Python 2 style, latin-1 pickles): one actor each, filmed by a
    moving camera (a rotation per frame), some camera poses invalid. Returns the valid poses."""
    rng, kept = np.random.default_rng(0), []
    (root / "test").mkdir(parents=True)
    for i, seq in enumerate(("downtown_walking_00", "office_phoneCall_00")):
        x16 = poses[i * 12 : (i + 1) * 12]
        rot = np.stack([np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in x16])
        rot *= np.sign(np.linalg.det(rot))[:, None, None]
        t = rng.normal(0, 0.3, (len(x16), 3))
        cams = np.tile(np.eye(4), (len(x16), 1, 1))
        cams[:, :3, :3], cams[:, :3, 3] = rot, t
        world = np.einsum("tji,tnj->tni", rot, smpl_24(x16) - t[:, None])  # R^T (x - t)
        valid = np.arange(len(x16)) % 3 != 0
        seq_dict = {"sequence": seq, "jointPositions": [world.reshape(len(x16), 72)],
                    "cam_poses": cams, "campose_valid": [valid.astype(np.int64)],
                    "cam_intrinsics": K_3DPW, "genders": ["m"]}  # fmt: skip
        (root / "test" / f"{seq}.pkl").write_bytes(pickle.dumps(seq_dict, protocol=2))
        kept.append(x16[valid])
    return np.concatenate(kept)


def write_humaneva(root, poses) -> dict:
    """VideoPose3D's two files: Validate chunks of S1 (Walking, Box) and S2 (Walking), world
    frame through each subject's published C1 extrinsics, 2D per camera. Returns the C1 poses."""
    to_15 = [0, 8, 10, 11, 12, 13, 14, 15, 4, 5, 6, 1, 2, 3, 9]
    root.mkdir()
    chunks = {("S1", "Walking 1 chunk0"): poses[:8], ("S1", "Box 1 chunk0"): poses[8:14],
              ("S2", "Walking 1 chunk0"): poses[14:24]}  # fmt: skip
    pos3d, pos2d = {}, {}
    for (subject, action), x16 in chunks.items():
        q, t = EXTRINSICS[subject][0]
        world = x16 @ rotation_matrix(q).T + np.array(t) / 1000
        views = []
        for cam in range(3):
            qc, tc = EXTRINSICS[subject][cam]
            views.append(project((world - np.array(tc) / 1000) @ rotation_matrix(qc), K_HUMANEVA))
        pos3d.setdefault(f"Validate/{subject}", {})[action] = world[:, to_15].astype(np.float32)
        pos2d.setdefault(f"Validate/{subject}", {})[action] = [v[:, to_15] for v in views]
    np.savez(root / "data_3d_humaneva15.npz", positions_3d=np.array(pos3d, dtype=object))
    np.savez(root / "data_2d_humaneva15_gt.npz", positions_2d=np.array(pos2d, dtype=object))
    return chunks


def convert(tmp_path, dataset, root, *extra):
    out = tmp_path / f"{dataset}.npz"
    r = cli("prepare_data", f"dataset={dataset}", f"root={root}", f"output={out}", *extra,
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return out, dict(np.load(out))


def midpoint_spine(x16: np.ndarray) -> np.ndarray:
    """The poses with the spine where HumanEva-I and 3DPW have none: the pelvis-thorax midpoint."""
    x = x16.copy()
    x[:, 7] = (x[:, 0] + x[:, 8]) / 2
    return x


def test_each_benchmark_converts_back_and_evaluates_with_its_own_table(tmp_path, poses, tiny_ckpt):
    kept = write_3dhp(tmp_path / "mpi_inf_3dhp_test_set", poses)
    path_3dhp, got = convert(tmp_path, "mpi_inf_3dhp", tmp_path / "mpi_inf_3dhp_test_set")
    np.testing.assert_allclose(got["pose3d"], np.concatenate(list(kept.values())), atol=1e-6)
    (fx, fy, cx, cy), (w, h) = INTRINSICS_3DHP["studio"]  # TS1's 2D is its 3D through the camera
    px = got["pose2d"][:12] * w / 2 + [w / 2, h / 2]
    x = got["pose3d"][:12]
    pinhole = np.stack([fx * x[..., 0] / x[..., 2] + cx, fy * x[..., 1] / x[..., 2] + cy], -1)
    np.testing.assert_allclose(px, pinhole, atol=1e-3)
    # the calibration files' cameras agree with a published fit:
    ours = project_to_2d(torch.as_tensor(got["pose3d"]), torch.as_tensor(got["cam"])).numpy()
    sizes = np.where(got["action"] == "outdoor", 1920, 2048)[:, None, None]  # (with a fitted one)
    assert np.abs(ours - got["pose2d"]).max() * sizes.max() / 2 < 1.0  # pixels

    want_3dpw = write_3dpw(tmp_path / "sequenceFiles", poses)
    path_3dpw, got = convert(tmp_path, "3dpw", tmp_path / "sequenceFiles")
    np.testing.assert_allclose(got["pose3d"], midpoint_spine(want_3dpw), atol=1e-6)
    px = (got["pose2d"] + 1) * 960  # (normalised by the longer side, 1920, as the authors did)
    np.testing.assert_allclose(px, project(got["pose3d"], K_3DPW), atol=1e-3)
    ours = project_to_2d(torch.as_tensor(got["pose3d"]), torch.as_tensor(got["cam"])).numpy()
    np.testing.assert_allclose(ours, got["pose2d"], atol=1e-5)

    chunks = write_humaneva(tmp_path / "humaneva", poses)
    path_he, got = convert(tmp_path, "humaneva", tmp_path / "humaneva", "split=validate")
    c1 = got["pose3d"][got["camera"] == 0]  # (chunks in the file's order, as written)
    want = midpoint_spine(np.concatenate(list(chunks.values())))
    np.testing.assert_allclose(c1, want, atol=1e-5)  # (VideoPose3D's world frame is float32)

    ev = tmp_path / "evaluate"
    r = cli("evaluate", f"ckpt_path={tiny_ckpt}", f"+data.cross_sets.mpi_inf_3dhp={path_3dhp}",
            f"+data.cross_sets.pw3d={path_3dpw}", f"+data.cross_sets.humaneva={path_he}",
            f"hydra.run.dir={ev}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((ev / "metrics.json").read_text())
    scenes = m["mpi_inf_3dhp"]["per_scene"]
    assert {s: v["frames"] for s, v in scenes.items()} == {"GS": 24, "noGS": 24, "outdoor": 24}
    frames = sum(v["frames"] for v in scenes.values())
    for key in ("mpjpe", "pck_14", "auc_14"):  # scenes pool their frames: they average back
        pooled = sum(v[key] * v["frames"] for v in scenes.values()) / frames
        assert pooled == pytest.approx(m["mpi_inf_3dhp"][key], rel=1e-6)
    assert m["pw3d"]["protocol"] == "3dpw" and m["pw3d"]["frames"] == len(want_3dpw)
    table = m["humaneva"]["per_action_subject"]
    assert {a: {s: v["frames"] for s, v in per.items()} for a, per in table.items()} == {
        "Walking": {"S1": 24, "S2": 30},
        "Box": {"S1": 18},
    }  # 3 cameras x chunk frames
    from poseaug_pl.evaluation.protocols import protocol_table_data  # (W&B tables)

    assert [r[0] for r in protocol_table_data(m["mpi_inf_3dhp"])[2]] == ["GS", "noGS", "outdoor"]
    assert len(protocol_table_data(m["humaneva"])[2]) == 3  # (action, subject) cells
    for title in ("PCK (14 joints)", "outdoor", "3DPW", "P2 (PA-MPJPE) S2", "Walking"):
        assert title in r.stdout, r.stdout


def test_3dhp_pck_and_auc_leave_out_the_pelvis_and_spine_and_count_below_150mm():
    target = torch.zeros(2, 16, 3)
    pred = target.clone()
    pred[:, 7, 0] = 0.5  # the spine far off: not one of the 14 joints
    pred[0, 9, 0] = 0.149  # the head (3DHP's head top) just within 150 mm in frame 0 ...
    pred[1, 9, 0] = 0.151  # ... just beyond in frame 1
    err, pa = ev_metrics.joint_errors(pred, target), ev_metrics.pa_mpjpe(pred, target)
    thresholds = torch.tensor(ev_metrics.AUC_THRESHOLDS)
    s = cell_summary(cell_rows(err, pa, thresholds).double().sum(0))
    assert len(PCK_JOINTS_14) == 14 and 0 not in PCK_JOINTS_14 and 7 not in PCK_JOINTS_14
    assert s["pck_14"] == pytest.approx(100 * 27 / 28)  # one (joint, frame) of 28 misses
    assert s["frames"] == 2


def test_the_humaneva_table_holds_each_subject_and_actions_own_errors():
    from poseaug_pl.data.poseset import PoseSet
    from poseaug_pl.evaluation.metrics import mpjpe, pa_mpjpe

    gen = torch.Generator().manual_seed(0)
    n = 40
    target, pred = torch.randn(2, n, 16, 3, generator=gen) * 0.3
    subject, action = torch.arange(n) % 2, (torch.arange(n) // 3) % 3
    data = PoseSet("humaneva", target, target[..., :2], None, subject, action, torch.arange(n),
                   ("S1", "S2"), ("Walking", "Jog", "Box"), protocol="humaneva")  # fmt: skip
    metrics = ev_metrics.TestSetMetrics({"humaneva": data})
    for rows in torch.arange(n).split(16):  # batches
        batch = {"subject": subject[rows], "action": action[rows], "index": rows}
        metrics.update("humaneva", pred[rows], target[rows], batch)
    table = metrics.compute()[0]["humaneva"]["per_action_subject"]
    for a, name in enumerate(("Walking", "Jog", "Box")):
        for s in range(2):
            rows = (subject == s) & (action == a)
            cell = table[name][f"S{s + 1}"]
            assert cell["frames"] == int(rows.sum())
            assert cell["mpjpe"] == pytest.approx(
                float(mpjpe(pred[rows], target[rows]).mean()) * 1000, rel=1e-5
            )
            assert cell["pa_mpjpe"] == pytest.approx(
                float(pa_mpjpe(pred[rows], target[rows]).mean()) * 1000, rel=1e-5
            )


def test_labels_unique_per_row_keep_their_cells_per_action_only():
    from poseaug_pl.data.poseset import PoseSet

    n = 600
    x = torch.randn(n, 16, 3)
    ids = torch.arange(n) % 300  # 300 x 300 (subject, action) cells: more than MAX_CELLS
    names = tuple(f"s{i}" for i in range(300)), tuple(f"a{i}" for i in range(300))
    data = PoseSet("mine", x, x[..., :2], None, ids, ids, torch.arange(n), *names)
    metrics = ev_metrics.TestSetMetrics({"mine": data})
    assert metrics.cells_mine.shape[0] == 300 < ev_metrics.MAX_CELLS
    metrics.update("mine", x, x, {"subject": ids, "action": ids, "index": torch.arange(n)})
    per_action = metrics.compute()[0]["mine"]["per_action"]
    assert len(per_action) == 300 and all(a["frames"] == 2 for a in per_action.values())


def test_a_set_names_its_benchmark_in_its_file_or_by_its_name(tmp_path, poses):
    from poseaug_pl.data import DataError, load_cross_set

    x = poses[:10].astype(np.float32)
    plain = dict(pose3d=x, pose2d=x[..., :2] / x[..., 2:])
    np.savez(tmp_path / "test_3dhp.npz", **plain)  # the PoseAug authors' file: no ids
    assert load_cross_set(tmp_path / "test_3dhp.npz", "mpi_inf_3dhp").protocol == "mpi_inf_3dhp"
    assert load_cross_set(tmp_path / "test_3dhp.npz", "pw3d_test").protocol == "3dpw"
    assert load_cross_set(tmp_path / "test_3dhp.npz", "mine").protocol is None
    np.savez(tmp_path / "named.npz", **plain, dataset=np.array("humaneva"))
    assert load_cross_set(tmp_path / "named.npz", "mine").protocol == "humaneva"
    np.savez(tmp_path / "odd.npz", **plain, dataset=np.array("h36m"))
    with pytest.raises(DataError, match=r"'dataset' must be one of \['mpi_inf_3dhp', '3dpw', 'hu"):
        load_cross_set(tmp_path / "odd.npz")


def test_without_scenes_3dhp_still_reports_its_14_joint_numbers(poses):
    from poseaug_pl.data.poseset import PoseSet
    from poseaug_pl.evaluation.protocols import protocol_table, protocol_table_data

    x = torch.as_tensor(poses[:10], dtype=torch.float32)
    zeros = torch.zeros(10, dtype=torch.int64)
    data = PoseSet("mpi_inf_3dhp", x, x[..., :2], None, zeros, zeros, torch.arange(10),
                   ("mpi_inf_3dhp",), ("mpi_inf_3dhp",), protocol="mpi_inf_3dhp")  # fmt: skip
    metrics = ev_metrics.TestSetMetrics({"mpi_inf_3dhp": data})
    rel = x - x[:, :1]
    metrics.update("mpi_inf_3dhp", rel, rel, {"subject": zeros, "action": zeros})
    results, logged = metrics.compute()
    m = results["mpi_inf_3dhp"]
    assert m["pck_14"] == 100 and "per_scene" not in m and protocol_table_data(m) is None
    assert float(logged["test/mpi_inf_3dhp/pck_14"]) == 100  # (dashboards and sweeps)
    assert "PCK (14 joints)" in protocol_table("mpi_inf_3dhp", m)
