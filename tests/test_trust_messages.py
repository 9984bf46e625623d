"""Files from others are data: every bad input gets one line.

* `predict` says how many poses and keypoints lie outside the image, marks those poses in its
  output (``outside``) and lifts them all the same; `Lifter.lift` warns.
* ``layout=auto`` refuses a guess it cannot make with confidence (noise), with one ``error:``
  line and exit code 2, and still recognises real Human3.6M-17, COCO and PoseAug-16 keypoints.
* A configuration Hydra cannot compose (an unknown experiment, recipe or other group option, a
  misspelt key, an override it cannot parse) ends with one ``error: config: ...`` line naming
  the group's options or the closest key, and exit code 2; ``--help``, ``--cfg`` and multirun
  still work.
"""

import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from helpers import cli
from poseaug_pl import Lifter
from poseaug_pl.data.layouts import LayoutError, coco_like, detect_layout, layout_votes
from poseaug_pl.geometry.camera import (
    h36m_cameras,
    image_coordinates,
    project_to_2d,
    world_to_camera,
)
from poseaug_pl.inference.lifter import OUTSIDE_MARGIN
from poseaug_pl.utils import CONFIG_DIR

W, H = 1000, 800


@pytest.fixture(scope="module")
def poses16():
    """(40, 16, 2) pixel poses of a walking synthetic person (one track), inside a W x H image."""
    from poseaug_pl.data import generate

    data = generate(sequences=1, frames=40, seed=3)
    return image_coordinates(data.pose2d[:40].double(), W, H).numpy()


def one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr[-2000:])
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# --- predict: keypoints outside the image ----------------------------------------------------


def far_outside(poses16):
    """The poses with 3 keypoints far outside the image in poses 3 and 10, one just past the
    edge (within the margin) in pose 20 and one far outside but below min_score in pose 30."""
    kp = np.concatenate([poses16, np.ones((*poses16.shape[:2], 1))], -1)
    kp[3, 12, :2] = (-5 * W, H / 2)  # 5 image widths to the left
    kp[10, 6, 1] = 10 * H  # a foot 10 image heights below
    kp[10, 15, 0] = 3 * W
    kp[20, 3, 1] = H + 0.5 * OUTSIDE_MARGIN * W  # a cut-off foot: not counted
    kp[30, 9, :] = (-9 * W, -9 * H, 0.1)  # a missing point's position: not counted
    return kp


def test_predict_counts_marks_and_still_lifts_poses_with_keypoints_outside_the_image(
    tiny_ckpt, poses16, tmp_path
):
    np.save(tmp_path / "kp.npy", far_outside(poses16))
    out = tmp_path / "out.npz"
    r = cli("predict", f"ckpt_path={tiny_ckpt}", f"input={tmp_path / 'kp.npy'}", f"output={out}",
            f"image_width={W}", f"image_height={H}", "flip=false")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    warning = [line for line in r.stdout.splitlines() if line.startswith("warning")]
    assert len(warning) == 1, r.stdout
    assert "2 of 40 poses have keypoints outside the image (3 keypoints more than 10%" in warning[0]
    assert "outside=true" in warning[0]
    got = np.load(out)
    assert got["outside"].dtype == bool and np.flatnonzero(got["outside"]).tolist() == [3, 10]
    assert got["valid"].all() and np.isfinite(got["pose3d"]).all()  # lifted all the same


