"""``python -m poseaug_pl.train``: train PoseAug (or the baseline), then evaluate it.

Examples::

    python -m poseaug_pl.train                                    # PoseAug, synthetic data
    python -m poseaug_pl.train experiment=baseline_synthetic
    python -m poseaug_pl.train experiment=poseaug_h36m data.root=/data/h36m trainer=gpu \\
        model.estimator_ckpt=outputs/train/baseline_h36m/<run>/checkpoints/best.ckpt

Writes, under the Hydra run folder: ``checkpoints/last.ckpt`` and ``checkpoints/best.ckpt``
(best validation MPJPE on sequences held out from the training subjects), ``metrics.json``
(every test set, evaluated from ``best.ckpt``, or ``last.ckpt`` with ``test_ckpt=last``),
``config_resolved.yaml``, ``figures/`` and the logs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from poseaug_pl.cli import entry_point
from poseaug_pl.data import DataError, build_datamodule
from poseaug_pl.evaluation.report import (
    checkpoint_info,
    describe_checkpoint,
    metrics_table,
    plain_metrics,
    write_metrics,
)
from poseaug_pl.models.ckpt import (
    check_fits,
    initialise_augmentor,
    initialise_estimator,
    read_checkpoint,
)
from poseaug_pl.sweep import objective
from poseaug_pl.training import runfolder, tracking
from poseaug_pl.training.checkpoint_io import AtomicCheckpointIO
from poseaug_pl.training.config import ConfigError, check_devices, validate
from poseaug_pl.training.health import NETWORKS
from poseaug_pl.training.module import PoseAugModule
from poseaug_pl.training.resume import logged_step
from poseaug_pl.training.resumed_run import resumed_config
from poseaug_pl.utils import write_text_atomic

log = logging.getLogger(__name__)


def output_dir(cfg: DictConfig) -> Path:
    """The run folder: ``paths.output_dir`` (by default Hydra's run folder of this job)."""
    return Path(cfg.paths.output_dir)


def build_model(cfg: DictConfig) -> PoseAugModule:
    """The module with ``cfg.model``'s arguments as plain data (checkpoint-safe hparams),
    initialised from ``model.estimator_ckpt`` / ``model.augmentor_ckpt`` when they are set."""
    args = OmegaConf.to_container(cfg.model, resolve=True)
    estimator_ckpt, augmentor_ckpt = args.pop("estimator_ckpt"), args.pop("augmentor_ckpt")
    model = PoseAugModule(**args)
    if estimator_ckpt:
        initialise_estimator(model, estimator_ckpt)
    if augmentor_ckpt:
        initialise_augmentor(model, augmentor_ckpt)
    return model


def build_trainer(cfg: DictConfig, extra_callbacks=()) -> L.Trainer:
    """Instantiate the Trainer with the configured callbacks and loggers; checkpoints are
    written atomically and loaded ``weights_only`` (`checkpoint_io.AtomicCheckpointIO`)."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    return hydra.utils.instantiate(cfg.trainer, callbacks=[*callbacks, *extra_callbacks],
                                   logger=loggers or False,
                                   plugins=[AtomicCheckpointIO()])  # fmt: skip


#: What a checkpoint needs to resume a run from (``ckpt_path=``), and what each part is.
TRAINING_STATE = {
    "optimizer_states": "optimizer states",
    "loops": "training-loop state",
    "epoch": "epoch",
    "global_step": "step count",
}


def check_checkpoints(cfg: DictConfig) -> dict | None:
    """Refuse a missing or unreadable checkpoint setting before any data is loaded, and a
    ``ckpt_path`` without the training state a resume restores (a weights-only checkpoint).

    Returns:
        the ``ckpt_path`` checkpoint as read (None without one).
    """
    resumed = None
    for key in ("ckpt_path", "model.estimator_ckpt", "model.augmentor_ckpt"):
        path = OmegaConf.select(cfg, key, default=None)
        if path:
            ckpt = read_checkpoint(path, key)
            if key == "ckpt_path":
                check_resumable(ckpt, path)
                resumed = ckpt
            else:  # another network's weights: say which override fits, before any data loads
                roles = ("estimator",) if key == "model.estimator_ckpt" else ("augmentor", "d3d",
                                                                              "d2d")  # fmt: skip
                for role in roles:
                    check_same_network(cfg, ckpt, path, key, role)
    return resumed


def check_same_network(cfg: DictConfig, ckpt: dict, path, key: str, role: str) -> None:
    """Refuse a checkpoint whose ``role`` network differs from the one ``cfg`` builds in a
    setting both name (another width, depth or network), naming the overrides that fit it.

    Raises:
        ConfigError: one line with ``model.<role>.<setting>=<the checkpoint's>`` to add.
    """
    theirs = (ckpt.get("hyper_parameters") or {}).get(role)
    ours = OmegaConf.select(cfg, f"model.{role}", default=None)
    if not isinstance(theirs, dict) or ours is None:
        return
    ours = OmegaConf.to_container(ours, resolve=True)
    keys = ("name", "channels", "blocks", "hidden", "stages", "mid", "width", "noise_dim")
    differ = [k for k in keys if k in theirs and k in ours and theirs[k] != ours[k]]
    if differ:
        fits = " ".join(f"model/{role}={theirs[k]}" if k == "name" else
                        f"model.{role}.{k}={theirs[k]}" for k in differ)  # fmt: skip
        raise ConfigError(f"{key}={path} holds {role} weights with "
                          f"{', '.join(f'{k}={theirs[k]}' for k in differ)}, this run builds "
                          f"{', '.join(f'{k}={ours[k]}' for k in differ)}: add {fits}")  # fmt: skip


def check_resumable(ckpt: dict, path) -> None:
    """Raise `DataError` if ``ckpt`` lacks what resuming needs: the four optimisers' states,
    the loops' state, the epoch and step (`TRAINING_STATE`)."""
    missing = [what for key, what in TRAINING_STATE.items() if key not in ckpt]
    why = f"it has no {' and no '.join(missing)} (weights only)" if missing else ""
    states = ckpt.get("optimizer_states")
    if not why and not (isinstance(states, list) and len(states) == len(NETWORKS)):
        n = len(states) if isinstance(states, list) else "no list of"
        why = f"it holds {n} optimizer states, not the {len(NETWORKS)} of a PoseAug run"
    kinds = {"loops": dict, "epoch": int, "global_step": int, "augmentor_steps": int,
             "augmented_updates": int, "rng_cpu": torch.Tensor}  # fmt: skip
    bad = [k for k, kind in kinds.items() if k in ckpt and not isinstance(ckpt[k], kind)]
    bad += [k for k in ("epoch", "global_step", "augmentor_steps", "augmented_updates")
            if isinstance(ckpt.get(k), int) and not 0 <= ckpt[k] < 10**9]  # fmt: skip
    rng = ckpt.get("rng_cpu")
    if isinstance(rng, torch.Tensor) and (rng.dtype != torch.uint8
                                          or rng.shape != torch.get_rng_state().shape):  # fmt: skip
        bad.append("rng_cpu")
    if isinstance(states, list) and not all(
        isinstance(o, dict) and isinstance(o.get("state"), dict)
        and isinstance(o.get("param_groups"), list) for o in states
    ):  # fmt: skip
        bad.append("optimizer_states")
    if not why and bad:
        why = f"its {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not of the right kind"
    if why:
        raise DataError(
            f"{path}: ckpt_path cannot resume from this checkpoint: {why}; resume from a "
            "training run's checkpoints/last.ckpt, or start a new run from these weights with "
            f"model.estimator_ckpt={path}"
        )


def from_scratch_warning(cfg: DictConfig) -> str | None:
    """The warning for an augmented Human3.6M run whose estimator starts from scratch (None:
    nothing to warn about).

    The released recipe (``poseaug_h36m`` and the experiments built on it) continues a trained
    baseline; without ``model.estimator_ckpt`` (and not resuming) it trains the estimator from
    random weights and tests far worse. Baselines, augmentor pretraining
    (``model.train_estimator=false``) and the synthetic experiments, which may start from
    scratch on purpose, get no warning.
    """
    target = str(OmegaConf.select(cfg, "data._target_", default="") or "")
    if (not target.endswith("H36MDataModule") or cfg.get("ckpt_path")
            or not OmegaConf.select(cfg, "model.augment", default=False)
            or not OmegaConf.select(cfg, "model.train_estimator", default=True)
            or OmegaConf.select(cfg, "model.estimator_ckpt", default=None)):  # fmt: skip
        return None
    name = str(cfg.get("experiment_name") or "this run")
    baseline = "baseline_h36m_cpu" if name.endswith("_cpu") else "baseline_h36m"
    root = OmegaConf.select(cfg, "data.root", default=None) or "PATH"
    return (f"model.estimator_ckpt is not set: {name} trains its estimator from scratch, but the "
            f"released recipe starts from a baseline; make one with `python -m poseaug_pl.train "
            f"experiment={baseline} data.root={root}`, then pass "
            "model.estimator_ckpt=<that run>/checkpoints/best.ckpt")  # fmt: skip


def prepare_run_folder(cfg: DictConfig) -> Path:
    """The run folder, created and checked before anything is written into it.

    A folder that holds a run (``checkpoints/*.ckpt`` or ``metrics.json``) is refused unless
    ``ckpt_path=`` resumes one of its checkpoints or ``overwrite=true`` is set; with overwrite,
    the old run's outputs are removed (rank zero) before training (`runfolder.clear_run`).

    Raises:
        ConfigError: a finished run would be overwritten (`runfolder.check_new_run`).
        WriteFailed: the folder cannot be created or written.
    """
    out = output_dir(cfg)
    old = runfolder.check_new_run(out, cfg.get("ckpt_path"), bool(cfg.get("overwrite", False)))
    if old and rank_zero_only.rank == 0:  # (DDP: the other ranks start after this has run)
        runfolder.clear_run(out)
    return runfolder.make_folder(out)


def train(cfg: DictConfig, extra_callbacks=()) -> dict:
    """Train and (with ``cfg.test``) evaluate; return the metrics dict (empty without test).

    Always ends the W&B run (also on errors), so every job of a multirun gets its own run. A
    resume (``ckpt_path=``) trains with the resumed run's own config
    (`resumed_run.resumed_config`).
    """
    if cfg.get("ckpt_path"):
        cfg = resumed_config(cfg)
    validate(cfg)
    check_devices(cfg)
    if (warning := from_scratch_warning(cfg)) and rank_zero_only.rank == 0:
        log.warning(warning)
    resumed = check_checkpoints(cfg)
    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    done = resumed["epoch"] + 1 if resumed is not None else 0
    if isinstance(epochs, int) and done > epochs:
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} has trained {done} epochs, more than "
                          f"trainer.max_epochs={epochs}: resume with trainer.max_epochs="
                          f"{done + 1} or more to train on")  # fmt: skip
    runfolder.check_new_run(output_dir(cfg), cfg.get("ckpt_path"), bool(cfg.get("overwrite")))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(OmegaConf.to_container(cfg.data, resolve=True), "config: data")
    dm.check()
    model = build_model(cfg)  # (loads and checks model.estimator_ckpt / augmentor_ckpt)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    if resumed is not None:  # one line for a checkpoint of another model, before fit
        check_fits(model, resumed["state_dict"], cfg.ckpt_path, "ckpt_path",
                   any_shape=("pool3d.", "pool2d."))  # fmt: skip
    out = prepare_run_folder(cfg)  # the run's first file, once every check above has passed
    commit = tracking.git_commit()
    write_text_atomic(
        out / "config_resolved.yaml",
        f"# git commit: {commit}\n" + OmegaConf.to_yaml(cfg, resolve=True),
    )
    trainer = build_trainer(cfg, extra_callbacks)
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
        tracking.log_run_metadata(trainer.loggers, config, commit)
        metrics = fit_and_test(cfg, trainer, model, dm)
    except BaseException:
        tracking.finish_wandb(exit_code=1)
        raise
    tracking.finish_wandb()
    return metrics


