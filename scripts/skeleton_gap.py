"""How far a cross-dataset set's skeleton is from Human3.6M's, before any estimator is involved.

    python scripts/skeleton_gap.py H36M_ROOT CROSS_NPZ [--subjects S1,S5,S6,S7,S8] [--stride 10]

Prints, bone by bone, the mean length in the Human3.6M subjects and in the cross set (PoseAug's
test layout, metres), the pelvis's distance from the midpoint of the hips (zero in Human3.6M,
whose pelvis is defined as that midpoint), and a floor: the MPJPE of the cross set's own poses
rebuilt with every bone direction exact but Human3.6M's mean bone lengths. An estimator that
keeps Human3.6M's proportions, whatever the 2D shows, cannot score below that floor.

Last, the cross set's joint placement in the units of ``model.definition_jitter`` (median per
pose, relative to Human3.6M's means) beside that setting's default ranges, to tell whether the
jitter covers the target set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from poseaug_pl import skeleton as sk
from poseaug_pl.data.cross import load_cross_set
from poseaug_pl.data.h36m import load_h36m
from poseaug_pl.utils import format_table

HIPS = (sk.JOINT_NAMES.index("r_hip"), sk.JOINT_NAMES.index("l_hip"))
SHIFTS = ("hip_drop", "hip_forward")
CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "poseaug.yaml"


def placement(pose: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-pose placement of the joints `skeleton.redefine_joints` moves, (N, 16, 3) metres.

    Returns:
        ``hip_width`` (N,) mean distance of the hips from the pelvis once the shifts are undone,
        ``hip_drop`` and ``hip_forward`` (N,) metres the hips' midpoint lies below the pelvis
        along the spine axis and in front of it along the forward axis (`skeleton.body_axes`),
        ``head`` and ``clavicle`` (N,) distances of the head and the shoulders from the thorax.
    """
    pelvis, thorax = pose[:, 0], pose[:, sk.THORAX]
    up, _, forward = sk.body_axes(pose)
    hips = pose[:, list(sk.HIPS)] - pelvis[:, None]
    drop, ahead = -(hips.mean(1) * up).sum(-1), (hips.mean(1) * forward).sum(-1)
    lateral = hips + (drop[:, None] * up - ahead[:, None] * forward)[:, None]
    return {
        "hip_width": lateral.norm(dim=-1).mean(1),
        "hip_drop": drop,
        "hip_forward": ahead,
        "head": (pose[:, sk.HEAD] - thorax).norm(dim=-1),
        "clavicle": (pose[:, list(sk.SHOULDERS)] - thorax[:, None]).norm(dim=-1).mean(1),
    }


def definition_factors(reference: torch.Tensor, cross: torch.Tensor) -> dict[str, float]:
    """The cross set's median joint placement as ``definition_jitter`` factors of the
    reference's means: ratios for ``hip_width``, ``head``, ``clavicle``; for the hip shifts the
    difference in metres (Human3.6M's are about zero)."""
    ref = {k: v.mean() for k, v in placement(reference).items()}
    out = {}
    for key, value in placement(cross).items():
        med = value.median()
        out[key] = float(med - ref[key] if key in SHIFTS else med / ref[key])
    return out


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
    ranges = OmegaConf.load(CONF).definition_jitter
    factors = definition_factors(sk.root_relative(ref.pose3d), sk.root_relative(cross.pose3d))
    rows = [
        {"placement": k, cross.name: f"{v:+.3f} m" if k in SHIFTS else f"{v:.2f}x",
         "definition_jitter default": f"[{ranges[k][0]}, {ranges[k][1]}]",
         "covered": "yes" if ranges[k][0] <= v <= ranges[k][1] else "no"}
        for k, v in factors.items()
    ]  # fmt: skip
    print(format_table(rows))


if __name__ == "__main__":
    main()