def test_predict_inside_the_image_prints_no_warning(tiny_ckpt, poses16, tmp_path):
    np.save(tmp_path / "kp.npy", poses16)
    out = tmp_path / "out.npz"
    r = cli("predict", f"ckpt_path={tiny_ckpt}", f"input={tmp_path / 'kp.npy'}", f"output={out}",
            f"image_width={W}", f"image_height={H}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warning" not in r.stdout and not np.load(out)["outside"].any()


def test_lifter_lift_warns_about_keypoints_outside_the_image(tiny_ckpt, poses16):
    lifter = Lifter.from_checkpoint(tiny_ckpt, flip=False)
    with pytest.warns(UserWarning, match=r"^2 of 40 poses have keypoints outside the image \(3 "):
        out = lifter.lift(far_outside(poses16), (W, H), layout="poseaug16")
    assert np.isfinite(out).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lifter.lift(poses16, (W, H), layout="poseaug16")


# --- layout=auto ------------------------------------------------------------------------------


def noise(joints: int, n: int = 60, seed: int = 0) -> np.ndarray:
    """Uniform random pixels in the W x H image: no body in any order."""
    return np.random.default_rng(seed).uniform(0, 1, (n, joints, 2)) * [W, H]


@pytest.mark.parametrize("joints, advice", [(17, "layout=coco or layout=h36m17"),
                                            (16, "layout=poseaug16")])  # fmt: skip
def test_auto_layout_refuses_noise_with_one_line_and_no_output(tiny_ckpt, tmp_path, joints, advice):
    np.save(tmp_path / "noise.npy", noise(joints))
    out = tmp_path / "out.npz"
    r = cli("predict", f"ckpt_path={tiny_ckpt}", f"input={tmp_path / 'noise.npy'}",
            f"output={out}", f"image_width={W}", f"image_height={H}")  # fmt: skip
    line = one_error_line(r)
    assert f"layout=auto cannot tell the layout of these {joints}-joint keypoints" in line
    assert advice in line and not out.exists()


def test_a_named_layout_is_taken_as_given_even_for_noise(tiny_ckpt, tmp_path):
    np.save(tmp_path / "noise.npy", noise(17))
    r = cli("predict", f"ckpt_path={tiny_ckpt}", f"input={tmp_path / 'noise.npy'}",
            f"output={tmp_path / 'out.npz'}", f"image_width={W}", f"image_height={H}",
            "layout=h36m17")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]


def test_auto_layout_votes_per_pose_and_needs_a_clear_majority(poses16):
    ok17 = np.ones((40, 17), bool)
    h17 = np.insert(poses16, 9, (poses16[:, 8] + poses16[:, 9]) / 2, axis=1)
    assert layout_votes(h17, ok17) == {"coco": 0, "h36m17": 40, "neither": 0}
    assert layout_votes(coco_like(poses16), ok17) == {"coco": 40, "h36m17": 0, "neither": 0}
    for joints in (16, 17):
        votes = layout_votes(noise(joints, 500), np.ones((500, joints), bool))
        assert votes["neither"] > 0.9 * 500, votes
    mixed = np.concatenate([h17[:30], noise(17, 10)])  # 30 of 40 (75%): enough
    assert detect_layout(mixed, ok17) == "h36m17"
    with pytest.raises(LayoutError, match="cannot tell the layout"):
        detect_layout(np.concatenate([h17[:29], noise(17, 11)]), ok17)  # 29 of 40: not enough
    with pytest.raises(LayoutError, match=r"of 40 poses tested: 50% coco, 50% h36m17, 0% neither"):
        detect_layout(np.concatenate([h17[:20], coco_like(poses16[20:])]), ok17)


def test_auto_layout_still_recognises_real_human36m_coco_and_detections(h36m):
    """Human3.6M S9 (every 100th frame, all cameras): the motion capture projected to 17
    joints, COCO keypoints made from it (with and without eyes and ears), and the real
    Stacked Hourglass detections (16 joints)."""
    pos = np.load(h36m / "data_3d_h36m.npz", allow_pickle=True)["positions_3d"].item()["S9"]
    px = []
    for action in sorted(pos):
        world = torch.from_numpy(pos[action][::100]).double()
        for cam in h36m_cameras()["S9"]:
            xc = world_to_camera(world, torch.from_numpy(cam.rot), torch.from_numpy(cam.trans))
            k = torch.from_numpy(cam.intrinsics(normalised=False))
            px.append(project_to_2d(xc.float(), k).numpy().astype(np.float64))
    px = np.concatenate(px)
    h17 = px[:, [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]]
    coco = coco_like(np.delete(h17, 9, axis=1))
    coco[:, 0] = px[:, 14]  # the nose: Human3.6M's neck/nose joint
    ok = np.ones(h17.shape[:2], bool)
    no_face = ok.copy()
    no_face[:, 1:5] = False
    assert detect_layout(h17, ok) == "h36m17"
    assert detect_layout(coco, ok) == "coco"
    assert detect_layout(coco, no_face) == "coco"
    det = np.load(h36m / "data_2d_h36m_sh_pt_mpii.npz", allow_pickle=True)["positions_2d"].item()
    sh = np.concatenate([c[::100] for a in sorted(det["S9"]) for c in det["S9"][a] if len(c)])
    assert detect_layout(sh.astype(np.float64), np.ones(sh.shape[:2], bool)) == "poseaug16"


