"""The output folder of a command: writable, and a finished run never overwritten by mistake.

* `check_new_run`: ``train`` refuses a folder that already holds a run's checkpoints
  (``checkpoints/*.ckpt``) or ``metrics.json``, unless ``ckpt_path=`` resumes a checkpoint of
  that very folder or ``overwrite=true`` asks for a fresh start there (`clear_run` then removes
  the old run's outputs before anything is trained, so no rows or files of two runs mix).
* `RunFolderCheck`: a Hydra callback (``conf/hydra/default.yaml``) that makes both checks when
  the command starts, before Hydra writes ``.hydra/`` and its log file into the folder: a
  read-only folder ends with one ``error:`` line (exit 1) instead of Hydra's traceback, and a
  refused finished run keeps its ``.hydra/`` record unchanged.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from poseaug_pl.training.config import ConfigError, WriteFailed
from poseaug_pl.utils import probe_folder, write_failed

log = logging.getLogger(__name__)

#: What ``train`` writes into its run folder and ``overwrite=true`` removes before training:
#: checkpoints, test metrics, the CSV / TensorBoard logs, the figures and the per-epoch reports.
#: (``config_resolved.yaml`` and Hydra's ``.hydra/`` are rewritten by the new run; Hydra's log
#: file is open when the task starts and keeps the old run's lines above the new ones.)
RUN_OUTPUTS = ("checkpoints", "metrics.json", "csv", "tensorboard", "figures",
               "plausibility.jsonl", "ddp_check.json")  # fmt: skip


def finished_run(folder: str | Path) -> list[str]:
    """What marks ``folder`` as holding a run: its ``checkpoints/*.ckpt`` and ``metrics.json``
    (paths relative to the folder; empty for a new or empty folder)."""
    folder = Path(folder)
    found = sorted(str(p.relative_to(folder)) for p in folder.glob("checkpoints/*.ckpt"))
    return found + (["metrics.json"] if (folder / "metrics.json").is_file() else [])


def resumes_here(folder: str | Path, ckpt_path) -> bool:
    """Whether ``ckpt_path`` is a checkpoint of ``folder`` itself (``<folder>/checkpoints/``)."""
    if not ckpt_path:
        return False
    ckpt = Path(str(ckpt_path)).expanduser().resolve()
    return ckpt.parent == (Path(folder).expanduser().resolve() / "checkpoints")


def check_new_run(folder: str | Path, ckpt_path=None, overwrite: bool = False) -> list[str]:
    """Refuse to train into a folder that holds a run, unless it is resumed or overwritten.

    Returns:
        what of an old run ``overwrite=true`` is to remove (`finished_run`; empty otherwise).

    Raises:
        ConfigError: the folder holds a run and neither ``ckpt_path=`` resumes one of its
            checkpoints nor ``overwrite=true`` is set; or both are set (the overwrite would
            delete the checkpoint being resumed).
    """
    found = finished_run(folder)
    here = resumes_here(folder, ckpt_path)
    if here and overwrite:
        raise ConfigError(
            f"config: overwrite=true would delete ckpt_path={ckpt_path} (a checkpoint of this "
            "run folder); resume or overwrite, not both"
        )
    if not found or here:
        return []
    if overwrite:
        return found
    shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
    last = Path(folder) / "checkpoints" / "last.ckpt"
    raise ConfigError(
        f"{folder} already holds a run ({shown}): resume it with ckpt_path={last}, or replace "
        "it with overwrite=true (its checkpoints, metrics and logs are deleted)"
    )


def clear_run(folder: str | Path) -> None:
    """Remove `RUN_OUTPUTS` of an old run from ``folder`` (``overwrite=true``)."""
    folder = Path(folder)
    for name in RUN_OUTPUTS:
        path = folder / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as e:
            raise write_failed(path, e) from e
    log.info("overwrite=true: the earlier run's outputs in %s were removed", folder)


def make_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) and make sure a file can be created in it.

    Raises:
        WriteFailed: the folder cannot be created or written (read-only, no permission, full).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failed(folder, e) from e
    probe_folder(folder, folder)
    return folder


def _job_folder(config: DictConfig, key: str) -> Path | None:
    """The folder a job writes to: ``paths.output_dir`` when set to something other than
    Hydra's run folder, else ``hydra.<key>`` (``run.dir`` / ``sweep.dir``); None when it cannot
    be resolved yet (the task reports the missing setting)."""
    try:
        paths = config.get("paths")
        raw = OmegaConf.to_container(paths, resolve=False).get("output_dir") if paths else None
        if raw and "hydra:runtime.output_dir" not in str(raw) and key == "run.dir":
            return Path(str(paths.output_dir)).absolute()
        value = OmegaConf.select(config, f"hydra.{key}", throw_on_missing=True)
    except Exception:  # noqa: BLE001 (a missing or unresolvable setting: left to the task)
        return None
    return Path(str(value)).absolute() if value else None


class RunFolderCheck(Callback):
    """Hydra callback: before Hydra writes into the run (or sweep) folder, check that it can be
    written and, for ``train`` (a config with ``overwrite``), that it holds no finished run.

    Ends the program with one ``error:`` line: exit 1 for a folder that cannot be written,
    exit 2 for a refused finished run (`check_new_run`).
    """

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        """Check ``hydra.run.dir`` (or an explicit ``paths.output_dir``)."""
        self._check(config, "run.dir", training=True)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """Check that ``hydra.sweep.dir`` can be written (each job's folder is checked by the
        task itself: `train` refuses a finished run there)."""
        self._check(config, "sweep.dir", training=False)

    @staticmethod
    def _check(config: DictConfig, key: str, training: bool) -> None:
        from poseaug_pl.cli import fail

        folder = _job_folder(config, key)
        if folder is None:
            return
        try:
            if training and "overwrite" in config:
                check_new_run(folder, config.get("ckpt_path"), bool(config.get("overwrite")))
            make_folder(folder)
        except ConfigError as e:
            fail(e)
        except WriteFailed as e:
            fail(e, code=1)
