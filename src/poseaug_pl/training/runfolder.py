"""The output folder of a command: writable, and a finished run never overwritten by mistake.

* `check_new_run`: ``train`` refuses a folder that already holds a run's checkpoints
  (``checkpoints/*.ckpt``) or ``metrics.json``, unless ``ckpt_path=`` resumes a checkpoint of
  that very folder or ``overwrite=true`` asks for a fresh start there (`clear_run` then removes
  the old run's outputs before anything is trained, so no rows or files of two runs mix).
* `RunFolderCheck`: a Hydra callback (``conf/hydra/default.yaml``) that makes both checks when
  the command starts, before Hydra writes ``.hydra/`` and its log file into the folder: a
  read-only folder ends with one ``error:`` line (exit 1) instead of Hydra's traceback, and a
  refused finished run keeps its ``.hydra/`` record unchanged. A folder holding symbolic links
  (`check_no_links`) is refused for every command: a run folder received from someone else must
  not make us write or read through them outside it.
* `run_config`: a run's saved config (``config_resolved.yaml``), read as data.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from poseaug_pl.training.config import ConfigError, WriteFailed
from poseaug_pl.utils import probe_folder, remove_stale_temporaries, write_failed

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


def check_no_results(folder: str | Path, overwrite: bool = False) -> None:
    """``evaluate``'s output folder: refuse one that holds a run or results (`finished_run`)
    unless ``overwrite=true`` (a run's ``metrics.json`` is never replaced by mistake).

    Raises:
        ConfigError: the folder holds them and ``overwrite`` is not set.
    """
    found = finished_run(folder)
    if found and not overwrite:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise ConfigError(f"{folder} already holds results ({shown}): write into another "
                          "folder, or replace them with overwrite=true")  # fmt: skip


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


def links_in(folder: str | Path) -> list[str]:
    """Symbolic links inside ``folder`` (relative paths, not followed), but W&B's own: links
    under ``wandb/`` that stay inside ``folder`` (``latest-run``, ``debug.log``)."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink() and not folder.resolve().is_dir():
        return []
    top = folder.resolve()
    found = []
    for here, dirs, files in os.walk(folder):  # (os.walk does not follow links to folders)
        for name in dirs + files:
            path = Path(here) / name
            if not path.is_symlink():
                continue
            rel = path.relative_to(folder)
            target = path.resolve()
            if rel.parts[0] == "wandb" and target.is_relative_to(top):
                continue
            found.append(str(rel))
        if len(found) > 100:
            break
    return sorted(found)


def check_no_links(folder: str | Path) -> None:
    """Refuse an output folder that holds symbolic links (`links_in`): every file a command
    writes or reads there would otherwise be one outside it.

    Raises:
        ConfigError: one line naming the first links.
    """
    found = links_in(folder)
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise ConfigError(
            f"{folder} holds symbolic links ({shown}): a run folder is written and read only "
            "through plain files; remove them (or copy the run with cp -rL) and run again"
        )


def make_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents), make sure a file can be created in it, and remove
    the temporary files a killed process left there and in its ``checkpoints/``.

    Raises:
        ConfigError: the folder holds symbolic links (`check_no_links`).
        WriteFailed: the folder cannot be created or written (read-only, no permission, full).
    """
    folder = Path(folder)
    check_no_links(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failed(folder, e) from e
    probe_folder(folder, folder)
    for where in (folder, folder / "checkpoints"):  # what a killed run's writes left behind
        for path in remove_stale_temporaries(where):
            log.info("removed %s, left by a process that no longer runs", path)
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
            check_no_links(folder)
            if training and "overwrite" in config:
                if config.get("task_name") == "train":
                    check_new_run(folder, config.get("ckpt_path"), bool(config.get("overwrite")))
                    if config.get("ckpt_path"):  # a damaged resume state makes no run folder
                        from poseaug_pl.train import check_checkpoints

                        check_checkpoints(config)
                else:
                    check_no_results(folder, bool(config.get("overwrite")))
            make_folder(folder)
        except (ConfigError, ValueError) as e:  # (DataError: a ValueError)
            fail(e)
        except WriteFailed as e:
            fail(e, code=1)


def run_config_path(ckpt_path) -> Path:
    """``<run>/config_resolved.yaml`` of the run that wrote ``ckpt_path``."""
    return Path(str(ckpt_path)).expanduser().resolve().parent.parent / "config_resolved.yaml"


def folder_config(folder) -> DictConfig | None:
    """`run_config` of the run folder ``folder`` itself (None if it has no saved config)."""
    return run_config(Path(folder) / "checkpoints" / "last.ckpt")


#: A saved run config is a few kilobytes; a larger file is not one.
MAX_RUN_CONFIG_BYTES = 1 << 20


def run_config(ckpt_path) -> DictConfig | None:
    """The resolved config of the run that wrote ``ckpt_path`` (None if it has none).

    A run folder may come from anyone: its config is YAML data (read with a safe loader), and
    what a saved (resolved) config never holds is refused: a symbolic link, an interpolation
    (``${...}``), YAML anchors or aliases, more than `MAX_RUN_CONFIG_BYTES`.

    Raises:
        ConfigError: a config that is not YAML or holds any of these (one line).
    """
    path = run_config_path(ckpt_path)
    if path.is_symlink():
        raise ConfigError(f"{path}: a symbolic link, not a run's saved config: refused (a run "
                          "folder is read only through plain files)")  # fmt: skip
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_RUN_CONFIG_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes, not a run config (at most "
                          f"{MAX_RUN_CONFIG_BYTES})")  # fmt: skip
    try:
        text = path.read_text()
        if any(isinstance(t, (yaml.AnchorToken, yaml.AliasToken)) for t in yaml.scan(text)):
            why = "which a saved run config never does (an alias bomb loads for minutes)"
            raise ConfigError(f"{path}: holds YAML anchors or aliases, {why}: refused")
        run = OmegaConf.create(text)
    except ConfigError:
        raise
    except Exception as e:  # YAML and OmegaConf errors of every kind
        raise ConfigError(f"{path}: not a readable run config ({type(e).__name__})") from None
    return checked_run_config(run, path)


def checked_run_config(run, source) -> DictConfig:
    """``run`` (a run's saved config: a `DictConfig` or plain dict) if it is one: a mapping
    without interpolations (``${...}``: a saved config is resolved).

    Raises:
        ConfigError: one line naming ``source``.
    """
    if isinstance(run, dict):
        try:
            run = OmegaConf.create(run)
        except Exception as e:  # noqa: BLE001 (keys or values OmegaConf cannot hold)
            raise ConfigError(f"{source}: not a readable run config ({type(e).__name__})") from None
    if not isinstance(run, DictConfig):
        raise ConfigError(f"{source}: not a run config (a mapping expected)")
    raw = OmegaConf.to_yaml(run)  # (to_yaml does not resolve)
    if "${" in raw:
        raise ConfigError(f"{source}: holds an interpolation ('${{...}}'); a run's saved config "
                          "is resolved, so this file was edited: refused")  # fmt: skip
    missing = sorted(OmegaConf.missing_keys(run))
    if missing:
        raise ConfigError(f"{source}: {missing[0]} is '???' (missing); a run's saved config has "
                          "every value, so this file was edited: refused")  # fmt: skip
    return run
