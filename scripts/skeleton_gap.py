"""How far a cross-dataset set's skeleton is from Human3.6M's, before any estimator is involved.

    python scripts/skeleton_gap.py H36M_ROOT CROSS_NPZ [--subjects S1,S5,S6,S7,S8] [--stride 10]
                                   [--ckpt CKPT]

Prints, bone by bone, the mean length in the Human3.6M subjects and in the cross set (PoseAug's
test layout, metres), the pelvis's distance from the midpoint of the hips (zero in Human3.6M,
whose pelvis is defined as that midpoint), and a floor: the MPJPE of the cross set's own poses
rebuilt with every bone direction exact but Human3.6M's mean bone lengths. An estimator that
keeps Human3.6M's proportions, whatever the 2D shows, cannot score below that floor.

Then the cross set's joint placement in the units of ``model.definition_jitter`` (median per
pose, relative to Human3.6M's means) beside that setting's default ranges, to tell whether the
jitter covers the target set.

With ``--ckpt CKPT``, last, how much the placement costs that checkpoint's estimator: it lifts
the cross set from its own 2D and from 2D re-projected with the hips, the head and the shoulders
placed as Human3.6M places them (the targets unchanged), and prints the errors of the limb joints
and of the others. What the limb joints gain is error the estimator makes because it reads
their depth from joints another dataset defines differently.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from poseaug_pl.data.cross import load_cross_set
from poseaug_pl.data.h36m import load_h36m
from poseaug_pl.evaluation.report import format_table
from poseaug_pl.geometry import skeleton as sk

SHIFTS = ("hip_drop", "hip_forward")
CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "poseaug.yaml"


def mean_placement(poses: torch.Tensor) -> dict[str, torch.Tensor]:
    """`skeleton.joint_placement` of (N, 16, 3) poses, averaged over the poses."""
    return {k: v.mean() for k, v in sk.joint_placement(poses).items()}


def definition_factors(reference: torch.Tensor, cross: torch.Tensor) -> dict[str, float]:
    """The cross set's median joint placement as ``definition_jitter`` factors of the
    reference's means: ratios for ``hip_width``, ``head``, ``clavicle``; for the hip shifts the
    difference in metres (Human3.6M's are about zero)."""
    ref = mean_placement(reference)
    out = {}
    for key, value in sk.joint_placement(cross).items():
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
        return (p[:, 0] - p[:, list(sk.HIPS)].mean(1)).norm(dim=-1).mean() * 1000

    return {
        "lengths": torch.stack([ref_len, sk.bone_lengths(cross).mean(0)]) * 1000,
        "pelvis_offset": torch.stack([offset(reference), offset(cross)]),
        "floor": floor,
    }


def as_reference(cross: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """``cross`` (N, 16, 3) root-relative poses with their hips, head and shoulders moved to
    the reference's mean placement (`skeleton.joint_placement`), in three ways:
    ``hips``, ``head and shoulders``, ``all``."""
    ref = mean_placement(reference)
    own = sk.joint_placement(cross)
    w = ref["hip_width"] / own["hip_width"]  # scale first, then undo the (scaled) shifts
    hips = {"hip_width": w, "hip_drop": ref["hip_drop"] - w * own["hip_drop"],
            "hip_forward": ref["hip_forward"] - w * own["hip_forward"]}  # fmt: skip
    upper = {"head": ref["head"] / own["head"], "clavicle": ref["clavicle"] / own["clavicle"]}
    keep = {"hip_width": 1.0, "hip_drop": 0.0, "hip_forward": 0.0, "head": 1.0, "clavicle": 1.0}

    def moved(factors):
        f = {**keep, **factors}
        return sk.redefine_joints(cross, f["hip_width"], f["hip_drop"], f["head"],
                                  f["clavicle"], hip_forward=f["hip_forward"])  # fmt: skip

    return {"hips": moved(hips), "head and shoulders": moved(upper), "all": moved(hips | upper)}


def probe(ckpt: str, cross, reference: torch.Tensor) -> list[dict]:
    """Lift the cross set with a checkpoint's estimator (flip averaging, as ``evaluate``) from
    its own 2D and from 2D re-projected (through a pinhole fitted per pose) with the joints
    placed as the reference places them; score every variant against the cross set's own
    targets. Rows: MPJPE, limb-joint and other-joint errors in mm."""
    from poseaug_pl.geometry.camera import fit_pinhole, project_to_2d
    from poseaug_pl.inference.lifter import Lifter

    lifter = Lifter.from_checkpoint(ckpt, flip=True)
    pose3d = cross.pose3d.double()
    cam = fit_pinhole(pose3d, cross.pose2d.double())
    target = sk.root_relative(pose3d)
    variants = {"as given": None, **as_reference(target, reference.double())}
    limbs = list(sk.LIMB_JOINTS)
    others = [j for j in range(1, sk.NUM_JOINTS) if j not in limbs]
    rows = []
    for name, moved in variants.items():
        x2 = cross.pose2d if moved is None else project_to_2d(moved + pose3d[:, :1], cam)
        err = torch.as_tensor(lifter.lift_normalised(x2.float())).double() - target
        err = err.norm(dim=-1).mean(0) * 1000
        rows.append({"2D input": name, "MPJPE": f"{err.mean():.1f}",
                     "limb joints": f"{err[limbs].mean():.1f}",
                     "other joints": f"{err[others].mean():.1f}"})  # fmt: skip
    return rows


def main(argv=None) -> None:
    """Command-line entry: print the bone table and the floor."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("h36m_root")
    ap.add_argument("cross_npz")
    ap.add_argument("--subjects", default="S1,S5,S6,S7,S8")
    ap.add_argument("--stride", type=int, default=10)
    ap.add_argument("--ckpt", help="also lift the cross set with this checkpoint, from its own "
                    "2D and with the hips, head and shoulders placed as in Human3.6M")  # fmt: skip
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
    if args.ckpt:
        print(f"{args.ckpt} on {cross.name} (mm; targets as given):")
        print(format_table(probe(args.ckpt, cross, sk.root_relative(ref.pose3d))))


if __name__ == "__main__":
    main()
