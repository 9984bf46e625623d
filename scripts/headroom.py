"""How much of a cross-dataset error better poses and viewpoints could remove at most.

    python scripts/headroom.py CROSS_PRED_NPZ IN_DOMAIN_PRED_NPZ

Both files are `python -m poseaug_pl.evaluate ckpt_path=... save_predictions=true` output
(``predictions/<set>.npz``: ``pred``, ``target`` root-relative mm) of the same checkpoint: one on
the cross set, one on the test set of its training domain. Two datasets place some joints by
their own conventions (HumanEva-I's hips sit 50 mm in front of its pelvis and a third as far
apart as Human3.6M's; its head, thorax, shoulders and spine come from other markers:
docs/experiments/2026-11-26-results-notebook.md, "Where HumanEva-I's error comes from"); the
limb joints (knees, feet, elbows, wrists) mean the same thing in both. Those are the joints
where better poses and viewpoints can show (the others
carry the definitions' offsets; an estimator also reads the limbs' depth partly from them, which
`skeleton_gap.py --ckpt` measures), so the script scores the cross set again with the limb
joints' errors reduced, everything else as predicted (MPJPE, mm):

- ``as predicted``;
- ``in-domain limbs``: each limb joint's error scaled down to the same estimator's mean error on
  that joint in-domain (never up): the cross set's poses and viewpoints made as easy for the
  estimator as its own domain's;
- ``exact limbs``: the limb joints exact.

Prints the per-joint errors beside them. ``in-domain limbs`` is a scale, not a bound: an
augmentation that went below it would have made the cross set's limbs easier for the estimator
than its own domain's. Both files keep their evaluation protocol: ``evaluate`` tests in-domain
sets without flip averaging and cross sets with it (use predictions made the same way if that
matters; on Human3.6M flip averaging makes the limbs worse, docs/experiments/
2026-11-26-results-notebook.md "Where HumanEva-I's error comes from").
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from poseaug_pl.evaluation.metrics import joint_errors
from poseaug_pl.evaluation.report import format_table
from poseaug_pl.geometry import skeleton as sk

LIMB_JOINTS = sk.LIMB_JOINTS


def headroom(cross: tuple, in_domain: tuple, joints=LIMB_JOINTS) -> dict[str, float]:
    """MPJPE of the cross-set predictions as they are and with the errors of ``joints`` removed.

    Args:
        cross: ``(pred, target)`` (N, J, 3) on the cross set, root-relative.
        in_domain: ``(pred, target)`` (M, J, 3) of the same estimator on its own domain.
        joints: the joint indices whose errors augmentation could remove.

    Returns:
        ``as predicted``, ``in-domain limbs`` and ``exact limbs`` MPJPE, in the inputs' units.
        Every joint counts equally, as in MPJPE.
    """
    away = joint_errors(*cross).mean(0)
    home = joint_errors(*in_domain).mean(0)
    idx = torch.as_tensor(joints, dtype=torch.long)
    as_home, exact = away.clone(), away.clone()
    as_home[idx] = torch.minimum(away[idx], home[idx])
    exact[idx] = 0.0
    return {
        "as predicted": float(away.mean()),
        "in-domain limbs": float(as_home.mean()),
        "exact limbs": float(exact.mean()),
    }


def load_predictions(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred``, ``target`` (N, 16, 3) float64 tensors of an evaluate predictions file."""
    with np.load(path) as f:
        if "pred" not in f or "target" not in f:
            raise ValueError(f"{path}: not a predictions file (needs 'pred' and 'target')")
        return tuple(torch.from_numpy(f[k]).double() for k in ("pred", "target"))


def main(argv=None) -> None:
    """Command-line entry: print the per-joint errors and the headroom table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cross", help="predictions/<cross set>.npz")
    ap.add_argument("in_domain", help="predictions/<training domain's test set>.npz")
    args = ap.parse_args(argv)
    cross, home = load_predictions(args.cross), load_predictions(args.in_domain)
    away_j, home_j = joint_errors(*cross).mean(0), joint_errors(*home).mean(0)
    both = zip(sk.JOINT_NAMES, home_j.tolist(), away_j.tolist())
    rows = [
        {"joint": n, "in-domain mm": f"{h:.1f}", "cross mm": f"{a:.1f}",
         "limb": "yes" if j in LIMB_JOINTS else ""}
        for j, (n, h, a) in enumerate(both)
    ]  # fmt: skip
    print(format_table(rows) + "\n")
    result = headroom(cross, home)
    base = result["as predicted"]
    rows = [{"cross set rebuilt": k, "MPJPE mm": f"{v:.1f}", "ratio": f"{v / base:.3f}"}
            for k, v in result.items()]  # fmt: skip
    print(format_table(rows))


if __name__ == "__main__":
    main()
