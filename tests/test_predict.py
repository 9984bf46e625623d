"""Lifting user keypoints: layouts, missing joints, the predict command, the Lifter API,
`Trainer.predict`. A tiny synthetic checkpoint stands in for a trained model."""

import json
from concurrent.futures import ThreadPoolExecutor

import lightning as L
import numpy as np
import pytest
import torch
from matplotlib import animation

from helpers import cli
from poseaug_pl import Lifter
from poseaug_pl.data import DataError
from poseaug_pl.data.keypoints import read_keypoints
from poseaug_pl.data.layouts import (
    LayoutError,
    check_layout,
    coco_like,
    detect_layout,
    fill_from_track,
    to_poseaug16,
)
from poseaug_pl.geometry.camera import image_coordinates
from poseaug_pl.training.module import PoseAugModule

W, H = 1000, 800


@pytest.fixture
def ckpt(tiny_ckpt):
    return tiny_ckpt


@pytest.fixture(scope="module")
def poses16():
    """(40, 16, 2) pixel poses of a walking synthetic person (one track)."""
    from poseaug_pl.data import generate

    data = generate(sequences=1, frames=40, seed=3)  # camera 0 of one sequence: 40 frames
    return image_coordinates(data.pose2d[:40].double(), W, H).numpy()


def coco_from_16(p16: np.ndarray) -> np.ndarray:
    """(N, 17, 2) COCO keypoints with limbs and hips from a 16-joint pose, face at the head."""
    return coco_like(p16)


# --- layouts ---------------------------------------------------------------------------------


def test_coco_derived_joints_follow_the_documented_weights():
    kp = np.zeros((1, 17, 2))
    kp[0, 11], kp[0, 12] = (110, 500), (90, 500)  # hips
    kp[0, 5], kp[0, 6] = (120, 300), (80, 300)  # shoulders
    kp[0, 0] = (100, 250)  # nose
    kp[0, [1, 2, 3, 4]] = (100, 245)
    out, ok = to_poseaug16(kp, np.ones((1, 17), bool), "coco")
    assert ok.all()
    np.testing.assert_allclose(out[0, 0], (100, 500))  # pelvis: mid-hips
    np.testing.assert_allclose(out[0, 8], (100, 500 - 1.13 * 200))  # thorax
    np.testing.assert_allclose(out[0, 7], (100, 500 - 0.544 * 200))  # spine
    np.testing.assert_allclose(out[0, 9], (100, 250 - 0.2 * 1.13 * 200))  # head above the nose
    np.testing.assert_allclose(out[0, [1, 4, 10, 13]], kp[0, [12, 11, 5, 6]])  # r/l hip, shoulder


def test_a_missing_nose_falls_back_to_eyes_and_ears_and_a_missing_hip_invalidates_the_torso():
    kp = np.tile(np.arange(34.0).reshape(1, 17, 2), (2, 1, 1))
    valid = np.ones((2, 17), bool)
    valid[0, 0] = False  # no nose: the mean of the eyes and ears stands in
    valid[1, 11] = False  # no left hip
    out, ok = to_poseaug16(kp, valid, "coco")
    face = kp[0, 1:5].mean(0)
    assert ok[0].all()
    np.testing.assert_allclose(out[0, 9], face + 0.2 * (out[0, 8] - out[0, 0]))
    assert not ok[1, [0, 4, 7, 8, 9]].any() and ok[1, [1, 2, 3, 5, 6, 10, 15]].all()
    assert np.isnan(out[1, [0, 4, 7, 8, 9]]).all()


