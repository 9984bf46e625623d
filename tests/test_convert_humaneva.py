"""``prepare_data dataset=humaneva``: VideoPose3D's HumanEva-I files (written here as fixtures in
their structure; the real files are not in this environment) to PoseAug's cross-set layout."""

from pathlib import Path

import numpy as np
import pytest

from helpers import cli
from poseaug_pl.data.cross import load_cross_set
from poseaug_pl.data.humaneva import EXTRINSICS
from test_trust_npz import MakesFolder, assert_cli_refused

#: The fixture's chunks: (split key, action, frames).
CHUNKS = [("Train/S1", "Walking 1 chunk0", 5), ("Train/S1", "Jog 1 chunk0", 3),
          ("Train/S2", "Box 1 chunk0", 4), ("Validate/S3", "Walking 1 chunk0", 2)]  # fmt: skip


def _qrot_inverse(q, v):
    """``v`` rotated by the inverse of the unit quaternion ``q`` (w, x, y, z), the quaternion
    way (independent of the converter's matrix)."""
    w, xyz = q[0], -np.asarray(q[1:], np.float64)
    uv = np.cross(xyz, v)
    return v + 2 * (w * uv + np.cross(xyz, uv))


def write_fixture(root: Path, seed: int = 0, payload=None) -> dict:
    """VideoPose3D's two HumanEva-I files in ``root``; returns the expected rows per chunk:
    ``{(key, action): (world 15-joint 3D, [pixels per camera])}``."""
    rng = np.random.default_rng(seed)
    pos3d, pos2d, truth = {}, {}, {}
    for key, action, n in CHUNKS:
        world = rng.normal(0, 0.4, (n, 15, 3)) + [0.0, 0.0, 1.0]  # metres, around a person
        pixels = [rng.uniform(0, [640, 480], (n, 15, 2)) for _ in range(3)]
        pos3d.setdefault(key, {})[action] = world.astype(np.float32)
        pos2d.setdefault(key, {})[action] = [p.astype(np.float32) for p in pixels]
        truth[(key, action)] = (world.astype(np.float32).astype(np.float64), pixels)
    if payload is not None:
        pos3d["Train/S1"]["Walking 1 chunk0"] = payload
    np.savez(root / "data_3d_humaneva15.npz", positions_3d=np.array(pos3d, dtype=object))
    meta = {"layout_name": "humaneva15", "num_joints": 15}
    np.savez(root / "data_2d_humaneva15_gt.npz", positions_2d=np.array(pos2d, dtype=object),
             metadata=np.array(meta, dtype=object))  # fmt: skip
    return truth


