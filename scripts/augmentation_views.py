"""From how high up do a checkpoint's augmentations look at people, against real Human3.6M?

    python scripts/augmentation_views.py H36M_ROOT CKPT [CKPT ...] [--num 4096] [--stride 10]

For a fixed sample of training poses (S1-S8, every ``stride``-th frame), prints the implied
camera elevation of the real poses and of each checkpoint's augmentations x' (the augmentor in
training mode with frozen BatchNorm statistics, as the estimator sees them): 10th / 50th / 90th
percentile in degrees and the share seen from 30 degrees or more above (``high_view`` of the
plausibility report). The raised-camera test sets (``data.raised_camera``) need such views.
``spread``: the median angle between the rotations of two noise draws for the same pose, how
many views of one pose the augmentor makes (``model.weights.view_diversity`` raises it).
"""

from __future__ import annotations

import argparse
import math

import torch

from poseaug_pl.data.h36m import TRAIN_SUBJECTS, load_h36m
from poseaug_pl.evaluation.report import format_table
from poseaug_pl.geometry.plausibility import HIGH_VIEW_DEG, camera_elevation_deg, high_view_share
from poseaug_pl.geometry.rotation import relative_angle
from poseaug_pl.training.callbacks import augment_as_trained
from poseaug_pl.training.module import PoseAugModule

QUANTILES = (0.1, 0.5, 0.9)


def elevation_row(name: str, pose3d: torch.Tensor, spread=None) -> dict:
    """One table row: the elevation percentiles (degrees), the high-view share (%) and, given
    ``spread`` (B,) radians between two noise draws' rotations, its median in degrees."""
    e = camera_elevation_deg(pose3d)
    row = {"poses": name}
    for q, v in zip(QUANTILES, e.quantile(torch.tensor(QUANTILES)).tolist()):
        row[f"elev p{round(q * 100)}"] = round(v, 1)
    row[f"elev >= {HIGH_VIEW_DEG:g} (%)"] = round(100 * float(high_view_share(e)), 1)
    row["spread p50"] = "-" if spread is None else round(math.degrees(float(spread.median())), 1)
    return row


def main() -> None:
    """Parse the command line, print the table."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("root", help="Human3.6M folder (VideoPose3D layout)")
    p.add_argument("ckpts", nargs="+", help="checkpoints of runs with an augmentor")
    p.add_argument("--num", type=int, default=4096, help="training poses sampled (default 4096)")
    p.add_argument("--stride", type=int, default=10, help="frame stride (default 10)")
    args = p.parse_args()
    data = load_h36m(args.root, subjects=TRAIN_SUBJECTS, stride=args.stride, name="train")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: args.num]
    x3, cam = data.pose3d[idx], data.cam[idx]
    rows = [elevation_row("real (Human3.6M S1-S8)", x3)]
    for path in args.ckpts:
        torch.manual_seed(0)  # the augmentor's noise: the same draw for every checkpoint
        model = PoseAugModule.load_from_checkpoint(path, map_location="cpu")
        with torch.no_grad():
            out = augment_as_trained(model.augmentor, x3, cam)
            again = augment_as_trained(model.augmentor, x3, cam)["rotation_matrix"]
        spread = relative_angle(out["rotation_matrix"], again)
        rows.append(elevation_row(path, out["rt"], spread))
    print(format_table(rows))


if __name__ == "__main__":
    main()
