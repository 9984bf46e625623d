"""``prepare_data dataset=3dpw``: the official sequence files (written here as fixtures in their
structure: latin-1 pickles of dicts of arrays and lists; the real files are not in this
environment) to PoseAug's cross-set layout."""

import pickle

import numpy as np

from helpers import cli
from poseaug_pl.data.cross import load_cross_set
from test_trust_npz import MakesFolder, assert_cli_refused


def _rotation(rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def write_sequence(path, rng, actors=2, frames=6, payload=None) -> dict:
    """One sequence file: actors in the world, a camera pose per frame (some invalid), K."""
    k = np.array([[1961.0, 0, 540.0], [0, 1969.0, 960.0], [0, 0, 1]])
    cams = np.tile(np.eye(4), (frames, 1, 1))
    cams[:, :3, :3] = [_rotation(rng) for _ in range(frames)]
    cams[:, :3, 3] = rng.normal(0, 0.2, (frames, 3))
    joints, valid, camera_frame = [], [], []
    for _ in range(actors):
        x_cam = rng.normal(0, 0.3, (frames, 24, 3)) + [0, 0, 4.0]  # 4 m in front
        world = np.einsum("tji,tnj->tni", cams[:, :3, :3], x_cam - cams[:, None, :3, 3])
        joints.append(world.reshape(frames, 72))
        valid.append(rng.random(frames) > 0.3)
        camera_frame.append(x_cam)
    seq = {"sequence": path.stem, "jointPositions": joints, "cam_poses": cams,
           "campose_valid": valid, "cam_intrinsics": k, "genders": ["m"] * actors,
           "img_frame_ids": np.arange(frames)}  # fmt: skip
    if payload is not None:
        seq["texture_maps"] = payload
    path.write_bytes(pickle.dumps(seq, protocol=2))
    return {"k": k, "valid": valid, "camera_frame": camera_frame}


def expected_16(x24: np.ndarray) -> np.ndarray:
    order = (0, 2, 5, 8, 1, 4, 7, None, 12, 15, 16, 18, 20, 17, 19, 21)
    return np.stack([x24[:, j] if j is not None else (x24[:, 0] + x24[:, 12]) / 2
                     for j in order], 1)  # fmt: skip


def test_the_converter_gives_back_every_valid_frame_in_its_camera(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "test").mkdir()
    truth = {name: write_sequence(tmp_path / "test" / f"{name}.pkl", rng)
             for name in ("downtown_a_00", "office_b_01")}  # fmt: skip
    out = tmp_path / "pw3d_test.npz"
    r = cli("prepare_data", "dataset=3dpw", f"root={tmp_path}", f"output={out}",
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.load(out)
    want3, want2, frames = [], [], []
    for t in truth.values():  # (files in name order)
        for x_cam, valid in zip(t["camera_frame"], t["valid"]):
            x3 = expected_16(x_cam[valid])
            px = x3 @ t["k"].T
            want3.append(x3)
            want2.append(px[..., :2] / px[..., 2:] / 1920 * 2 - 1)  # the authors' square frame
            frames.extend(np.flatnonzero(valid))
    np.testing.assert_allclose(got["pose3d"], np.concatenate(want3), atol=1e-6)
    np.testing.assert_allclose(got["pose2d"], np.concatenate(want2), atol=1e-6)
    assert list(got["frame"]) == frames
    assert set(got["subject"]) == set(truth) and set(got["actor"]) == {0, 1}
    assert len(load_cross_set(out)) == len(frames)


def test_missing_split_and_a_code_carrying_file_are_one_line(tmp_path):
    r = cli("prepare_data", "dataset=3dpw", f"root={tmp_path}", f"output={tmp_path}/x.npz",
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 2 and "no sequence files (*.pkl)" in r.stderr
    marker = tmp_path / "PAYLOAD_RAN"
    (tmp_path / "test").mkdir()
    evil = tmp_path / "test" / "evil.pkl"
    write_sequence(evil, np.random.default_rng(1), payload=MakesFolder(marker))
    out = tmp_path / "out.npz"
    r = cli("prepare_data", "dataset=3dpw", f"root={tmp_path}", f"output={out}",
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert_cli_refused(r, evil, marker)
    assert not out.exists()
