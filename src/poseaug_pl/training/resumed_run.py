"""A resume continues the run it resumes.

``python -m poseaug_pl.train ckpt_path=<run>/checkpoints/last.ckpt`` alone trains on in ``<run>``
(the command line gets ``hydra.run.dir=<run>``: `run_folder_argument`) with the run's own saved
config (``<run>/config_resolved.yaml``, read as data by `runfolder.run_config`), whatever
experiment the command line composed by default (`resumed_config`).

What the run trained comes from its config: the experiment, the model, the data, the schedule,
the seed, the trainer's settings. The command line may change where and how it runs
(`HOW_KEYS`: the devices, more epochs, the data's location, the loggers and callbacks, the
paths; without such overrides the run's loggers and its callbacks' numbers and switches are
kept; called from Python, without a command line, these come from the config passed); an
override of anything else must equal the run's value, or the resume is refused with
one line (a different run is started from the checkpoint's weights with
``model.estimator_ckpt=``). Nothing in the saved config names a callable we would call: the
loggers, callbacks and paths are the command line's, and a ``_target_`` kept from the file
(the data module, the trainer, a strategy) must be one our own configs name (`known_targets`).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from poseaug_pl.training.config import ConfigError
from poseaug_pl.training.runfolder import checked_run_config, run_config, run_config_path
from poseaug_pl.utils import CONFIG_DIR

log = logging.getLogger(__name__)

#: Settings a resume takes from the command line when given there: where and how the run goes on.
HOW_KEYS = (
    "ckpt_path", "overwrite", "test", "test_ckpt", "optimized_metric",
    "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
    "trainer.precision", "trainer.max_epochs", "trainer.enable_progress_bar",
    "data.root", "data.cache_dir", "data.eval_batch_size",
)  # fmt: skip
#: Sections always taken from the command line's composition (they hold paths and callables).
CURRENT_SECTIONS = ("paths", "logger", "callbacks", "hydra")
#: Config groups whose choice changes only where and how a run goes on.
HOW_GROUPS = ("trainer", "logger", "callbacks", "paths", "hydra")


@functools.cache
def known_targets() -> frozenset[str]:
    """Every ``_target_`` our own configs (``conf/``) name."""
    found = set()
    for path in CONFIG_DIR.rglob("*.yaml"):
        for line in path.read_text().splitlines():
            key, sep, value = line.strip().partition(":")
            if sep and key == "_target_" and value.split("#")[0].strip() not in ("", "null"):
                found.add(value.split("#")[0].strip())
    return frozenset(found)


def _targets(node, where: str = ""):
    """``(dotted key, value)`` of every ``_target_`` in a plain container."""
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{where}.{k}" if where else str(k)
            if k == "_target_":
                yield key, v
            else:
                yield from _targets(v, key)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _targets(v, f"{where}[{i}]")


def run_folder_argument(argv: list[str]) -> list[str]:
    """The command line of a ``train`` that resumes with ``ckpt_path=<run>/checkpoints/X.ckpt``
    and names no output folder: ``hydra.run.dir=<run>`` added (the run goes on in its folder).
    Anything else is returned unchanged."""
    ckpt = next((a.split("=", 1)[1] for a in argv if a.startswith("ckpt_path=")), None)
    named = any(a.lstrip("+").startswith(("hydra.run.dir=", "paths.output_dir="))
                for a in argv)  # fmt: skip
    if not ckpt or named or any(a in ("-m", "--multirun") for a in argv):
        return argv
    path = Path(ckpt).expanduser()
    if path.parent.name != "checkpoints" or not path.is_file():
        return argv  # (train says what is wrong with it)
    return [*argv, f"hydra.run.dir={path.resolve().parent.parent}"]


def _overrides() -> list | None:
    """The command line's overrides (None outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not HydraConfig.initialized():
        return None
    return OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))


def _is_how(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in (*HOW_KEYS, *CURRENT_SECTIONS))


def _equal(a, b) -> bool:
    plain = lambda v: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v  # noqa: E731
    return plain(a) == plain(b)


