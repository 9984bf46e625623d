"""Resuming a run from ``ckpt_path=`` alone, as if it had never stopped.

* `RunCheckpoint`: Lightning's ``ModelCheckpoint`` forgets its best score when a run resumes into
  another folder (a new Hydra run folder); this one copies the best checkpoint over and keeps
  the score, so ``best.ckpt`` and ``metrics.json`` match the uninterrupted run. With
  ``after_augmented_updates`` an augmented run's best checkpoint is chosen only among epochs
  after the estimator has trained on augmented pairs (never a warm-up epoch). The file names a
  checkpoint stores are hints, never trusted: only ``.ckpt`` files in the resumed checkpoint's
  own folder are carried over, so a resume copies, and later deletes, nothing outside the run.
* `AppendingCSVLogger`: Lightning's CSV logger deletes an existing ``metrics.csv``; this one
  appends to it and drops the rows a killed process logged after its last checkpoint (they are
  logged again by the resumed run). It writes ``metrics.csv`` and ``hparams.yaml`` atomically
  (the whole file through a temporary file and a rename), so a full disk leaves the previous
  file intact. (A second, unrelated run never appends here: ``train`` refuses a folder holding
  a finished run, `runfolder.check_new_run`.)
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from poseaug_pl.training.config import WriteFailed
from poseaug_pl.utils import atomic_output

log = logging.getLogger(__name__)


def augmented_run(pl_module) -> bool:
    """Whether ``pl_module`` trains its estimator on augmented pairs at some point
    (``hparams.augment`` and ``hparams.train_estimator``): not a baseline, not an augmentor
    pretraining."""
    hp = getattr(pl_module, "hparams", {}) or {}
    return bool(hp.get("augment", False)) and bool(hp.get("train_estimator", True))


def estimator_seen_augmented(pl_module) -> bool | None:
    """Whether the estimator has trained on augmented pairs in this run so far
    (``pl_module.augmented_updates > 0``); None where the module does not count them."""
    updates = getattr(pl_module, "augmented_updates", None)
    return None if updates is None else int(updates) > 0


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that carries its state (best score and file) into a new run folder.

    The paths of a restored state (``best_model_path``, the keys of ``best_k_models``,
    ``kth_best_model_path``, ``last_model_path``) are data from a file, not instructions: each
    is kept, as ``<dirpath>/<its file name>``, only when a ``.ckpt`` file of that name lies in
    the folder of the checkpoint being resumed (``trainer.ckpt_path``; symlinks resolved, so a
    link pointing out does not count), and copied here first when that folder is another one.
    Every other path is dropped, whether the run resumes into another folder or its own, so
    nothing outside the resumed run is copied in, and Lightning never deletes an outside file
    as an old top-k or last checkpoint.
    """

    def __init__(self, *args, after_augmented_updates: bool = False, **kwargs) -> None:
        """``ModelCheckpoint``'s arguments, and:

        Args:
            after_augmented_updates: in an augmented run that trains the estimator
                (`augmented_run`), consider an epoch for the monitored (best) checkpoint only
                once the estimator has trained on augmented pairs (`estimator_seen_augmented`),
                so a warm-up epoch's estimator (the starting weights) is never the best one.
        """
        super().__init__(*args, **kwargs)
        self.after_augmented_updates = after_augmented_updates

    def _warming_up(self, trainer, pl_module) -> bool:
        """Whether this epoch is left out of the best checkpoint (see ``__init__``)."""
        if trainer.sanity_checking:  # (nothing is saved then anyway)
            return False
        if not (self.after_augmented_updates and self.monitor and augmented_run(pl_module)):
            return False
        if estimator_seen_augmented(pl_module) is not False:
            return False
        if not getattr(self, "_told", False):
            log.info("best checkpoint: epochs before the estimator trains on augmented pairs "
                     "are not considered (warm-up)")  # fmt: skip
            self._told = True
        return True

    def on_validation_end(self, trainer, pl_module) -> None:
        """Save the best checkpoint, unless the estimator has not seen augmented pairs yet."""
        if not self._warming_up(trainer, pl_module):
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """As `on_validation_end`, for checkpoints saved at the end of the training epoch."""
        if not self._warming_up(trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)

    @property
    def state_key(self) -> str:
        """The same key as ``ModelCheckpoint`` (checkpoints of either class restore into both)."""
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Resolve ``dirpath``; remember the trainer, whose ``ckpt_path`` (set before callbacks
        restore their state) is the one folder a resume may take files from."""
        super().setup(trainer, pl_module, stage)
        self._resuming_trainer = trainer

    def resumed_folder(self) -> Path | None:
        """The real folder of the checkpoint being resumed (None: unknown or not a local file)."""
        path = getattr(getattr(self, "_resuming_trainer", None), "ckpt_path", None)
        if not path or not os.path.isfile(path):
            return None
        return Path(os.path.realpath(path)).parent

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the state with its paths confined to the run (`_confined`)."""
        here = Path(self.dirpath) if self.dirpath else None
        state = self._confined(state_dict, self.resumed_folder(), here, self.mode)
        if self.dirpath:
            state["dirpath"] = self.dirpath  # (Lightning then restores the scores as well)
        super().load_state_dict(state)

    @staticmethod
    def _confined(state: dict, source: Path | None, here: Path | None, mode: str = "min") -> dict:
        """``state`` with every stored path checked against ``source`` (the resumed
        checkpoint's real folder) and moved to ``here`` (this run's checkpoint folder); see the
        class docstring. A best file that does not pass resets the best score."""
        real = lambda p: Path(os.path.realpath(p))  # noqa: E731
        copies: dict[str, str] = {}

        def kept(path) -> str:  # "" when the path is dropped
            if not isinstance(path, str) or not path or source is None or here is None:
                return ""
            name = Path(path).name
            if not name.endswith(".ckpt") or name in copies:
                return copies.get(name, "")
            found, new = source / name, here / name
            if real(found).parent != source or not real(found).is_file():
                return ""
            if source != real(here) and not os.path.lexists(new):
                with atomic_output(new) as tmp:  # a full disk leaves no truncated copy
                    shutil.copy2(real(found), tmp)
            ok = real(new).parent == real(here) and real(new).is_file()
            copies[name] = str(new) if ok else ""
            return copies[name]

        scores = state.get("best_k_models")
        scores = scores.items() if isinstance(scores, dict) else ()
        best_k = {m: torch.as_tensor(v) for p, v in scores
                  if isinstance(v, (torch.Tensor, float, int)) and (m := kept(p))}  # fmt: skip
        best = kept(state.get("best_model_path"))
        worst = torch.tensor(float("inf") if mode == "min" else -float("inf"))
        out = {**state, "best_k_models": best_k, "best_model_path": best,
               "kth_best_model_path": kept(state.get("kth_best_model_path")),
               "last_model_path": kept(state.get("last_model_path"))}  # fmt: skip
        if out["kth_best_model_path"] not in best_k:  # the k-th must be one of the top k
            pick = max if mode == "min" else min
            kth = pick(best_k, key=lambda p: float(best_k[p])) if best_k else ""
            out.update(kth_best_model_path=kth, kth_value=best_k[kth] if kth else worst)
        if state.get("best_model_path") and not best:
            log.warning("resumed run: the best checkpoint %s is not a .ckpt file in the resumed "
                        "checkpoint's folder %s; the best checkpoint starts afresh",
                        state["best_model_path"], source)  # fmt: skip
            out.update(best_model_score=None, kth_value=worst, kth_best_model_path="",
                       best_k_models={})  # fmt: skip
        if source is not None and here is not None and source != real(here):
            log.info("resumed run: checkpoint state of %s carried into %s", source, here)
        return out


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, appending to an existing ``metrics.csv`` and rewriting every file
    it writes in one atomic step (`utils.atomic_output`) instead of appending in place."""

    def _check_log_dir_exists(self) -> None:  # keep the file, take over its columns
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))

    def _rows(self) -> list[dict]:
        if not os.path.isfile(self.metrics_file_path):
            return []
        with open(self.metrics_file_path, newline="") as f:
            return list(csv.DictReader(f))

    def _write_rows(self, rows: list[dict]) -> None:
        with atomic_output(self.metrics_file_path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)

    def save(self) -> None:
        """Write the recorded rows after the file's (the whole file, atomically; the columns
        grow as new metrics appear, like Lightning's writer)."""
        if not self.metrics:
            return
        self._record_new_keys()
        self._write_rows(self._rows() + self.metrics)
        self.metrics = []

    def log_hparams(self, params: dict) -> None:
        """Record hyperparameters and write ``hparams.yaml`` atomically."""
        self.hparams.update(params)
        with atomic_output(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)) as tmp:
            save_hparams_to_yaml(tmp, self.hparams)

    def drop_rows_after(self, step: int) -> int:
        """Remove rows logged at a step after ``step``; returns how many were removed."""
        rows = self._rows()
        keep = [r for r in rows if not r.get("step") or int(float(r["step"])) <= step]
        if len(keep) < len(rows):
            self._write_rows(keep)
        return len(rows) - len(keep)


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume into the same folder."""

    @property
    def experiment(self) -> _AppendingWriter:
        """The writer (created on first use, appending to an existing file)."""
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def finalize(self, status: str) -> None:
        """Write the remaining rows; after a failure (``status="failed"``) a log that cannot be
        written only warns, so the error that ended the run is the one reported."""
        try:
            super().finalize(status)
        except WriteFailed as e:
            if status != "failed":
                raise
            log.warning("the CSV log could not be saved: %s", e)


class TrimResumedLogs(L.Callback):
    """After a resume, drop CSV rows a killed process logged after its last checkpoint."""

    def on_train_start(self, trainer, pl_module) -> None:
        """Runs after the checkpoint is restored (``trainer.global_step`` is the resumed one)."""
        if trainer.ckpt_path is None:
            return
        step = logged_step(trainer)  # the loggers' step (batches), not optimiser steps
        for logger in trainer.loggers:
            writer = getattr(logger, "experiment", None)
            if isinstance(writer, _AppendingWriter):
                dropped = writer.drop_rows_after(step - 1)
                if dropped:
                    log.info("resumed run: %d log rows from step %d on dropped", dropped, step)


def logged_step(trainer) -> int:
    """The step the loggers write (training batches that stepped; Lightning counts every
    optimiser step in ``global_step``, four per batch here)."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(getattr(loop, "_batches_that_stepped", trainer.global_step))
