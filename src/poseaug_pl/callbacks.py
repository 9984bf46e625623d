"""Lightning callbacks that make the augmentor visible."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from . import viz


class AugmentationFigures(L.Callback):
    """Every ``every_n_epochs`` epochs, draw a fixed set of training poses and their augmentations.

    Writes ``<dirpath>/augmentations_epoch<E>.png`` (Fig. S2 of the supplement: x, X, the BA
    and BL steps, x', X') and, when a W&B logger is attached, logs it as ``train/aug/figure``.

    Args:
        dirpath: folder of the PNG files.
        every_n_epochs: drawing interval (epochs); num_poses: rows; seed: choice of the poses.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 1, num_poses: int = 4, seed: int = 0):
        self.dirpath, self.every, self.num, self.seed = (
            Path(dirpath),
            every_n_epochs,
            num_poses,
            seed,
        )

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Draw (rank zero only) when the epoch is due and the run uses the augmentor."""
        if not pl_module.hparams.get("augment", False):
            return
        if (trainer.current_epoch + 1) % self.every:
            return
        data = trainer.datamodule.train_set
        pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed))
        idx = pick[: self.num].to(data.pose3d.device)
        was_training = pl_module.augmentor.training
        pl_module.augmentor.eval()
        with torch.no_grad():
            out = pl_module.augmentor(data.pose3d[idx], data.cam[idx])
        pl_module.augmentor.train(was_training)
        fig = viz.augmentation_figure(data.pose3d[idx], data.pose2d[idx], out)
        path = viz.save_figure_keep(
            fig, self.dirpath / f"augmentations_epoch{trainer.current_epoch:03d}.png"
        )
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_image("train/aug/figure", [str(path)], step=trainer.global_step)
        viz.close(fig)