def test_layouts_are_told_apart_by_joint_count_and_geometry(poses16):
    h17 = np.insert(poses16, 9, (poses16[:, 8] + poses16[:, 9]) / 2, axis=1)
    coco = coco_from_16(poses16)
    ok = np.ones(coco.shape[:2], bool)
    assert detect_layout(poses16, ok[:, :16]) == "poseaug16"
    assert detect_layout(h17, ok) == "h36m17"
    assert detect_layout(coco, ok) == "coco"
    only_nose = ok.copy()
    only_nose[:, 1:5] = False  # eyes and ears unlabelled: nose-to-shoulders decides
    assert detect_layout(coco, only_nose) == "coco"
    assert detect_layout(h17, only_nose) == "h36m17"
    with pytest.raises(LayoutError, match="look like h36m17"):
        check_layout(h17, ok, "coco")
    with pytest.raises(LayoutError, match="has 17 joints but the keypoints have 16"):
        check_layout(poses16, ok[:, :16], "coco")
    with pytest.raises(LayoutError, match="15 joints per pose"):
        detect_layout(poses16[:, :15], ok[:, :15])


def test_h36m17_drops_the_neck_joint(poses16):
    h17 = np.insert(poses16, 9, 0.0, axis=1)
    out, ok = to_poseaug16(h17, np.ones(h17.shape[:2], bool), "h36m17")
    np.testing.assert_array_equal(out, poses16) and ok.all()


def test_missing_joints_are_interpolated_within_a_track_only():
    xy = np.zeros((6, 16, 2))
    xy[:, :, 0] = np.arange(6)[:, None] * 10.0  # joints move 10 px per frame
    xy[[1, 2], 3] = np.nan  # interior gap
    xy[0, 4] = np.nan  # before the first seen frame
    xy[:, 5] = np.nan  # never seen in its track
    xy[5, 6] = np.nan  # a lone image: never filled
    track = np.array([0, 0, 0, 0, 0, -1])
    out = fill_from_track(xy, track, np.array([0, 1, 2, 3, 4, 0]))
    np.testing.assert_allclose(out[[1, 2], 3, 0], [10, 20])
    assert out[0, 4, 0] == 10  # nearest seen frame
    assert np.isnan(out[:, 5]).all() and np.isnan(out[5, 6]).all()


# --- readers and the command -----------------------------------------------------------------


def _coco_results(p16, drop_wrist_in=()) -> list:
    rows = []
    for i, p in enumerate(coco_from_16(p16)):
        kp = np.concatenate([p, np.full((17, 1), 0.9)], 1)
        if i in drop_wrist_in:
            kp[9, 2] = 0.05
        rows.append({"image_id": 100 + i, "category_id": 1, "keypoints": kp.ravel().tolist(),
                     "score": 0.95})  # fmt: skip
    return rows


def test_predict_writes_the_documented_arrays_for_an_npy_array(ckpt, poses16, tmp_path):
    scored = np.concatenate([poses16, np.ones((*poses16.shape[:2], 1))], -1)
    scored[7, 12, 2] = 0.1  # one low-confidence wrist: filled from frames 6 and 8
    np.save(tmp_path / "kp.npy", scored)
    r = cli("predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'kp.npy'}",
            f"output={tmp_path / 'out.npz'}", f"image_width={W}", f"image_height={H}",
            "flip=false")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "filled   1 joints" in r.stdout and "dropped  0 poses" in r.stdout
    out = np.load(tmp_path / "out.npz")
    assert set(out.files) == {"pose3d", "pose2d", "valid", "frame", "track", "image_id",
                              "joint_names", "outside"}  # fmt: skip
    assert out["pose3d"].shape == (40, 16, 3) and out["pose3d"].dtype == np.float32
    assert out["valid"].all() and (out["frame"] == np.arange(40)).all()
    np.testing.assert_array_equal(out["pose3d"][:, 0], 0.0)  # root-relative
    expect = Lifter.from_checkpoint(ckpt, flip=False).lift_normalised(out["pose2d"])
    np.testing.assert_allclose(out["pose3d"], expect, atol=1e-6)
    np.testing.assert_allclose(
        out["pose2d"][7, 12], (out["pose2d"][6, 12] + out["pose2d"][8, 12]) / 2, atol=1e-6
    )


