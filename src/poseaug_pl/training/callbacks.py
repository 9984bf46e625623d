"""Lightning callbacks that make the augmentor visible."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from poseaug_pl.evaluation import viz
from poseaug_pl.evaluation.report import plausibility_table
from poseaug_pl.geometry.plausibility import augmentation_statistics
from poseaug_pl.models import augmentation_parameters
from poseaug_pl.models.batchnorm import as_in_training
from poseaug_pl.training.resume import logged_step
from poseaug_pl.utils import write_text_atomic

log = logging.getLogger(__name__)


def _augmenting(pl_module: L.LightningModule) -> bool:
    """Whether the module trains its augmentor this epoch (``uses_augmentor()`` where it has
    one, else ``hparams.augment``): nothing to draw or report in a baseline or a real finish."""
    uses = getattr(pl_module, "uses_augmentor", None)
    return uses() if callable(uses) else bool(pl_module.hparams.get("augment", False))


def augment_as_trained(augmentor: torch.nn.Module, pose3d: torch.Tensor, cam: torch.Tensor):
    """The augmentor's output as the estimator sees it during training: training mode (BatchNorm
    batch statistics), its running statistics left unchanged, its mode restored after."""
    with as_in_training(augmentor):
        return augmentor(pose3d, cam)


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
        if not _augmenting(pl_module) or (trainer.current_epoch + 1) % self.every:
            return
        data = trainer.datamodule.train_set
        pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed))
        idx = pick[: self.num].to(data.pose3d.device)
        with torch.no_grad():
            out = augment_as_trained(pl_module.augmentor, data.pose3d[idx], data.cam[idx])
        fig = viz.augmentation_figure(data.pose3d[idx], data.pose2d[idx], out)
        path = viz.save_figure_keep(
            fig, self.dirpath / f"augmentations_epoch{trainer.current_epoch:03d}.png"
        )
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_image("train/aug/figure", [str(path)], step=logged_step(trainer))
        viz.close(fig)


class AugmentationHistograms(L.Callback):
    """Distributions of the augmentation parameters, every ``every_n_batches`` training batches.

    Takes the module's `last_augmentation` (kept on the device; the copy to the host happens
    only at the interval) and logs, per parameter of `augmentation_parameters` (bone angle
    change, bone-length ratio, rotation angle, root depth):

    - ``train/aug/hist/<name>``: a histogram (W&B, TensorBoard);
    - ``train/aug/params/<name>_mean``: its mean (every logger, CSV included);
    - at each epoch end, ``<dirpath>/aug_params_epoch<E>.png`` with the epoch's histograms.

    Args:
        dirpath: folder of the PNG files.
        every_n_batches: interval in training batches (not optimiser steps).
        bins: histogram bins.
    """

    def __init__(self, dirpath: str, every_n_batches: int = 50, bins: int = 48):
        if every_n_batches < 1:
            raise ValueError(f"every_n_batches must be >= 1, got {every_n_batches}")
        self.dirpath, self.every, self.bins = Path(dirpath), every_n_batches, bins
        self._batches = 0
        self._epoch: list[dict[str, np.ndarray]] = []

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """At the interval, copy the latest parameters to the host and log them."""
        self._batches += 1
        aug = getattr(pl_module, "last_augmentation", None)
        if self._batches % self.every or aug is None or not _augmenting(pl_module):
            return
        params = {k: v.float().cpu().numpy() for k, v in augmentation_parameters(aug).items()}
        self._epoch.append(params)
        summary = {f"train/aug/params/{k}_mean": float(v.mean()) for k, v in params.items()}
        step = logged_step(trainer)
        for logger in trainer.loggers:
            kind = type(logger).__name__
            if kind == "WandbLogger":
                import wandb

                hists = {f"train/aug/hist/{k}": wandb.Histogram(v, num_bins=self.bins)
                         for k, v in params.items()}  # fmt: skip
                logger.log_metrics({**summary, **hists}, step=step)
                continue
            logger.log_metrics(summary, step=step)
            if kind == "TensorBoardLogger":
                for k, v in params.items():
                    logger.experiment.add_histogram(f"train/aug/hist/{k}", v, step)

    @rank_zero_only
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Write the epoch's histograms as a PNG."""
        if not self._epoch:
            return
        params = {k: np.concatenate([p[k] for p in self._epoch]) for k in self._epoch[0]}
        self._epoch.clear()
        epoch = trainer.current_epoch
        fig = viz.parameter_histograms(params, title=f"augmentation parameters, epoch {epoch}")
        viz.save_figure(fig, self.dirpath / f"aug_params_epoch{epoch:03d}.png")


