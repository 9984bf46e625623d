"""``python -m poseaug_pl.prepare_data``: load (and cache) a dataset and summarise every split.

Examples::

    python -m poseaug_pl.prepare_data                      # embedded synthetic data
    python -m poseaug_pl.prepare_data data=h36m data.root=/data/h36m data.keypoints=sh_pt_mpii
    python -m poseaug_pl.prepare_data figures=outputs/figures   # PNG grids of sample poses
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from poseaug_pl.cli import entry_point
from poseaug_pl.data import PoseDataModule
from poseaug_pl.evaluation.report import format_table


def prepare(cfg: DictConfig) -> PoseDataModule:
    """Instantiate ``cfg.data``, load every split, print the summary, draw figures if asked."""
    t0 = time.perf_counter()
    dm: PoseDataModule = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    took = time.perf_counter() - t0
    print(format_table(dm.summary()))
    print(f"loaded in {took:.1f}s")
    if cfg.figures:
        from poseaug_pl.evaluation import viz

        out = Path(cfg.figures)
        sets = {"train": dm.train_set, **dm.test_sets}
        gen = torch.Generator().manual_seed(int(cfg.seed))
        for name, s in sets.items():
            idx = torch.randperm(len(s), generator=gen)[: cfg.num_figure_poses]
            titles = [f"{s.subjects[s.subject[i]]} {s.actions[s.action[i]]}" for i in idx.tolist()]
            fig = viz.pose_grid(s.pose3d[idx], s.pose2d[idx], titles)
            print(f"figure: {viz.save_figure(fig, out / f'{name}.png')}")
    return dm


main = entry_point("prepare_data", prepare)


if __name__ == "__main__":
    main()
