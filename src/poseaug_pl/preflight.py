"""What a command's config asks of the disk and of its values, checked before the heavy imports.

`poseaug_pl.cli.precheck` composes the command line's config and calls `problem` before the
command imports torch and Lightning (5-30 seconds), so that a wrong value or a missing file
costs well under a second. The commands make the same checks later with the same functions (the
datamodules, `poseaug_pl.models.ckpt.read_checkpoint`, `poseaug_pl.data.keypoints`), so the line
is the same either way. No torch here.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from poseaug_pl.errors import ConfigError

#: Human3.6M's 3D file in the VideoPose3D layout.
FILE_3D = "data_3d_h36m.npz"


def file_2d(keypoints: str) -> str:
    """File name of a 2D keypoint source, e.g. ``sh_pt_mpii`` -> ``data_2d_h36m_sh_pt_mpii.npz``."""
    return f"data_2d_h36m_{keypoints}.npz"


def missing_h36m(root, keypoints: str) -> str | None:
    """The line for a Human3.6M folder that lacks a file the run reads, or None."""
    root = Path(root).expanduser()
    needed = [root / FILE_3D] + ([root / file_2d(keypoints)] if keypoints != "gt" else [])
    for path in needed:
        if not path.is_file():
            return (f"{path}: file not found; Human3.6M (VideoPose3D layout) was looked for in "
                    f"{root.resolve()}; point data.root (or $POSEAUG_H36M) at the folder holding "
                    "it")  # fmt: skip
    return None


def missing_cross_set(name: str, path) -> str | None:
    """The line for a cross-dataset set's file that does not exist, or None."""
    if not Path(path).expanduser().is_file():
        return f"{path}: file not found (cross-dataset set {name!r})"
    return None


def missing_checkpoint(path, what: str = "checkpoint") -> str | None:
    """The line for a checkpoint path that is a folder or does not exist, or None."""
    path = Path(path).expanduser()
    if path.is_dir():
        return (f"{path}: a folder, not a {what}: name a .ckpt file, or a run folder holding "
                "checkpoints/best.ckpt")  # fmt: skip
    if not path.is_file():
        return f"{path}: {what} not found"
    return None


def missing_input(path) -> str | None:
    """The line for a keypoint file to lift that does not exist, or None."""
    path = Path(path).expanduser()
    return None if path.is_file() else f"{path}: input file not found"


def required_line(key: str) -> str:
    """The line for a mandatory setting (``???``) the command line left unset."""
    return f"config: {key} is required: add {key}=..."


def _unset(node, prefix: str = "") -> str | None:
    """The first key left ``???`` in a plain (unresolved) config, Hydra's own node aside."""
    if node == "???":
        return prefix
    if not isinstance(node, dict):
        return None
    for key, value in node.items():
        if not prefix and key == "hydra":
            continue
        found = _unset(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def _checkpoint(value, what: str) -> str | None:
    """`missing_checkpoint` for a set value; a run folder (`cli.checkpoint_argument`) passes."""
    if not isinstance(value, str) or not value:
        return None
    if Path(value).expanduser().is_dir() and (Path(value).expanduser() / "checkpoints").is_dir():
        return None
    return missing_checkpoint(value, what)


def _train(cfg: DictConfig) -> str | None:
    from poseaug_pl.training.config import validate

    if _get(cfg, "ckpt_path"):  # a resume trains with its run's own config
        return _checkpoint(_get(cfg, "ckpt_path"), "ckpt_path")
    try:
        validate(cfg)
    except ConfigError as e:
        return str(e)
    for key in ("model.estimator_ckpt", "model.augmentor_ckpt"):
        if problem := _checkpoint(_get(cfg, key), key):
            return problem
    if str(_get(cfg, "data._target_") or "").endswith("H36MDataModule"):
        if problem := missing_h36m(_get(cfg, "data.root"), _get(cfg, "data.keypoints") or "gt"):
            return problem
    for name, path in (_get(cfg, "data.cross_sets") or {}).items():
        if problem := missing_cross_set(str(name), path):
            return problem
    return None


def problem(command: str, cfg: DictConfig) -> str | None:
    """The first wrong value or missing file of ``command``'s composed ``cfg``, as the command
    would report it later (one line), or None. Values are checked for ``train`` (not for a
    resume, whose run brings its own config); checkpoints for every command that names one,
    Human3.6M's files and the cross-dataset sets for ``train``, the input file for ``predict``.
    May raise on a config it cannot read: the caller leaves those to the command."""
    if required := _unset(OmegaConf.to_container(cfg, resolve=False)):
        return required_line(required)
    if command == "train":
        return _train(cfg)
    if command in ("evaluate", "predict", "export"):
        if problem := _checkpoint(_get(cfg, "ckpt_path"), "checkpoint"):
            return problem
    if command == "predict" and isinstance(_get(cfg, "input"), str):
        return missing_input(_get(cfg, "input"))
    return None
