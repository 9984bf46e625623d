"""``python -m poseaug_pl.evaluate ckpt_path=PATH``: the published metrics of a checkpoint.

Evaluates the estimator on every test set of the data config (Human3.6M test subjects without
flip; cross-dataset sets and ``synthetic_wild`` with flip test-time augmentation), prints a table
and writes ``metrics.json``; ``save_predictions=true`` also writes ``predictions/<set>.npz`` with
``pred`` and ``target`` (N, 16, 3) float32 root-relative millimetres in the data's order.

Without ``data=`` / ``data.*`` overrides the data config of the checkpoint's training run is used
(``<run>/config_resolved.yaml``), so ``evaluate ckpt_path=<run>/checkpoints/best.ckpt`` just works.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from . import tracking
from .ckpt import read_checkpoint
from .cli import entry_point
from .config import validate
from .module import PoseAugModule
from .train import metrics_table, output_dir, write_metrics
from .utils import atomic_output


def data_config(cfg: DictConfig) -> DictConfig:
    """The data config to evaluate on: the run's own unless the command line chose one."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:
        overrides = []
    chosen = any(o.lstrip("+~").startswith("data") for o in overrides)
    run_cfg = Path(cfg.ckpt_path).expanduser().resolve().parent.parent / "config_resolved.yaml"
    if cfg.get("data_from_run", True) and not chosen and run_cfg.is_file():
        return OmegaConf.load(run_cfg).data
    return cfg.data


def evaluate(cfg: DictConfig) -> dict:
    """Load ``cfg.ckpt_path``, test it on every test set, write metrics (and predictions)."""
    validate(cfg)
    ckpt = Path(cfg.ckpt_path).expanduser()
    read_checkpoint(ckpt)
    dm = hydra.utils.instantiate(data_config(cfg))
    dm.check()
    model = PoseAugModule.load_from_checkpoint(
        ckpt, map_location="cpu", weights_only=True, estimator_ckpt=None, augmentor_ckpt=None
    )
    model.save_predictions = bool(cfg.save_predictions)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.test(model, datamodule=dm, verbose=False)
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    metrics = write_metrics(model.test_results, out / "metrics.json")
    if cfg.save_predictions:
        (out / "predictions").mkdir(exist_ok=True)
        for name, parts in model.predictions.items():
            both = torch.cat(parts, dim=1).numpy() * 1000  # (2, N, 16, 3) mm
            with atomic_output(out / "predictions" / f"{name}.npz") as tmp:
                np.savez(tmp, pred=both[0].astype(np.float32), target=both[1].astype(np.float32))
    figure = tracking.report_evaluation(model.test_results, out / "figures")
    print(metrics_table(metrics))
    print(f"metrics: {out / 'metrics.json'}\nper-joint errors: {figure}")
    return metrics


main = entry_point("evaluate", evaluate)


if __name__ == "__main__":
    main()