def fit_and_test(cfg: DictConfig, trainer: L.Trainer, model, dm) -> dict:
    """Fit, then test the chosen checkpoint on every test set; write metrics.json and figures."""
    out = output_dir(cfg)
    resumed = cfg.get("ckpt_path")
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm, ckpt_path=resumed)
    before = getattr(model, "resumed_epochs", 0) if resumed else 0  # (test reloads another ckpt)
    took = time.perf_counter() - t0
    if trainer.interrupted:
        return {}
    if not cfg.get("test", True):
        if trainer.is_global_zero:
            print_untested_summary(cfg, trainer, took, before if resumed else None)
        return {}
    ckpt = trainer.checkpoint_callback
    best = (ckpt.best_model_path or ckpt.last_model_path) if ckpt else None
    tested = best
    if cfg.get("test_ckpt", "best") == "last":
        tested = str(out / "checkpoints" / "last.ckpt")
        if not Path(tested).is_file():  # no checkpoint callbacks: the weights in memory
            tested = None
    trainer.test(model, datamodule=dm, ckpt_path=tested, weights_only=True, verbose=False)
    if not trainer.is_global_zero:  # the metrics are reduced across ranks; rank 0 reports
        return plain_metrics(model.test_results)
    metrics = write_metrics(model.test_results, out / "metrics.json")
    figure = tracking.report_evaluation(model.test_results, out / "figures", trainer.loggers,
                                        step=logged_step(trainer))  # fmt: skip
    tracking.log_checkpoint(trainer.loggers, best)
    val = ckpt.best_model_score if ckpt is not None else None
    epochs = epochs_line(trainer, took, before if resumed else None)
    print(f"\n{cfg.get('experiment_name', 'run')}: {epochs}, "
          f"best val MPJPE {float(val) if val is not None else float('nan'):.1f} mm")  # fmt: skip
    print(describe_checkpoint(tested_checkpoint(tested, model, trainer)))
    print(f"test metrics of {Path(tested).name if tested else 'the final weights'}:")
    print(metrics_table(metrics))
    print(f"run folder: {out}\ncheckpoints: {out / 'checkpoints'}\nmetrics: {out / 'metrics.json'}"
          f"\nfigures: {figure.parent}")  # fmt: skip
    return metrics


