"""``python -m poseaug_pl.evaluate ckpt_path=PATH``: the published metrics of a checkpoint.

Evaluates the estimator on every test set of the data config (Human3.6M test subjects without
flip; cross-dataset sets and ``synthetic_wild`` with flip test-time augmentation), prints a table
and writes ``metrics.json``; ``save_predictions=true`` also writes ``predictions/<set>.npz`` with
``pred`` and ``target`` (N, 16, 3) float32 root-relative millimetres in the data's order.

Without ``data=`` / ``data.*`` overrides the data config of the checkpoint's training run is used
(``<run>/config_resolved.yaml``), so ``evaluate ckpt_path=<run>/checkpoints/best.ckpt`` just works.
"""

from __future__ import annotations

import re
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from poseaug_pl.cli import entry_point
from poseaug_pl.data import build_datamodule
from poseaug_pl.evaluation.report import (
    checkpoint_info,
    describe_checkpoint,
    metrics_table,
    write_metrics,
)
from poseaug_pl.models.ckpt import load_module, read_checkpoint
from poseaug_pl.train import output_dir
from poseaug_pl.training import tracking
from poseaug_pl.training.checkpoint_io import AtomicCheckpointIO
from poseaug_pl.training.config import ConfigError, check_devices, validate
from poseaug_pl.training.runfolder import (  # noqa: F401 (run_config: the notebooks' import)
    MAX_RUN_CONFIG_BYTES,
    check_no_results,
    make_folder,
    run_config,
    run_config_path,
)
from poseaug_pl.utils import atomic_output

#: An experiment name usable as one folder name (evaluate writes to outputs/evaluate/<name>/).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")


def run_experiment(ckpt_path) -> str:
    """The experiment name of the checkpoint's run: evaluate's output folder. ``default``
    when unknown or not a plain folder name (a run folder must not steer where outputs go)."""
    try:
        run = run_config(ckpt_path)
    except Exception:  # an unreadable config: the default folder
        return "default"
    name = str(run.get("experiment_name") or "default") if run is not None else "default"
    return name if SAFE_NAME.fullmatch(name) and ".." not in name else "default"


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
    if run is None or "data" not in run:
        raise ConfigError(f"config: no config_resolved.yaml of the run beside {cfg.ckpt_path} "
                          "(or data_from_run=false): choose the data with data=synthetic or "
                          "data=h36m data.root=PATH")  # fmt: skip
    data = run.data
    OmegaConf.set_struct(data, False)
    given = {o.key_or_group.removeprefix("+") for o in overrides}
    if "cache_dir" in data and "data.cache_dir" not in given:
        data.cache_dir = None  # the default cache: a run folder does not say where to write
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
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, pred=both[0].astype(np.float32), target=both[1].astype(np.float32), **extra)
    return path


def evaluate(cfg: DictConfig) -> dict:
    """Load ``cfg.ckpt_path``, test it on every test set, write metrics (and predictions)."""
    check_no_results(output_dir(cfg), bool(cfg.get("overwrite", False)))
    ckpt = Path(cfg.ckpt_path).expanduser()
    info = checkpoint_info(read_checkpoint(ckpt), ckpt.name)
    data = data_config(cfg)
    with open_dict(cfg):
        cfg.data = data
    validate(cfg)
    check_devices(cfg)
    source = run_config_path(ckpt) if cfg.get("data_from_run", True) else "config: data"
    dm = build_datamodule(OmegaConf.to_container(data, resolve=True), source)
    dm.check()
    model = load_module(ckpt)
    model.save_predictions = bool(cfg.save_predictions)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False,
                                      plugins=[AtomicCheckpointIO()])  # fmt: skip
    out = make_folder(output_dir(cfg))  # (before the test: a read-only folder fails at once)
    trainer.test(model, datamodule=dm, verbose=False)
    metrics = write_metrics(model.test_results, out / "metrics.json")
    if cfg.save_predictions:
        for name, parts in model.predictions.items():
            save_predictions(out / "predictions" / f"{name}.npz", parts, dm.test_sets[name])
    figure = tracking.report_evaluation(model.test_results, out / "figures")
    print(describe_checkpoint(info))
    print(metrics_table(metrics))
    print(f"metrics: {out / 'metrics.json'}\nper-joint errors: {figure}")
    return metrics


main = entry_point("evaluate", evaluate)


if __name__ == "__main__":
    main()