def resumed_config(cfg: DictConfig) -> DictConfig:
    """The config a resume (``cfg.ckpt_path``) trains with: the run's own (`module docstring`).

    Raises:
        ConfigError: the run folder holds no saved config; an override changes what the run
            trained; the saved config names a ``_target_`` our configs do not.
    """
    ckpt = cfg.ckpt_path
    run = run_config(ckpt)
    if run is None:  # a checkpoint without its run folder: the config it carries
        from poseaug_pl.models.ckpt import read_checkpoint

        saved = read_checkpoint(ckpt, "ckpt_path").get("run_config")
        if saved is None:
            raise ConfigError(
                f"ckpt_path={ckpt}: neither its run folder nor the checkpoint holds the run's "
                "config: resume from a run folder's checkpoints/last.ckpt, or start a new run "
                f"from these weights with model.estimator_ckpt={ckpt}"
            )
        run = checked_run_config(saved, f"{ckpt} (run_config)")
    if not _equal(run.get("task_name"), "train"):
        raise ConfigError(f"ckpt_path={ckpt}: its run folder's config is not a training run's")
    given = {}
    overrides = _overrides()
    if overrides is None:  # the Python API: the caller composed where and how it runs
        given = {k: True for k in (*HOW_KEYS, "logger", "callbacks")
                 if OmegaConf.select(cfg, k, default=None) is not None}  # fmt: skip
    for o in overrides or ():
        key = o.key_or_group.lstrip("+~")
        if key in ("experiment",):
            if not _equal(cfg.get("experiment_name"), run.get("experiment_name")):
                raise _differs(ckpt, o.input_line, f"experiment {run.get('experiment_name')}")
        elif "." not in key and (CONFIG_DIR / key).is_dir():  # a group choice
            if key not in HOW_GROUPS and not _equal(cfg.get(key), run.get(key)):
                raise _differs(ckpt, o.input_line, f"{key} as the run had it")
            given[key] = True
        else:
            given[key] = True
            theirs = OmegaConf.select(run, key, default=None)
            if not _is_how(key) and not _equal(OmegaConf.select(cfg, key, default=None), theirs):
                raise _differs(ckpt, o.input_line, f"{key}={theirs}")
    plain = OmegaConf.to_container(run, resolve=False)
    now = OmegaConf.to_container(cfg, resolve=False)
    out = {k: v for k, v in plain.items() if k not in CURRENT_SECTIONS}
    for key in CURRENT_SECTIONS:
        if key in now:
            out[key] = now[key]
    if "logger" not in given:  # the run's loggers (a W&B run keeps logging to W&B)
        out["logger"] = _loggers(run.get("logger"), now.get("logger"))
    if "callbacks" not in given:  # our callbacks with the run's numbers and switches
        out["callbacks"] = _numbers_from(plain.get("callbacks"), now.get("callbacks"))
    for key in now:  # settings this version has and the run's config lacks
        out.setdefault(key, now[key])
    out["ckpt_path"], out["overwrite"] = now.get("ckpt_path"), now.get("overwrite", False)
    if isinstance(out.get("model"), dict):  # restored from the checkpoint, not read again
        out["model"]["estimator_ckpt"] = out["model"]["augmentor_ckpt"] = None
    if isinstance(out.get("data"), dict) and "cache_dir" in out["data"]:
        out["data"]["cache_dir"] = None  # the default cache: a run folder does not say where
    if given.get("trainer"):  # trainer=NAME: its devices, the run's other settings
        for key in ("accelerator", "devices", "num_nodes", "strategy", "precision"):
            if key in (now.get("trainer") or {}):
                out.setdefault("trainer", {})[key] = now["trainer"][key]
    merged = OmegaConf.create(out)
    for key in given:
        if _is_how(key) and key not in CURRENT_SECTIONS and "." in key:
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key), force_add=True)
    foreign = [(k, v) for k, v in _targets(OmegaConf.to_container(merged, resolve=False))
               if v is not None and v not in known_targets()]  # fmt: skip
    if foreign:
        key, value = foreign[0]
        raise ConfigError(f"{run_config_path(ckpt)}: {key}={value!r} is not one of the package's "
                          "own classes: refused (a run's config is data)")  # fmt: skip
    log.info("resuming %s with its run's config (experiment %s)", ckpt,
             merged.get("experiment_name"))  # fmt: skip
    return merged


def _loggers(theirs, ours):
    """The logger section of the run's logger choice (``logger=[csv,wandb]``), composed from our
    own configs (its values re-derived here, none taken from the file); ``ours`` when it cannot
    be composed (outside a Hydra run, or an unknown logger)."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    names = list(theirs or {}) if isinstance(theirs, (dict, DictConfig)) else None
    if names is None or not GlobalHydra.instance().is_initialized():
        return ours
    if not all((CONFIG_DIR / "logger" / f"{n}.yaml").is_file() for n in names):
        return ours
    choice = f"logger=[{','.join(names)}]" if names else "logger=none"
    try:
        composed = compose("train", overrides=[choice])
    except Exception:  # noqa: BLE001 (then the command line's loggers)
        return ours
    return OmegaConf.to_container(composed, resolve=False).get("logger")


def _numbers_from(theirs, ours):
    """``ours`` (a plain config section) with the numbers and true/false settings ``theirs``
    holds at the same keys (a progress bar's refresh rate, a figure's interval); names, paths
    and classes stay ours."""
    if not isinstance(ours, dict) or not isinstance(theirs, dict):
        return ours
    out = dict(ours)
    for key, value in ours.items():
        other = theirs.get(key)
        if isinstance(value, dict):
            out[key] = _numbers_from(other, value)
        elif isinstance(value, (bool, int, float)) and type(other) is type(value):
            out[key] = other
    return out


def _differs(ckpt, override: str, theirs: str) -> ConfigError:
    return ConfigError(
        f"config: {override} changes what the resumed run trained ({theirs}); a resume continues "
        f"the run as it was: remove it, or start a new run from its weights with "
        f"model.estimator_ckpt={ckpt}"
    )