class RankConsistency(L.Callback):
    """Under DDP, check at the end of training that every rank holds the same weights.

    Gathers each network's flattened parameters from all ranks; rank 0 writes ``path`` (JSON:
    network -> largest absolute difference to rank 0's parameters) and warns when any is not
    zero. Does nothing in a single process.

    Args:
        path: the JSON report, e.g. ``<run>/ddp_check.json``.
    """

    NETWORKS = ("augmentor", "d3d", "d2d", "estimator")

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Gather and compare (every rank takes part in the collective)."""
        if trainer.world_size < 2:
            return
        report = {}
        for name in self.NETWORKS:
            params = getattr(pl_module, name).parameters()
            flat = torch.cat([p.detach().flatten() for p in params])
            gathered = trainer.strategy.all_gather(flat)  # (world, P)
            report[name] = float((gathered - gathered[:1]).abs().max())
        if trainer.is_global_zero:
            write_text_atomic(self.path, json.dumps({"world_size": trainer.world_size, **report}))
            if any(report.values()):
                log.warning("parameters differ across ranks: %s", report)


class PlausibilityReport(L.Callback):
    """Once per epoch, the augmentations' plausibility statistics beside real data's.

    Augments a fixed sample of training poses the way the estimator sees them (augmentor in
    training mode, its BatchNorm running statistics untouched, no gradients), computes
    `plausibility.augmentation_statistics`, prints the table, logs every number to every
    logger as ``aug/plaus/<stat>`` (augmented) and ``aug/plaus/real_<stat>``, and appends the
    epoch's record to ``path`` (JSON lines: ``{"epoch", "step", "real", "augmented"}``).

    Args:
        path: the JSON-lines file, e.g. ``<run>/plausibility.jsonl``.
        num_poses: size of the sample (fixed across epochs); seed: its choice.
        every_n_epochs: interval.
    """

    def __init__(self, path: str, num_poses: int = 4096, seed: int = 0, every_n_epochs: int = 1):
        if num_poses < 2 or every_n_epochs < 1:
            raise ValueError("num_poses must be >= 2 and every_n_epochs >= 1")
        self.path, self.num, self.seed, self.every = Path(path), num_poses, seed, every_n_epochs

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Compute, print, log and record (rank zero; runs that use the augmentor only)."""
        if not _augmenting(pl_module) or (trainer.current_epoch + 1) % self.every:
            return
        data = trainer.datamodule.train_set
        gen = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(data), generator=gen)[: self.num].to(data.pose3d.device)
        x3, x2, cam = data.pose3d[idx], data.pose2d[idx], data.cam[idx]
        with torch.no_grad():
            out = augment_as_trained(pl_module.augmentor, x3, cam)
            stats = augmentation_statistics(out, x2, x3, pl_module.d3d, pl_module.d2d)
        epoch = trainer.current_epoch
        print(plausibility_table(stats, f"augmentation plausibility, epoch {epoch} "
                                        f"({len(idx)} training poses):"), flush=True)  # fmt: skip
        metrics = {f"aug/plaus/{k}": v for k, v in stats["augmented"].items()}
        metrics.update({f"aug/plaus/real_{k}": v for k, v in stats["real"].items()})
        last_batch = max(0, logged_step(trainer) - 1)  # the epoch it describes ends there
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=last_batch)
        # appended by rewriting the file atomically: a full disk never truncates earlier epochs
        record = json.dumps({"epoch": epoch, "step": pl_module.augmentor_steps, **stats}) + "\n"
        earlier = self.path.read_text() if self.path.is_file() else ""
        write_text_atomic(self.path, earlier + record)


class TimeEstimate(L.Callback):
    """How long the run will take, from its own pace: one line after the first epoch this
    process trains (``time: the first epoch took 21 s; the 24 epochs of this run: about 8
    min``), then one at each quarter of the run with the time left at the pace so far (a busy
    machine's pace changes)."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._first: int | None = None
        self._quarters: set[int] = set()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        if self._start is None:
            self._start, self._first = time.perf_counter(), trainer.current_epoch

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        if self._start is None or trainer.sanity_checking or not trainer.max_epochs:
            return
        done = trainer.current_epoch + 1 - self._first  # epochs this process trained
        todo = trainer.max_epochs - self._first
        took = time.perf_counter() - self._start
        left = took / done * (todo - done)
        quarter = 4 * done // max(todo, 1)
        if done == 1:
            print(f"\ntime: the first epoch took {took:.1f} s; the {todo} epochs of this run: "
                  f"about {_duration(took * todo)}", flush=True)  # fmt: skip
        elif 0 < quarter < 4 and quarter not in self._quarters and todo >= 8:
            print(f"\ntime: {done} of {todo} epochs in {_duration(took)}; about "
                  f"{_duration(left)} left", flush=True)  # fmt: skip
        self._quarters.add(quarter)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
