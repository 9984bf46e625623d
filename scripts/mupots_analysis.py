"""Figures of the MuPoTS-3D analysis (docs/experiments/2026-12-07-mupots3d.md): where the error of
Human3.6M-trained lifters lies on the development half, and what the training pairs cover.

    python scripts/mupots_analysis.py --out docs/figures/mupots \\
        --ablation before=outputs/abl_before after=outputs/abl_after \\
        --sensitivity outputs/camsens.json \\
        --coverage outputs/abl_before/seed0/augmentor/checkpoints/last.ckpt ../shared/data/h36m \\
            outputs/mupots_dev.npz

* ``per_sequence.png`` / ``per_joint.png``: MPJPE of control, Variant A and PoseAug on the set
  ``--set`` (``mupots_dev``) per sequence and per joint, mean over the seeds of each ablation
  folder (``seed<k>/<run>/metrics.json``);
* ``lens_sensitivity.png``: `camera_sensitivity.py`'s MPJPE of each checkpoint per re-filmed variant;
* ``coverage.png``: 2D height (normalised units) and root depth of Human3.6M's training pairs, of
  the augmentor's pairs (as the released code films them, and re-filmed with the default
  ``model.refilm`` ranges) and of the MuPoTS-3D set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

RUNS = ("control", "variant_a", "poseaug")
JOINTS = ("pelvis", "r hip", "r knee", "r ankle", "l hip", "l knee", "l ankle", "spine", "thorax",
          "head", "l shoulder", "l elbow", "l wrist", "r shoulder", "r elbow", "r wrist")  # fmt: skip


def seed_means(folder: Path, name: str) -> dict:
    """``{run: {per_sequence: {seq: mm}, per_joint: [mm]}}`` averaged over the seeds."""
    out = {}
    for run in RUNS:
        ms = [json.loads(p.read_text())[name] for p in sorted(folder.glob(f"seed*/{run}/metrics.json"))]
        ms = [m for m in ms if "per_sequence" in m]
        if not ms:
            continue
        seqs = list(ms[0]["per_sequence"])
        out[run] = {"per_sequence": {s: float(np.mean([m["per_sequence"][s]["mpjpe"] for m in ms]))
                                     for s in seqs},
                    "per_joint": np.mean([m["per_joint"] for m in ms], 0).tolist(),
                    "seeds": len(ms)}  # fmt: skip
    return out


def bars(ax, groups: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, groups, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.3 * max(max(v) for v in series.values()))
    ax.legend(fontsize=7, loc="upper center", ncol=3)
    ax.grid(axis="y", alpha=0.3)


def coverage(ckpt: str, h36m_root: str, set_path: str, n: int = 20000):
    """2D heights and root depths of the training pairs, the augmented pairs (source camera and
    re-filmed) and the set."""
    import torch

    from poseaug_pl.data.cross import load_cross_set
    from poseaug_pl.data.datamodule import H36MDataModule
    from poseaug_pl.models.ckpt import load_module
    from poseaug_pl.training.pairs import PairTransforms

    torch.manual_seed(0)
    dm = H36MDataModule(root=h36m_root, stride=10, wild_sequences=0)
    dm.setup("fit")
    train = dm.train_set
    idx = torch.randperm(len(train))[:n]
    x3, x2 = train.pose3d[idx], train.pose2d[idx]
    cam = train.cam[idx]
    model = load_module(ckpt).eval()
    with torch.no_grad():
        out = model.augmentor(x3, cam)
    refilm = PairTransforms(False, None, {"pairs": "augmented", "focal": [1.0, 2.5],
                                           "depth": [2.0, 7.0]})  # fmt: skip
    r2, r3, _ = refilm.refilm(out["rt"], cam)
    target = load_cross_set(set_path)

    def inside(p2):
        return (p2.abs() <= 1).flatten(1).all(1)

    def stats(p2, p3):
        keep = inside(p2)
        h = (p2[..., 1].amax(1) - p2[..., 1].amin(1))[keep]
        return h.numpy(), p3[keep][:, 0, 2].numpy()

    return {"Human3.6M training pairs": stats(x2, x3),
            "augmented (source camera)": stats(out["rt_2d"], out["rt"]),
            "augmented, re-filmed": stats(r2, r3),
            "MuPoTS-3D development half": stats(target.pose2d, target.pose3d)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", default="mupots_dev")
    ap.add_argument("--ablation", nargs="*", default=[], help="label=ablation OUT folder")
    ap.add_argument("--sensitivity", help="camera_sensitivity.py --json output")
    ap.add_argument("--coverage", nargs=3, metavar=("AUGMENTOR_CKPT", "H36M_ROOT", "SET_NPZ"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ablations = {}
    for item in args.ablation:
        label, folder = item.split("=", 1)
        ablations[label] = seed_means(Path(folder), args.set)
    if ablations:
        for key, groups in (("per_sequence", None), ("per_joint", JOINTS)):
            fig, ax = plt.subplots(figsize=(11, 4))
            series = {}
            for label, runs in ablations.items():
                for run, m in runs.items():
                    values = m[key]
                    groups = groups or list(values)
                    series[f"{label} {run} ({m['seeds']} seeds)"] = (
                        [values[g] for g in groups] if isinstance(values, dict) else values
                    )
            bars(ax, list(groups), series, f"MPJPE on {args.set} (mm)")
            fig.tight_layout()
            fig.savefig(out / f"{key}.png", dpi=90)
            plt.close(fig)
            print(out / f"{key}.png")
    if args.sensitivity:
        data = json.loads(Path(args.sensitivity).read_text())
        variants = list(next(iter(data.values())))
        fig, ax = plt.subplots(figsize=(11, 4))
        bars(ax, variants, {c.removeprefix("outputs/"): [r[v]["mpjpe"] for v in variants]
                            for c, r in data.items()}, "MPJPE (mm)")  # fmt: skip
        fig.tight_layout()
        fig.savefig(out / "lens_sensitivity.png", dpi=90)
        plt.close(fig)
        print(out / "lens_sensitivity.png")
    if args.coverage:
        dist = coverage(*args.coverage)
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for label, (h, z) in dist.items():
            axes[0].hist(h, bins=60, range=(0, 1.6), density=True, histtype="step", label=label)
            axes[1].hist(z, bins=60, range=(0, 10), density=True, histtype="step", label=label)
        axes[0].set_xlabel("2D height of the person (normalised units)")
        axes[1].set_xlabel("root depth (m)")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "coverage.png", dpi=90)
        plt.close(fig)
        print(out / "coverage.png")
        for label, (h, z) in dist.items():
            print(f"{label}: 2D height p5/50/95 {np.percentile(h, 5):.2f}/{np.median(h):.2f}/"
                  f"{np.percentile(h, 95):.2f}; depth p5/50/95 {np.percentile(z, 5):.1f}/"
                  f"{np.median(z):.1f}/{np.percentile(z, 95):.1f} m; n {len(h)}")  # fmt: skip


if __name__ == "__main__":
    main()
