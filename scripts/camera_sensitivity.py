"""How much of a lifter's cross-dataset error is the camera's: a test set re-filmed through
other lenses and distances (docs/experiments/2026-12-07-mupots3d.md).

For each checkpoint, evaluates (flip TTA, root-relative, mm) on variants of one cross set with
intrinsics (``cam``, fitted or calibrated), every 3D pose exactly projected:

* ``as given``: the set's own 2D;
* ``own lens``: the 3D projected through the set's own pinhole (removes annotation noise);
* ``f x<k>``: the same camera with its focal length multiplied by k (the person appears k times
  larger, perspective unchanged);
* ``H36M lens at Z m``: a Human3.6M-like pinhole (f = 2.29 half-widths, centred) with the person's
  root moved to depth Z along its viewing ray (perspective and size as in Human3.6M's studio);
* ``own lens at Z m``: the set's own pinhole with the person at depth Z;
* ``own lens, centred``: the set's own pinhole with the person's root moved onto the optical
  axis (same depth: the person seen head-on instead of off-axis).

    python scripts/camera_sensitivity.py SET.npz RUN_OR_CKPT [RUN_OR_CKPT ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from poseaug_pl.data.cross import load_cross_set
from poseaug_pl.evaluation.metrics import joint_errors, n_mpjpe, pa_mpjpe
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.geometry.camera import fit_pinhole, project_to_2d
from poseaug_pl.models.ckpt import load_module

H36M_F = 2.29  # Human3.6M's focal length in half-widths (METHOD.md, "Cameras")


def at_depth(pose3d: torch.Tensor, depth: float) -> torch.Tensor:
    """Move each pose along its root's viewing ray so the root sits at ``depth`` metres."""
    root = pose3d[:, :1]
    return pose3d - root + root * (depth / root[..., 2:])


def variants(data) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{label: (pose2d, pose3d)}`` of the re-filmed set."""
    x3 = data.pose3d
    cam = data.cam if data.cam is not None else fit_pinhole(x3, data.pose2d)
    h36m = torch.zeros_like(cam)
    h36m[:, 0] = h36m[:, 1] = H36M_F
    h36m[:, 3] = cam[:, 3]  # the image's vertical centre (aspect kept)
    out = {"as given": (data.pose2d, x3), "own lens": (project_to_2d(x3, cam), x3)}
    for k in (1.5, 2.0):
        c = cam.clone()
        c[:, :2] *= k
        out[f"f x{k}"] = (project_to_2d(x3, c), x3)
    for z in (3.0, 5.0, 7.0):
        moved = at_depth(x3, z)
        out[f"H36M lens at {z:g} m"] = (project_to_2d(moved, h36m), moved)
    for z in (3.0, 5.0):
        moved = at_depth(x3, z)
        out[f"own lens at {z:g} m"] = (project_to_2d(moved, cam), moved)
    centred = x3 - x3[:, :1] * torch.tensor([1.0, 1.0, 0.0])  # root on the optical axis
    out["own lens, centred"] = (project_to_2d(centred, cam), centred)
    return out


@torch.no_grad()
def evaluate(estimator, pose2d, pose3d, subjects, subject) -> dict:
    pred = sk.root_relative(sk.flip_average(estimator, pose2d))
    target = sk.root_relative(pose3d)
    err = joint_errors(pred, target)
    scale = (pred * target).sum((1, 2)) / (pred * pred).sum((1, 2))
    per_seq = {s: float(err[subject == i].mean() * 1000) for i, s in enumerate(subjects)}
    return {"mpjpe": float(err.mean() * 1000), "pa_mpjpe": float(pa_mpjpe(pred, target).mean() * 1000),
            "n_mpjpe": float(n_mpjpe(pred, target).mean() * 1000),
            "scale": float(scale.median()),  # optimal scale of the prediction (1: right size)
            "per_joint": [round(float(v) * 1000, 1) for v in err.mean(0)],
            "per_sequence": per_seq}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", help="cross-set npz (with or without cam)")
    ap.add_argument("ckpts", nargs="+", help="run folders (their checkpoints/last.ckpt) or files")
    ap.add_argument("--json", help="write every number here")
    args = ap.parse_args()
    data = load_cross_set(args.set)
    sets = variants(data)
    results = {}
    for c in args.ckpts:
        path = Path(c) / "checkpoints" / "last.ckpt" if Path(c).is_dir() else Path(c)
        est = load_module(path).estimator.eval()
        results[c] = {k: evaluate(est, x2, x3, data.subjects, data.subject)
                      for k, (x2, x3) in sets.items()}  # fmt: skip
        print(f"\n{c}")
        for k, r in results[c].items():
            print(f"  {k:<18} MPJPE {r['mpjpe']:6.1f}  PA {r['pa_mpjpe']:6.1f}  "
                  f"N {r['n_mpjpe']:6.1f}  scale {r['scale']:.2f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