def expected(truth: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """PoseAug-layout 3D and 2D of a split, worked out here independently of the converter."""
    order = (0, 11, 12, 13, 8, 9, 10, None, 1, 14, 2, 3, 4, 5, 6, 7)
    p3, p2 = [], []
    for (key, _), (world, pixels) in truth.items():
        if not key.startswith(split):
            continue
        subject = key.split("/")[1]
        for cam in range(3):
            q, t = EXTRINSICS[subject][cam]
            x3 = np.stack([[_qrot_inverse(q, j - np.array(t) / 1000) for j in f] for f in world])
            x2 = pixels[cam] / 640 * 2 - [1, 480 / 640]
            for x, out in ((x3, p3), (x2, p2)):
                out.append(np.stack([x[:, j] if j is not None else (x[:, 0] + x[:, 1]) / 2
                                     for j in order], 1))  # fmt: skip
    return np.concatenate(p3), np.concatenate(p2)


@pytest.mark.parametrize("split,prefix", [("train", "Train/"), ("validate", "Validate/")])
def test_the_converter_gives_back_the_fixtures_poses_in_each_cameras_frame(tmp_path, split,
                                                                            prefix):  # fmt: skip
    truth = write_fixture(tmp_path)
    out = tmp_path / f"humaneva_{split}.npz"
    r = cli("prepare_data", "dataset=humaneva", f"root={tmp_path}", f"output={out}",
            f"split={split}", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.load(out)  # (plain arrays only: no pickle)
    want3, want2 = expected(truth, prefix)
    np.testing.assert_allclose(got["pose3d"], want3, atol=1e-6)
    np.testing.assert_allclose(got["pose2d"], want2, atol=1e-6)
    chunks = [(k, a, n) for k, a, n in CHUNKS if k.startswith(prefix)]
    assert list(got["camera"]) == [c for _, _, n in chunks for c in range(3) for _ in range(n)]
    assert list(got["frame"]) == [f for _, _, n in chunks for _ in range(3) for f in range(n)]
    assert set(got["subject"]) == {k.split("/")[1] for k, _, _ in chunks}
    assert list(got["chunk"]) == [a for _, a, n in chunks for _ in range(3 * n)]
    assert list(got["action"]) == [a.split(" ")[0] for _, a, n in chunks for _ in range(3 * n)]
    assert f"{len(want3)} frames (humaneva, {split}; left out: none)" in r.stdout
    assert len(load_cross_set(out)) == len(want3)  # a cross set as it is


def test_a_converted_chunk_puts_every_camera_at_the_same_world_pose(tmp_path):
    """The three views of a frame are one pose: back in the world frame they agree, which is
    how the development set's rows relate (its first chunk's C1, C2 and C3 blocks)."""
    from poseaug_pl.data.humaneva import convert_humaneva, rotation_matrix

    write_fixture(tmp_path)
    arrays = convert_humaneva(tmp_path, "train")
    n = 5  # Train/S1 "Walking 1 chunk0"
    back = [arrays["pose3d"][c * n:(c + 1) * n].astype(np.float64)
            @ rotation_matrix(EXTRINSICS["S1"][c][0]).T + np.array(EXTRINSICS["S1"][c][1]) / 1000
            for c in range(3)]  # fmt: skip
    np.testing.assert_allclose(back[0], back[1], atol=1e-5)
    np.testing.assert_allclose(back[0], back[2], atol=1e-5)


def test_bad_input_is_one_line(tmp_path):
    r = cli("prepare_data", "dataset=humaneva", f"root={tmp_path}", f"output={tmp_path}/x.npz",
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    missing = "no data_3d_humaneva15.npz or data_2d_humaneva15_gt.npz"
    assert r.returncode == 2 and missing in r.stderr
    assert "humaneva sequences" not in r.stderr  # said before any progress bar
    write_fixture(tmp_path)
    r = cli("prepare_data", "dataset=humaneva", f"root={tmp_path}", f"output={tmp_path}/x.npz",
            "split=test", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 2 and "split must be one of ['train', 'validate']" in r.stderr
    r = cli("prepare_data", "dataset=3dpw_x", f"root={tmp_path}", f"output={tmp_path}/x.npz",
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    every = "['3dpw', 'humaneva', 'mpi_inf_3dhp', 'mpi_inf_3dhp_spin', 'mupots3d']"
    assert r.returncode == 2 and f"dataset must be one of {every}" in r.stderr
    assert not (tmp_path / "x.npz").exists()


def test_a_fixture_carrying_code_is_refused(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    write_fixture(tmp_path, payload=MakesFolder(marker))
    out = tmp_path / "out.npz"
    r = cli("prepare_data", "dataset=humaneva", f"root={tmp_path}", f"output={out}",
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert_cli_refused(r, tmp_path / "data_3d_humaneva15.npz", marker)
    assert not out.exists()


DEV = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "humaneva" / "humaneva_train_16j.npz"
)


def test_the_development_set_is_what_the_converter_makes_of_videopose3ds_files(tmp_path):
    """Acceptance: run on VideoPose3D's real HumanEva-I files, the converter gives the poses of
    ``../shared/data/humaneva/``. The fixture is built the way that set was: its first chunk
    (S1, 406 frames, as blocks seen by C1, C2, C3) taken back to VideoPose3D's world frame and
    15 joints through C1's published calibration. Converted, all three cameras' rows come back:
    C2's and C3's 3D only through the calibration."""
    from poseaug_pl.data.humaneva import convert_humaneva, rotation_matrix

    if not DEV.is_file():
        pytest.skip(f"HumanEva-I development set not found at {DEV}")
    dev, n = np.load(DEV), 406
    q, t = EXTRINSICS["S1"][0]
    world = dev["pose3d"][:n].astype(np.float64) @ rotation_matrix(q).T + np.array(t) / 1000
    to_15 = [0, 8, 10, 11, 12, 13, 14, 15, 4, 5, 6, 1, 2, 3, 9]  # the 16 without the spine
    pixels = [(dev["pose2d"][c * n:(c + 1) * n, to_15] + [1, 480 / 640]) * 640 / 2
              for c in range(3)]  # fmt: skip
    np.savez(
        tmp_path / "data_3d_humaneva15.npz",
        positions_3d=np.array(
            {"Train/S1": {"Walking 1 chunk0": world[:, to_15].astype(np.float32)}}, dtype=object
        ),
    )
    np.savez(
        tmp_path / "data_2d_humaneva15_gt.npz",
        positions_2d=np.array(
            {"Train/S1": {"Walking 1 chunk0": [p.astype(np.float32) for p in pixels]}}, dtype=object
        ),
    )
    out = convert_humaneva(tmp_path, "train")
    np.testing.assert_allclose(out["pose3d"], dev["pose3d"][: 3 * n], atol=1e-6)
    np.testing.assert_allclose(out["pose2d"], dev["pose2d"][: 3 * n], atol=1e-6)
