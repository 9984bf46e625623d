"""Resuming a run from ``ckpt_path=`` alone, as if it had never stopped.

* `RunCheckpoint`: Lightning's ``ModelCheckpoint`` forgets its best score when a run resumes into
  another folder (a new Hydra run folder); this one copies the best checkpoint over and keeps
  the score, so ``best.ckpt`` and ``metrics.json`` match the uninterrupted run.
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

from .config import WriteFailed
from .utils import atomic_output

log = logging.getLogger(__name__)


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that carries its state (best score and file) into a new run folder."""

    @property
    def state_key(self) -> str:
        """The same key as ``ModelCheckpoint`` (checkpoints of either class restore into both)."""
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the state; from another folder, copy its checkpoint files here first."""
        old = state_dict.get("dirpath")
        if old and self.dirpath and os.path.realpath(old) != os.path.realpath(self.dirpath):
            state_dict = self._relocated(state_dict, Path(self.dirpath), self.mode)
        super().load_state_dict(state_dict)

    @staticmethod
    def _relocated(state: dict, here: Path, mode: str = "min") -> dict:
        def moved(path) -> str:  # "" when the file is gone (nothing to carry over)
            if not path:
                return ""
            new = here / Path(path).name
            if Path(path).is_file() and not new.exists():
                with atomic_output(new) as tmp:  # a full disk leaves no truncated copy
                    shutil.copy2(path, tmp)
            return str(new) if new.exists() else ""

        best = {m: v for p, v in state.get("best_k_models", {}).items() if (m := moved(p))}
        best_path = moved(state.get("best_model_path"))
        out = {**state, "dirpath": str(here), "best_k_models": best, "best_model_path": best_path,
               "kth_best_model_path": moved(state.get("kth_best_model_path")),
               "last_model_path": moved(state.get("last_model_path"))}  # fmt: skip
        if state.get("best_model_path") and not best_path:  # the old best file is gone
            log.warning("resumed run: %s no longer exists; the best checkpoint starts afresh",
                        state["best_model_path"])  # fmt: skip
            worst = torch.tensor(float("inf") if mode == "min" else -float("inf"))
            out.update(best_model_score=None, kth_value=worst, best_k_models={})
        log.info("resumed run: checkpoint state of %s carried into %s", state["dirpath"], here)
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