def test_predict_reads_a_videopose3d_npz_with_its_image_sizes(ckpt, poses16, tmp_path):
    coco = coco_from_16(poses16)
    np.savez(
        tmp_path / "vp.npz",
        positions_2d={"a.mp4": {"custom": [coco[:25]]}, "b.mp4": {"custom": [coco[25:]]}},
        metadata={
            "layout_name": "coco",
            "num_joints": 17,
            "video_metadata": {"a.mp4": {"w": W, "h": H}, "b.mp4": {"w": W, "h": H}},
        },
    )
    r = cli("predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'vp.npz'}",
            f"output={tmp_path / 'out.npz'}", f"figure={tmp_path / 'fig.png'}",
            f"animation={tmp_path / 'a.gif'}", "animation_frames=5")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "videopose3d npz, 40 poses, layout coco" in r.stdout
    out = np.load(tmp_path / "out.npz")
    assert list(out["track"][[0, 24, 25]]) == ["a.mp4", "a.mp4", "b.mp4"]
    assert out["frame"][25] == 0 and out["valid"].all()
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    assert (tmp_path / "a.gif").read_bytes()[:3] == b"GIF"


def test_coco_results_flag_poses_that_cannot_be_completed(ckpt, poses16, tmp_path):
    (tmp_path / "det.json").write_text(json.dumps(_coco_results(poses16[:10], drop_wrist_in=(3,))))
    r = cli("predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'det.json'}",
            f"output={tmp_path / 'out.npz'}", f"image_width={W}", f"image_height={H}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "dropped  1 poses" in r.stdout
    out = np.load(tmp_path / "out.npz")
    assert out["valid"].tolist() == [i != 3 for i in range(10)]  # lone images: no neighbours
    assert np.isnan(out["pose3d"][3]).all() and np.isfinite(out["pose3d"][out["valid"]]).all()
    assert out["image_id"].tolist() == list(range(100, 110))


def _bad(tmp_path, poses16):
    """(name, input file, extra overrides, expected message part) of inputs that must fail."""
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    np.save(tmp_path / "j15.npy", poses16[:, :15])
    np.save(tmp_path / "ok.npy", poses16)
    low = np.concatenate([poses16, np.full((*poses16.shape[:2], 1), 0.1)], -1)
    np.save(tmp_path / "low.npy", low)
    h17 = np.insert(poses16, 9, (poses16[:, 8] + poses16[:, 9]) / 2, axis=1)
    np.save(tmp_path / "h17.npy", h17)
    (tmp_path / "odd.json").write_text(json.dumps({"persons": []}))
    size = [f"image_width={W}", f"image_height={H}"]
    return [
        ("unreadable", "garbage.npz", size, "cannot read"),
        ("missing", "nothere.npy", size, "input file not found"),
        ("joint count", "j15.npy", size, "15 joints per pose"),
        ("no image size", "ok.npy", [], "carries no image size"),
        ("all below min_score", "low.npy", size, "min_score=0.3"),
        ("wrong layout", "h17.npy", [*size, "layout=coco"], "look like h36m17"),
        ("not coco", "odd.json", size, "neither COCO annotations"),
        ("bad layout name", "ok.npy", [*size, "layout=openpose"], "layout must be auto or"),
        ("bad figure name", "ok.npy", [*size, f"figure={tmp_path / 'f.jpg'}"], "must be a .png"),
        ("batch size 0", "ok.npy", [*size, "batch_size=0"], "batch_size must be an integer >= 1"),
        ("min_score 1.5", "ok.npy", [*size, "min_score=1.5"], "min_score must be a number in"),
    ] + ([] if animation.writers.is_available("ffmpeg") else [
        ("mp4 without ffmpeg", "ok.npy", [*size, f"animation={tmp_path / 'a.mp4'}"], "ffmpeg"),
    ])  # fmt: skip


def test_every_bad_input_gives_one_line_exit_2_and_no_output(ckpt, poses16, tmp_path):
    cases = _bad(tmp_path, poses16)
    outs = [tmp_path / f"out_{name.replace(' ', '_')}.npz" for name, *_ in cases]
    runs = [(f"ckpt_path={ckpt}", f"input={tmp_path / inp}", f"output={out}", *extra)
            for (_, inp, extra, _), out in zip(cases, outs)]  # fmt: skip
    runs.append(
        (
            f"ckpt_path={tmp_path / 'ok.npy'}",
            f"input={tmp_path / 'ok.npy'}",
            f"output={tmp_path / 'x.npz'}",
            f"image_width={W}",
            f"image_height={H}",
        )
    )
    with ThreadPoolExecutor(4) as pool:  # independent processes: run them side by side
        results = list(pool.map(lambda args: cli("predict", *args), runs))
    cases.append(("not a checkpoint", "", [], "not a readable checkpoint"))
    outs.append(tmp_path / "x.npz")
    for (name, _, _, message), out, r in zip(cases, outs, results):
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (name, r.stderr[-1500:])
        assert lines[0].startswith("error: ") and message in lines[0], (name, lines[0])
        assert not out.exists(), name
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_read_keypoints_takes_coco_annotation_visibility_as_presence(tmp_path, poses16):
    coco = coco_from_16(poses16[:2])
    anns = []
    for i, p in enumerate(coco):
        kp = np.concatenate([p, np.full((17, 1), 2.0)], 1)
        kp[0, 2] = 0  # nose not labelled
        anns.append({"image_id": i, "keypoints": kp.ravel().tolist()})
    doc = {
        "images": [{"id": 0, "width": 640, "height": 480}, {"id": 1, "width": 320, "height": 240}],
        "annotations": anns,
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    kp = read_keypoints(tmp_path / "a.json")
    assert kp.kind == "coco annotations" and kp.layout == "coco"
    assert kp.score[:, 0].tolist() == [0, 0] and (kp.score[:, 1:] == 1).all()
    assert kp.image_size.tolist() == [[640, 480], [320, 240]]
    assert (kp.track == -1).all()


# --- the Python API and Trainer.predict ------------------------------------------------------


def test_lifter_api_lifts_in_three_lines(ckpt, poses16):
    lifter = Lifter.from_checkpoint(ckpt, device="cpu")
    pose3d = lifter.lift(coco_from_16(poses16), image_size=(W, H), layout="coco")
    assert pose3d.shape == (40, 16, 3) and np.isfinite(pose3d).all()
    scored = np.concatenate([coco_from_16(poses16), np.ones((40, 17, 1))], -1)
    scored[:, 11, 2] = 0.0  # a hip missing in every frame: nothing to fill from
    with pytest.raises(DataError, match="no pose has all 16 joints"):
        lifter.lift(scored, image_size=(W, H))
    scored[:20, 11, 2] = 1.0
    scored[5:, 9, 2] = 0.0  # wrist lost after frame 5: filled from frame 4
    assert np.isfinite(lifter.lift(scored, (W, H))).all()


def test_footage_filmed_sideways_is_lifted_upright_in_its_own_camera_frame(ckpt, poses16,
                                                                           tmp_path):
    """A track filmed with the camera rolled by 90 degrees: the lifter sees it turned upright and
    the 3D comes back in the sideways camera's frame (the upright lift, rolled)."""
    from poseaug_pl.geometry.camera import roll_points

    centre = np.array([W / 2, H / 2])
    sideways = (poses16 - centre) @ np.array([[0.0, 1.0], [-1.0, 0.0]]) + centre  # x,y -> -y,x
    np.save(tmp_path / "kp.npy", sideways)
    r = cli("predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'kp.npy'}",
            f"output={tmp_path / 'out.npz'}", f"image_width={W}", f"image_height={H}",
            "flip=false")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert ("upright  the input is filmed sideways or upside down: lifted turned upright "
            "(-90 degrees") in r.stdout
    lifter = Lifter.from_checkpoint(ckpt, flip=False)
    upright = lifter.lift(poses16, (W, H), layout="poseaug16")
    rolled = roll_points(torch.as_tensor(upright), np.pi / 2).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["pose3d"], rolled, atol=1e-5)
    np.testing.assert_allclose(lifter.lift(sideways, (W, H), layout="poseaug16"), rolled,
                               atol=1e-5)  # fmt: skip
    given = lifter.lift(sideways, (W, H), layout="poseaug16", upright=False)
    assert np.abs(given - rolled).max() > 1e-3  # as given, the lifter sees a sideways person


def test_lift_on_invalid_raise_or_nan(ckpt, poses16):
    lifter = Lifter.from_checkpoint(ckpt)
    scored = np.concatenate([poses16, np.ones((40, 16, 1))], -1)
    scored[1:, 3, 2] = 0.0  # joint 3 seen in frame 0 only: filled everywhere
    assert np.isfinite(lifter.lift(scored, (W, H), layout="poseaug16")).all()
    holes = np.where(np.arange(40)[:, None, None] == 7, np.nan, poses16)  # frame 7 lost
    with pytest.raises(DataError, match="1 of 40 poses"):
        lifter.lift(holes, (W, H), layout="poseaug16", fill=False)
    rows = lifter.lift(holes, (W, H), layout="poseaug16", fill=False, on_invalid="nan")
    assert np.isnan(rows[7]).all() and np.isfinite(np.delete(rows, 7, 0)).all()


def test_trainer_predict_returns_the_estimators_output(ckpt, poses16):
    model = PoseAugModule.load_from_checkpoint(ckpt, map_location="cpu")
    x = torch.randn(10, 16, 2) * 0.3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    out = torch.cat(trainer.predict(model, loader))
    model.eval()
    torch.testing.assert_close(out, model.estimator(x))


def test_h36m17_with_the_legs_out_of_frame_is_still_h36m17(poses16):
    h17 = np.insert(poses16, 9, (poses16[:, 8] + poses16[:, 9]) / 2, axis=1)
    ok = np.ones(h17.shape[:2], bool)
    ok[12:, [2, 3, 5, 6]] = False  # knees and feet leave the frame: pelvis and hips remain
    assert detect_layout(h17, ok) == "h36m17"
    check_layout(h17, ok, "h36m17")


def test_a_zero_score_is_missing_even_with_min_score_0(ckpt, poses16):
    holes = poses16.copy()
    holes[5, 12] = np.nan  # read as score 0 at pixel (0, 0)
    out = Lifter.from_checkpoint(ckpt).lift(holes, (W, H), layout="poseaug16", min_score=0.0)
    ref = Lifter.from_checkpoint(ckpt).lift(holes, (W, H), layout="poseaug16", min_score=0.3)
    np.testing.assert_allclose(out, ref)  # filled from frames 4 and 6 both times


def test_lift_with_nan_returns_nan_rows_even_when_no_pose_is_complete(ckpt, poses16):
    one = poses16[:1].copy()
    one[0, 12] = np.nan
    rows = Lifter.from_checkpoint(ckpt).lift(one, (W, H), layout="poseaug16", on_invalid="nan")
    assert rows.shape == (1, 16, 3) and np.isnan(rows).all()


def test_videos_without_metadata_take_the_command_line_size(ckpt, poses16, tmp_path):
    coco = coco_from_16(poses16)
    videos = {"a": {"custom": [coco[:20]]}, "b": {"custom": [coco[20:]]}}
    meta = {
        "layout_name": "coco",
        "num_joints": 17,
        "video_metadata": {"a": {"w": 1920, "h": 1080}},
    }
    np.savez(tmp_path / "vp.npz", positions_2d=videos, metadata=meta)
    out = tmp_path / "out.npz"
    r = cli("predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'vp.npz'}", f"output={out}",
            "image_width=1000", "image_height=1000", "flip=false")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(out)["pose2d"]
    hips = (coco[:, 11] + coco[:, 12]) / 2
    np.testing.assert_allclose(got[0, 0], hips[0] / 1920 * 2 - [1, 1080 / 1920], atol=1e-5)
    np.testing.assert_allclose(got[25, 0], hips[25] / 1000 * 2 - [1, 1], atol=1e-5)
