"""`predict` on keypoints built from the real Human3.6M S9/S11 data agrees with `evaluate`.

A small estimator is trained on real Human3.6M (every 50th frame). The same S9/S11 frames that
`evaluate` scores are written as a user would have them: the 17-joint Human3.6M layout in a
VideoPose3D custom npz (one video per sequence and camera, pixels), and COCO keypoint
annotations (limbs and hips from the motion capture, the nose from its neck/nose joint, eyes
and ears unlabelled). Skipped without the real data.
"""

import json

import numpy as np
import pytest
import torch

from helpers import cli
from poseaug_pl.data.h36m import TEST_SUBJECTS
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.geometry.camera import h36m_cameras, project_to_2d, world_to_camera

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # a 20-epoch real training (h36m_run)

STRIDE = 50  # as h36m_run (conftest)
#: Human3.6M 32-joint mocap -> the common 17-joint layout (neck/nose at 9).
H36M32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
#: COCO keypoint k taken from mocap joint COCO_FROM_32[k] (-1: unlabelled eye or ear).
COCO_FROM_32 = (14, -1, -1, -1, -1, 17, 25, 18, 26, 19, 27, 6, 1, 7, 2, 8, 3)
#: Extra MPJPE allowed for COCO input over the 17-joint input (measured +0.5 mm: docs/guide.md).
COCO_MARGIN_MM = 5.0


@pytest.fixture(scope="module")
def trained(h36m_run):
    """The small real-data estimator and `evaluate`'s MPJPE of it on S9/S11."""
    return h36m_run["ckpt"], h36m_run["metrics"]["h36m"]["mpjpe"]


@pytest.fixture(scope="module")
def test_frames(h36m):
    """Every 50th frame of every S9/S11 sequence and camera: pixels (32 joints) and 3D targets."""
    pos = np.load(h36m / "data_3d_h36m.npz", allow_pickle=True)["positions_3d"].item()
    rows = []
    for s in TEST_SUBJECTS:
        for a in sorted(pos[s]):
            world = torch.from_numpy(pos[s][a][::STRIDE]).double()
            for c, cam in enumerate(h36m_cameras()[s]):
                xc = world_to_camera(world, torch.from_numpy(cam.rot), torch.from_numpy(cam.trans))
                px = project_to_2d(xc.float(), torch.from_numpy(cam.intrinsics(normalised=False)))
                target = sk.root_relative(xc.float()[:, list(sk.H36M32_TO_16)])
                rows.append((f"{s} {a} cam{c}", px.numpy(), target, (cam.res_w, cam.res_h)))
    return rows


def mpjpe_mm(out_npz, frames) -> float:
    """MPJPE of predict's output against the targets, in input order."""
    out = np.load(out_npz)
    assert out["valid"].all()
    target = torch.cat([t for _, _, t, _ in frames])
    return sk_mpjpe(torch.from_numpy(out["pose3d"]), target)


def sk_mpjpe(pred, target) -> float:
    return float((pred - target).norm(dim=-1).mean() * 1000)


def test_h36m17_videopose_npz_gives_evaluates_mpjpe(trained, test_frames, tmp_path):
    ckpt, evaluated = trained
    videos = {name: {"custom": [px[:, list(H36M32_TO_17)]]} for name, px, _, _ in test_frames}
    meta = {
        "layout_name": "h36m",
        "num_joints": 17,
        "video_metadata": {name: {"w": w, "h": h} for name, _, _, (w, h) in test_frames},
    }
    np.savez(tmp_path / "h36m17.npz", positions_2d=videos, metadata=meta)
    r = cli("predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'h36m17.npz'}",
            f"output={tmp_path / 'out.npz'}", "flip=false")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "layout h36m17" in r.stdout
    got = mpjpe_mm(tmp_path / "out.npz", test_frames)
    print(f"evaluate {evaluated:.2f} mm, predict (h36m17 npz) {got:.2f} mm")
    assert got == pytest.approx(evaluated, abs=0.05)


def test_coco_annotations_lift_within_the_stated_margin(trained, test_frames, tmp_path):
    ckpt, evaluated = trained
    images, annotations = [], []
    for name, px, _, (w, h) in test_frames:
        for f in range(len(px)):
            image_id = len(images)
            images.append({"id": image_id, "width": w, "height": h, "file_name": f"{name} {f}"})
            kp = np.zeros((17, 3))
            for k, j in enumerate(COCO_FROM_32):
                if j >= 0:
                    kp[k] = (*px[f, j], 2)
            annotations.append({"id": image_id, "image_id": image_id, "category_id": 1,
                                "num_keypoints": 13, "keypoints": kp.ravel().tolist()})  # fmt: skip
    (tmp_path / "coco.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    r = cli("predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'coco.json'}",
            f"output={tmp_path / 'out.npz'}", "flip=false")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "coco annotations" in r.stdout and "layout coco" in r.stdout
    got = mpjpe_mm(tmp_path / "out.npz", test_frames)
    print(f"evaluate {evaluated:.2f} mm, predict (COCO keypoints) {got:.2f} mm")
    assert got < evaluated + COCO_MARGIN_MM
    # named as the wrong layout: one line, exit 2, no output
    r = cli("predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'coco.json'}",
            f"output={tmp_path / 'wrong.npz'}", "layout=h36m17")  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().startswith("error: layout=h36m17 but")
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "wrong.npz").exists()
