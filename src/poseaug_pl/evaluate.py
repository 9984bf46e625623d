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
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from . import tracking
from .ckpt import read_checkpoint
from .cli import entry_point
from .config import ConfigError, check_devices, validate
from .module import PoseAugModule
from .train import metrics_table, output_dir, write_metrics
from .utils import atomic_output


def run_config(ckpt_path) -> DictConfig | None:
    """The resolved config of the run that wrote ``ckpt_path`` (``<run>/config_resolved.yaml``)."""
    path = Path(str(ckpt_path)).expanduser().resolve().parent.parent / "config_resolved.yaml"
    return OmegaConf.load(path) if path.is_file() else None


def run_experiment(ckpt_path) -> str:
    """The experiment name of the checkpoint's run (``default`` if unknown): the output folder."""
    try:
        run = run_config(ckpt_path)
    except Exception:  # an unreadable config: the default folder
        return "default"
    return str(run.get("experiment_name") or "default") if run is not None else "default"


if not OmegaConf.has_resolver("run_experiment"):
    OmegaConf.register_new_resolver("run_experiment", run_experiment)


def _overrides() -> list:
    try:
        task = HydraConfig.get().overrides.task
    except ValueError:  # not under Hydra (tests composing the config)
        return []
    return OverridesParser.create().parse_overrides(list(task))


def data_config(cfg: DictConfig) -> DictConfig:
    """The data config to evaluate on: the checkpoint run's own, with the command line's
    ``data.*`` / ``+data.*`` overrides applied on top; a ``data=NAME`` group choice replaces it
    with the composed one. (``~data.*`` deletions are not supported: the placeholder config
    ``conf/data/from_run.yaml`` holds nulls, which Hydra refuses to delete.)

    Raises:
        ConfigError: a ``model.*`` override (the checkpoint's model is evaluated as trained).
    """
    overrides = _overrides()
    model = [o.input_line for o in overrides if o.key_or_group.split(".")[0] == "model"]
    if model:
        raise ConfigError(f"config: evaluate uses the checkpoint's model as trained; "
                          f"{', '.join(model)} cannot be applied (remove it)")  # fmt: skip
    if any(o.key_or_group == "data" for o in overrides):
        return cfg.data
    run = run_config(cfg.ckpt_path) if cfg.get("data_from_run", True) else None
    if run is None:
        raise ConfigError(f"config: no config_resolved.yaml of the run beside {cfg.ckpt_path} "
                          "(or data_from_run=false): choose the data with data=synthetic or "
                          "data=h36m data.root=PATH")  # fmt: skip
    data = run.data
    OmegaConf.set_struct(data, False)
    for o in overrides:  # (Hydra refuses ~data.* deletions of the placeholder nulls earlier)
        if o.key_or_group.startswith("data."):
            OmegaConf.update(data, o.key_or_group[len("data.") :], o.value(), force_add=True)
    return data


def save_predictions(path: Path, parts: list, data) -> Path:
    """Write one set's predictions: ``pred``, ``target`` (N, 16, 3) float32 root-relative mm and,
    where the set has them, ``subject``, ``action`` (names), ``camera``, ``frame``, ``sequence``.

    Args:
        parts: ``[(stack of pred and target (2, B, 16, 3) metres, row index (B,)), ...]``.
        data: the test `PoseSet` the row indices point into.
    """
    both = torch.cat([p for p, _ in parts], dim=1).numpy() * 1000
    rows = torch.cat([i for _, i in parts])
    extra = {"index": rows.numpy()}
    if len(data.subjects):
        extra["subject"] = np.array(data.subjects)[data.subject[rows].cpu().numpy()]
    if len(data.actions):
        extra["action"] = np.array(data.actions)[data.action[rows].cpu().numpy()]
    for key in ("camera", "frame", "sequence"):
        if getattr(data, key, None) is not None:
            extra[key] = getattr(data, key)[rows].cpu().numpy()
    with atomic_output(path) as tmp:
        np.savez(tmp, pred=both[0].astype(np.float32), target=both[1].astype(np.float32), **extra)
    return path


def evaluate(cfg: DictConfig) -> dict:
    """Load ``cfg.ckpt_path``, test it on every test set, write metrics (and predictions)."""
    ckpt = Path(cfg.ckpt_path).expanduser()
    read_checkpoint(ckpt)
    data = data_config(cfg)
    with open_dict(cfg):
        cfg.data = data
    validate(cfg)
    check_devices(cfg)
    dm = hydra.utils.instantiate(data)
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
        for name, parts in model.predictions.items():
            save_predictions(out / "predictions" / f"{name}.npz", parts, dm.test_sets[name])
    figure = tracking.report_evaluation(model.test_results, out / "figures")
    print(metrics_table(metrics))
    print(f"metrics: {out / 'metrics.json'}\nper-joint errors: {figure}")
    return metrics


main = entry_point("evaluate", evaluate)


if __name__ == "__main__":
    main()
