"""How far a cross-dataset set's skeleton is from Human3.6M's, before any estimator is involved.

    python scripts/skeleton_gap.py H36M_ROOT CROSS_NPZ [--subjects S1,S5,S6,S7,S8] [--stride 10]

Prints, bone by bone, the mean length in the Human3.6M subjects and in the cross set (PoseAug's
test layout, metres), the pelvis's distance from the midpoint of the hips (zero in Human3.6M,
whose pelvis is defined as that midpoint), and a floor: the MPJPE of the cross set's own poses
rebuilt with every bone direction exact but Human3.6M's mean bone lengths. An estimator that
keeps Human3.6M's proportions, whatever the 2D shows, cannot score below that floor.
"""

from __future__ import annotations

import argparse

import torch

from poseaug_pl import skeleton as sk
from poseaug_pl.data.cross import load_cross_set
from poseaug_pl.data.h36m import load_h36m
from poseaug_pl.utils import format_table

HIPS = (sk.JOINT_NAMES.index("r_hip"), sk.JOINT_NAMES.index("l_hip"))


def skeleton_gap(reference: torch.Tensor, cross: torch.Tensor) -> dict:
    """Compare two sets of root-relative poses (N, 16, 3) and (M, 16, 3), metres.

    Returns:
        ``lengths`` (2, 15) mean bone lengths (reference, cross) in mm; ``pelvis_offset`` (2,)
        mean distance of the pelvis from the hips' midpoint in mm; ``floor`` the MPJPE (mm) of
        the cross poses with their directions kept and the reference's mean bone lengths.
    """
    ref_len = sk.bone_lengths(reference).mean(0)
    rebuilt = sk.set_bone_lengths(cross, ref_len.expand(len(cross), -1))
    floor = (rebuilt - cross).norm(dim=-1).mean() * 1000

    def offset(p):
        return (p[:, 0] - p[:, HIPS].mean(1)).norm(dim=-1).mean() * 1000

    return {
        "lengths": torch.stack([ref_len, sk.bone_lengths(cross).mean(0)]) * 1000,
        "pelvis_offset": torch.stack([offset(reference), offset(cross)]),
        "floor": floor,
    }


def main(argv=None) -> None:
    """Command-line entry: print the bone table and the floor."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("h36m_root")
    ap.add_argument("cross_npz")
    ap.add_argument("--subjects", default="S1,S5,S6,S7,S8")
    ap.add_argument("--stride", type=int, default=10)
    args = ap.parse_args(argv)
    ref = load_h36m(args.h36m_root, subjects=args.subjects.split(","), stride=args.stride)
    cross = load_cross_set(args.cross_npz)
    gap = skeleton_gap(sk.root_relative(ref.pose3d), sk.root_relative(cross.pose3d))
    rows = [
        {"bone": n, "Human3.6M mm": f"{a:.0f}", f"{cross.name} mm": f"{b:.0f}",
         "ratio": f"{b / a:.2f}"}
        for n, a, b in zip(sk.BONE_NAMES, *gap["lengths"].tolist())
    ]  # fmt: skip
    print(format_table(rows))
    ref_off, cross_off = gap["pelvis_offset"].tolist()
    print(f"pelvis to hips' midpoint: Human3.6M {ref_off:.0f} mm, {cross.name} {cross_off:.0f} mm")
    print(
        f"floor: {cross.name} with exact bone directions and Human3.6M's mean bone lengths "
        f"scores MPJPE {gap['floor']:.1f} mm"
    )


if __name__ == "__main__":
    main()
