"""Throughput of ``python -m poseaug_pl.predict`` on 10,000 COCO-layout poses (docs/BENCHMARKS.md).

    python benchmarks/predict.py [--ckpt CKPT] [--poses 10000] [--repeats 3]

Without ``--ckpt`` a VideoPose3D estimator at the paper's width (1024 channels, untrained: the
arithmetic is the same) is written to a temporary checkpoint. The input is one track of
synthetic people in COCO's layout with scores, 2% of the points below ``min_score`` (filled from
neighbouring frames). Reports the estimator's poses per second (as the command prints it) and
the whole command's wall time, Python start-up, reading and writing included.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from poseaug_pl.data import generate
from poseaug_pl.data.layouts import coco_like
from poseaug_pl.geometry.camera import image_coordinates


def coco_input(n: int, path: Path) -> None:
    """Write (n, 17, 3) COCO pixels and scores of synthetic people (1920 x 1080 frames)."""
    data = generate(sequences=max(1, n // 800 + 1), frames=200, seed=0)
    p16 = image_coordinates(data.pose2d[:n].double(), 1920, 1080).numpy()
    kp = coco_like(p16, face_px=6.0)
    score = np.random.default_rng(0).uniform(0.5, 1.0, kp.shape[:2])
    score[np.random.default_rng(1).random(score.shape) < 0.02] = 0.1
    np.save(path, np.concatenate([kp, score[..., None]], -1).astype(np.float32))


def paper_width_checkpoint(path: Path) -> None:
    """A checkpoint holding an untrained 1024-channel VideoPose estimator (what predict reads)."""
    from poseaug_pl.models.estimators import VideoPose

    cfg = {"name": "videopose", "channels": 1024}
    state = {f"estimator.{k}": v for k, v in VideoPose(channels=1024).state_dict().items()}
    torch.save({"hyper_parameters": {"estimator": cfg}, "state_dict": state}, path)


def main() -> None:
    """Parse the options, run the command ``--repeats`` times per flip setting, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", help="a train checkpoint (default: untrained 1024-channel VideoPose)")
    ap.add_argument("--poses", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ckpt = Path(args.ckpt) if args.ckpt else tmp / "videopose1024.ckpt"
    if not args.ckpt:
        paper_width_checkpoint(ckpt)
    coco_input(args.poses, tmp / "kp.npy")
    print("| flip | poses | estimator poses/s (median, best) | command wall s (median) |")
    print("| --- | ---: | ---: | ---: |")
    for flip in ("false", "true"):
        rates, walls = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "poseaug_pl.predict", f"ckpt_path={ckpt}",
                                f"input={tmp / 'kp.npy'}", f"output={tmp / 'out.npz'}",
                                "image_width=1920", "image_height=1080", "layout=coco",
                                f"flip={flip}", "device=cpu"],
                               capture_output=True, text=True, check=True)  # fmt: skip
            walls.append(time.perf_counter() - t0)
            rates.append(float(re.search(r"\(([\d,]+) poses/s\)", r.stdout)[1].replace(",", "")))
        print(f"| {flip} | {args.poses:,} | {statistics.median(rates):,.0f}, {max(rates):,.0f} | "
              f"{statistics.median(walls):.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