def epochs_line(trainer: L.Trainer, took: float, before: int | None) -> str:
    """``N epochs in Ts`` this process trained (``before``: epochs a resumed checkpoint had)."""
    return f"{trainer.current_epoch - (before or 0)} epochs in {took:.0f}s" + (
        f" (resumed after {before}: {trainer.current_epoch} in all)" if before is not None else ""
    )


def print_untested_summary(cfg: DictConfig, trainer: L.Trainer, took: float, before) -> None:
    """The end of a run without test (an augmentor pretraining): epochs, folder, checkpoints
    and the last plausibility line (augmented against real poses), if the run wrote one."""
    out = output_dir(cfg)
    epochs = epochs_line(trainer, took, before)
    print(f"\n{cfg.get('experiment_name', 'run')}: {epochs} (test=false: no test sets)")
    report = out / "plausibility.jsonl"
    lines = report.read_text().splitlines() if report.is_file() else []
    try:
        last = json.loads(lines[-1]) if lines else None
        aug, real = last["augmented"], last["real"]
        print(f"plausibility, last epoch: upright {aug['upright']:.0%} (real "
              f"{real['upright']:.0%}), 2D scale {aug['scale_2d']:.2f}x, elevation "
              f"{aug['elevation_deg']:.1f} deg (real {real['elevation_deg']:.1f}), "
              f"discriminators' accuracy D3d {aug['d3d_acc']:.2f} D2d {aug['d2d_acc']:.2f}")
    except (ValueError, KeyError, TypeError, IndexError):
        pass
    print(f"run folder: {out}\ncheckpoints: {out / 'checkpoints'}"
          + (f"\nplausibility: {report}" if report.is_file() else ""))  # fmt: skip


def tested_checkpoint(path: str | None, model, trainer: L.Trainer) -> dict:
    """`report.checkpoint_info` of the tested checkpoint ``path``; without one, of the weights
    in memory after fit (the last epoch)."""
    if path:
        return checkpoint_info(read_checkpoint(path), Path(path).name)
    now = {"epoch": trainer.current_epoch - 1, "global_step": trainer.global_step,
           "augmented_updates": model.augmented_updates, "max_epochs": trainer.max_epochs,
           "hyper_parameters": dict(model.hparams)}  # fmt: skip
    return checkpoint_info(now, "the final weights")


def run(cfg: DictConfig):
    """The Hydra task: `train`, returning ``objective(metrics, cfg.optimized_metric)`` when an
    optimized metric is configured (what an Optuna sweep minimises), else the metrics dict."""
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if not name:
        return metrics
    value = objective(metrics, name)
    log.info("%s = %.2f", name, value)
    return value


main = entry_point("train", run)


if __name__ == "__main__":
    main()