# --- configurations Hydra cannot compose ------------------------------------------------------

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))

#: (command, overrides, what the one line must say)
CONFIG_ERRORS = [
    ("train", ["experiment=nope"],
     f"error: config: unknown experiment 'nope'; available: {', '.join(EXPERIMENTS)}"),
    ("train", ["experiment=poseaug_h36m_cp"],
     "unknown experiment 'poseaug_h36m_cp' (did you mean poseaug_h36m_cpu?); available: "),
    ("train", ["recipe=nope"],
     "error: config: unknown recipe 'nope'; available: capped, paper, released"),
    ("train", ["model/estimator=nope"],
     "unknown model/estimator 'nope'; available: semgcn, simplebaseline, stgcn, videopose"),
    ("train", ["model.lr.estimatr=1"],
     "error: config: unknown key model.lr.estimatr (did you mean model.lr.estimator?); to add a "
     "new key use +model.lr.estimatr=1"),
    ("train", ["experiment=baseline_synthetic", "modl.lr.estimator=1"],
     "unknown key modl.lr.estimator (did you mean model?)"),
    ("train", ["seed"], "error: config: cannot parse the override 'seed': missing EQUAL"),
    ("train", ["-m", "experiment=nope,baseline_synthetic"], "unknown experiment 'nope'"),
    ("train", ["--cfg", "job", "recipe=nope"], "unknown recipe 'nope'"),
    ("train", ["model.estimator=videopose"],
     "error: config: model.estimator is a config group, not a setting: choose its option with "
     "model/estimator=videopose"),
    ("train", ["paths.output_dir=${nope}"],
     "error: config: cannot resolve an interpolation: Interpolation key 'nope' not found"),
    ("evaluate", ["ckpt_path=x.ckpt", "data=nope"],
     "error: config: unknown data 'nope'; available: from_run, h36m, synthetic, synthetic_bench"),
    ("evaluate", ["ckpt_path=x.ckpt", "save_predictons=true"],
     "unknown key save_predictons (did you mean save_predictions?)"),
    ("predict", ["layuot=coco"], "unknown key layuot (did you mean layout?)"),
    ("export", ["opsett=17"], "unknown key opsett (did you mean opset?)"),
    ("bench", ["recipe=nope"], "unknown recipe 'nope'"),
    ("prepare_data", ["data=nope"], "unknown data 'nope'"),
]  # fmt: skip


def test_configurations_hydra_cannot_compose_end_with_one_line_and_exit_2(tmp_path):
    runs = [(cmd, *args, f"hydra.run.dir={tmp_path / str(i)}", f"hydra.sweep.dir={tmp_path / 'm'}")
            for i, (cmd, args, _) in enumerate(CONFIG_ERRORS)]  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda run: cli(*run), runs))
    for (cmd, args, message), r in zip(CONFIG_ERRORS, results):
        line = one_error_line(r)
        assert message in line, (cmd, args, line)
    assert not any(tmp_path.rglob("*.ckpt"))  # nothing ran


def test_help_cfg_and_multirun_still_work(tmp_path):
    help_ = cli("train", "--help")
    assert help_.returncode == 0 and "recipe: capped, paper, released" in help_.stdout
    cfg = cli("train", "--cfg", "job", "recipe=capped", "experiment=baseline_synthetic")
    assert cfg.returncode == 0 and "recipe: capped" in cfg.stdout, cfg.stderr[-2000:]
    sweep = cli("prepare_data", "-m", "data.frames=10,12", "data.train_sequences=4",
                "data.test_sequences=2", "data.wild_sequences=2",
                f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert sweep.stdout.count("\ntrain ") == 2


def test_hydra_full_error_keeps_hydras_own_report():
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    r = subprocess.run([sys.executable, "-m", "poseaug_pl.train", "recipe=nope"],
                       capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert r.returncode == 1 and "Available options in 'recipe'" in r.stderr
