"""Start-up checks of a composed config: one clear line for a wrong type or value.

Light on purpose (no torch): `poseaug_pl.cli.precheck` runs `validate` before a command's heavy
imports, so that a wrong value costs about a second.
"""

from __future__ import annotations

import logging
import math
import re

from omegaconf import DictConfig, ListConfig, OmegaConf

from poseaug_pl.errors import ConfigError, TrainingDiverged, WriteFailed  # noqa: F401 (their home)
from poseaug_pl.geometry.angles import elevation_range

#: recipe -> the loss form it uses (``capped`` is the released form with other bands).
LOSS_FORM = {"released": "released", "capped": "released", "paper": "paper"}
#: role -> the names `poseaug_pl.models.registry.NETWORKS` builds (kept equal to it by a test).
NETWORK_NAMES = {
    "estimator": ("videopose", "simplebaseline", "semgcn", "stgcn"),
    "augmentor": ("poseaug",),
    "d3d": ("kcs",),
    "d2d": ("pose2d",),
}

#: A test set's name: also a file name (``predictions/<name>.npz``) and a W&B key.
SET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(lo: int):
    return (lambda v: _is_int(v) and v >= lo), f"an integer >= {lo}"


def _int_between(lo: int, hi: int):
    """An integer in ``[lo, hi]``: ``hi`` a ceiling far above any real use, so that a typo or a
    received file cannot ask for more memory than the machine has."""
    return (lambda v: _is_int(v) and lo <= v <= hi), f"an integer from {lo} to {hi:,}"


#: Ceilings of sizes (`_int_between`): network widths, depths, data sizes.
MAX_WIDTH, MAX_DEPTH, MAX_SEQUENCES, MAX_BATCH = 16384, 64, 100_000, 1 << 20
#: The most synthetic training pairs (sequences x 4 cameras x frames) a config may ask for.
MAX_SYNTHETIC_PAIRS = 20_000_000


def _positive():
    return (lambda v: _is_num(v) and v > 0), "a number > 0"


def _non_negative():
    return (lambda v: _is_num(v) and v >= 0), "a number >= 0"


def _is_view_range(v) -> bool:
    """null, or ``[low, high]`` camera-elevation degrees with -80 <= low <= high <= 80."""
    if v is None:
        return True
    if not isinstance(v, ListConfig):
        return False
    try:
        elevation_range(v)
    except ValueError:
        return False
    return True


VIEW_RANGE = (_is_view_range, "null or [low, high] degrees with -80 <= low <= high <= 80")


def _range(positive: bool = False):
    """``[low, high]`` numbers with low <= high (and low > 0 when ``positive``)."""

    def ok(v) -> bool:
        if not (isinstance(v, ListConfig) and len(v) == 2 and all(_is_num(x) for x in v)):
            return False
        return v[0] <= v[1] and (v[0] > 0 or not positive)

    return ok, "[low, high] numbers with low <= high" + (" and low > 0" if positive else "")


#: key -> (type check, description) for the user-facing settings.
CHECKS = {
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "feedback": (lambda v: isinstance(v, bool), "true or false"),
    "test": (lambda v: isinstance(v, bool), "true or false"),
    "test_ckpt": (lambda v: v in ("best", "last"), "'best' or 'last'"),
    "save_predictions": (lambda v: isinstance(v, bool), "true or false"),
    "recipe": (lambda v: v in LOSS_FORM, " or ".join(f"'{k}'" for k in LOSS_FORM)),
    "schedule": (lambda v: v in ("interleaved", "epoch_phases"), "'interleaved' or 'epoch_phases'"),
    "trainer.max_epochs": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1",
    ),  # noqa: E501
    "data.batch_size": _int_between(1, MAX_BATCH),
    "data.stride": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1",
    ),  # noqa: E501
    "data.keypoints": (
        lambda v: isinstance(v, str) and v != "",
        "a keypoint source name ('gt', 'sh_pt_mpii', ...)",
    ),  # noqa: E501
    "data.cross_sets": (
        lambda v: isinstance(v, DictConfig) and all(SET_NAME.fullmatch(str(k)) for k in v),
        "a mapping name: path, each name a letter then letters, digits, '_' or '-' (at most 64)",
    ),
    "data.raised_camera": VIEW_RANGE,
    "data.upright": (lambda v: isinstance(v, bool), "true or false"),
    "model.warmup_epochs": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "an integer >= 0",
    ),  # noqa: E501
    "model.hard_ratio.start": (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "a number",
    ),  # noqa: E501
    "model.hard_ratio.end": (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "a number",
    ),  # noqa: E501
    "model.estimator.channels": _int_between(1, MAX_WIDTH),
    "model.estimator_ckpt": (
        lambda v: v is None or isinstance(v, str),
        "a checkpoint path or null",
    ),  # noqa: E501
}


CHECKS.update(
    {
        **{f"model.lr.{k}": _positive() for k in ("estimator", "augmentor", "discriminator")},
        **{
            f"model.weights.{k}": _non_negative()
            for k in (
                "adv2d",
                "adv3d",
                "reg",
                "feedback_ba",
                "feedback_rt",
                "feedback",
                "view_diversity",
            )
        },  # fmt: skip
        "model.hard_ratio.start": _positive(),
        "model.hard_ratio.end": _positive(),
        "model.hard_ratio.rt_centre": _positive(),
        "model.hard_ratio.rt_half_width": _non_negative(),
        "model.hard_ratio.ba_half_width": _non_negative(),
        "model.d_every": _int_at_least(1),
        **{
            k: _int_between(1, MAX_WIDTH)
            for k in ("model.augmentor.hidden", "model.d3d.channels", "model.d3d.mid",
                      "model.d2d.width")
        },  # fmt: skip
        **{k: _int_between(1, MAX_DEPTH) for k in ("model.augmentor.stages",
                                                   "model.estimator.blocks")},  # fmt: skip
        "model.augmentor.noise_dim": _int_between(0, MAX_WIDTH),
        "model.augmentor.max_length_ratio": _non_negative(),
        "model.augmentor.min_depth": _non_negative(),
        "model.estimator.dropout": (
            (lambda v: v is None or (_is_num(v) and 0 <= v < 1)),
            "a number in [0, 1) or null",
        ),
        "model.bone_swap": (lambda v: isinstance(v, bool), "true or false"),
        "model.train_estimator": (lambda v: isinstance(v, bool), "true or false"),
        "model.definition_jitter.pairs": (
            (lambda v: v in ("none", "augmented", "all")),
            "'none', 'augmented' or 'all'",
        ),
        "model.definition_jitter.hip_width": _range(positive=True),
        "model.definition_jitter.hip_drop": _range(),
        "model.definition_jitter.hip_forward": _range(),
        "model.definition_jitter.head": _range(positive=True),
        "model.definition_jitter.clavicle": _range(positive=True),
        "model.refilm.pairs": (
            (lambda v: v in ("none", "augmented", "all")),
            "'none', 'augmented' or 'all'",
        ),
        "model.refilm.focal": _range(positive=True),
        "model.refilm.depth": _range(positive=True),
        **{
            f"model.{role}.name": (
                (lambda v, t=table: v in t),
                " or ".join(f"'{n}'" for n in table) + " (poseaug_pl.models.registry)",
            )
            for role, table in NETWORK_NAMES.items()
        },
        "model.pool_size": _int_between(1, MAX_BATCH * 16),
        "model.warmup_steps": _int_at_least(0),
        "model.real_finish_epochs": _int_at_least(0),
        "model.grad_clip": _non_negative(),  # 0 turns clipping off
        "data.eval_batch_size": _int_between(1, MAX_BATCH),
        "data.train_sequences": _int_between(1, MAX_SEQUENCES),
        "data.test_sequences": _int_between(0, MAX_SEQUENCES),
        "data.wild_sequences": _int_between(0, MAX_SEQUENCES),
        "data.frames": _int_between(1, MAX_SEQUENCES),
        "callbacks.collapse_guard.on_collapse": (
            (lambda v: v in ("warn", "stop", "restore")),
            "'warn', 'stop' or 'restore'",
        ),
        "data.val_fraction": ((lambda v: _is_num(v) and 0 <= v < 1), "a number in [0, 1)"),
    }
)

log = logging.getLogger(__name__)


def _relations(cfg: DictConfig) -> None:
    """Settings that are fine alone but not together (a run that would waste its time)."""
    augment, test = _get(cfg, "augment"), _get(cfg, "test")
    if _get(cfg, "data.val_fraction") == 0 and test and _get(cfg, "test_ckpt") == "best":
        raise ConfigError(
            "config: data.val_fraction=0 leaves no validation set to choose the "
            "best checkpoint; set test_ckpt=last (or a val_fraction > 0)"
        )
    warmup, epochs = _get(cfg, "model.warmup_epochs"), _get(cfg, "trainer.max_epochs")
    trains = _get(cfg, "model.train_estimator") is not False
    if augment and trains and _is_int(warmup) and _is_int(epochs) and warmup >= epochs:
        raise ConfigError(
            f"config: model.warmup_epochs={warmup} >= trainer.max_epochs={epochs}: "
            "the estimator would never train; lower the warm-up or add epochs"
        )
    finish = _get(cfg, "model.real_finish_epochs")
    if _is_int(finish) and finish > 0:
        if not trains:
            raise ConfigError(
                "config: model.real_finish_epochs > 0 with model.train_estimator=false: an "
                "augmentor pretraining has no estimator to finish; set it to 0"
            )
        if _is_int(epochs) and finish >= epochs:
            raise ConfigError(
                f"config: model.real_finish_epochs={finish} >= trainer.max_epochs={epochs}: "
                "the whole run would be the finish; lower it or add epochs"
            )
        if augment and _is_int(epochs) and _is_int(warmup) and warmup + finish >= epochs:
            raise ConfigError(
                f"config: model.warmup_epochs={warmup} + model.real_finish_epochs={finish} >= "
                f"trainer.max_epochs={epochs}: no epoch would train the estimator on augmented "
                "pairs; lower them or add epochs"
            )
    batch, pool = _get(cfg, "data.batch_size"), _get(cfg, "model.pool_size")
    if augment and _is_int(batch) and _is_int(pool) and batch > pool:
        raise ConfigError(
            f"config: data.batch_size={batch} > model.pool_size={pool}: the fake "
            "pools must hold at least one batch; raise model.pool_size"
        )
    seqs, frames = _get(cfg, "data.train_sequences"), _get(cfg, "data.frames")
    if _is_int(seqs) and _is_int(frames) and seqs * 4 * frames > MAX_SYNTHETIC_PAIRS:
        raise ConfigError(
            f"config: data.train_sequences={seqs} x 4 cameras x data.frames={frames} is "
            f"{seqs * 4 * frames:,} training pairs, more than {MAX_SYNTHETIC_PAIRS:,}: lower them"
        )
    name = _get(cfg, "model.estimator.name")
    if (
        "dropout" in (_get(cfg, "model.estimator") or {})
        and _get(cfg, "model.estimator.dropout") is None
        and name != "stgcn"
    ):
        raise ConfigError(
            f"config: model.estimator.dropout=null is only meaningful for ST-GCN "
            f"(PoseAug's per-layer rates); {name} needs a number"
        )
    diversity, noise = (
        _get(cfg, "model.weights.view_diversity"),
        _get(cfg, "model.augmentor.noise_dim"),
    )
    if augment and _is_num(diversity) and diversity > 0 and noise == 0:
        raise ConfigError(
            "config: model.weights.view_diversity > 0 needs noise: with "
            "model.augmentor.noise_dim=0 both draws are the same and the term does nothing"
        )
    start, end = _get(cfg, "model.hard_ratio.start"), _get(cfg, "model.hard_ratio.end")
    if augment and _is_num(start) and _is_num(end) and start > end:
        log.warning(
            "model.hard_ratio decreases (start %s > end %s): augmentations get easier "
            "during training, the opposite of the paper's schedule",
            start,
            end,
        )


def check_warmup_steps(warmup_steps: int, augmented_epochs: int, batches_per_epoch) -> None:
    """Refuse a ``model.warmup_steps`` that outlasts the augmented epochs (`ConfigError`).

    The estimator first trains at augmentor step ``warmup_steps`` (steps count over the whole
    run, one per training batch of an augmented epoch); the run has ``augmented_epochs`` x
    ``batches_per_epoch`` of them before the real-data finish. Known only once the trainer has
    set up the training data (``PoseAugModule.on_train_start``); an infinite count passes.
    """
    if not math.isfinite(batches_per_epoch) or not _is_int(warmup_steps):
        return
    total = augmented_epochs * int(batches_per_epoch)
    if warmup_steps >= total:
        raise ConfigError(
            f"config: model.warmup_steps={warmup_steps} >= the {total} augmented training "
            f"batches of this run ({augmented_epochs} epochs x {int(batches_per_epoch)} batches "
            "before any real-data finish): the estimator would never train on augmented pairs; "
            "lower model.warmup_steps or add epochs"
        )


#: ``trainer.accelerator`` values that need a CUDA GPU.
CUDA_ACCELERATORS = ("gpu", "cuda")


def check_devices(cfg: DictConfig) -> None:
    """Refuse a GPU trainer config (``trainer=gpu``, ``trainer=ddp``, ...) on a machine without
    a visible CUDA GPU, or with fewer GPUs than ``trainer.devices`` asks for (`ConfigError`).

    Separate from `validate`: it is about this machine, not the config (an experiment written
    for a GPU machine still passes `validate` on a laptop).
    """
    accelerator = str(_get(cfg, "trainer.accelerator") or "").lower()
    if accelerator not in CUDA_ACCELERATORS:
        return
    import torch  # (only for a GPU trainer)

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        raise ConfigError(
            f"config: trainer.accelerator={accelerator} but no GPU is visible on this machine "
            "(torch.cuda.is_available() is False); use trainer=cpu (or trainer=ddp_cpu for "
            "two CPU processes)"
        )
    devices = _get(cfg, "trainer.devices")
    if _is_int(devices) and devices > visible:
        raise ConfigError(
            f"config: trainer.devices={devices} but only {visible} GPU(s) are visible; "
            f"set trainer.devices={visible} (or fewer)"
        )


#: Top-level settings that are also the module's arguments (``model.augment: ${augment}``).
MODULE_KEYS = ("augment", "feedback", "recipe", "schedule")


def module_defaults() -> dict:
    """The module's arguments as ``conf/model/poseaug.yaml`` gives them under ``conf/train.yaml``
    and the released recipe (``conf/recipe/released.yaml``), without the networks' specs and
    initialisation files: the defaults of an older checkpoint's missing arguments."""
    from poseaug_pl.utils import CONFIG_DIR

    train = OmegaConf.load(CONFIG_DIR / "train.yaml")
    recipe = OmegaConf.load(CONFIG_DIR / "recipe" / "released.yaml")
    model = OmegaConf.load(CONFIG_DIR / "model" / "poseaug.yaml")
    model.pop("defaults", None)
    root = OmegaConf.create({k: train[k] for k in MODULE_KEYS if k in train})
    root = OmegaConf.merge(root, {"model": model}, recipe)
    args = OmegaConf.to_container(root.model, resolve=True)
    for key in ("estimator", "estimator_ckpt", "augmentor_ckpt"):
        args.pop(key, None)
    return args


def check_module_arguments(args: dict) -> str | None:
    """The first of a module's arguments (e.g. a checkpoint's) that `CHECKS` refuses, as one
    line; None when every one passes. Network specs are left to the registry, which builds
    them (`poseaug_pl.models.registry`)."""
    try:
        cfg = OmegaConf.create({"model": args, **{k: args.get(k) for k in MODULE_KEYS}})
    except Exception as e:  # not representable as a config at all
        return f"module arguments that are not plain settings ({type(e).__name__})"
    networks = tuple(f"model.{role}." for role in NETWORK_NAMES)
    for key, (ok, what) in CHECKS.items():
        if (key.startswith("model.") and not key.startswith(networks)) or key in MODULE_KEYS:
            value = _get(cfg, key)
            if value is not None and not ok(value):
                return f"{key} must be {what}, got {value!r}"
    return None


def validate(cfg: DictConfig) -> None:
    """Raise `ConfigError` naming the first setting of the wrong type or value.

    Only keys present in ``cfg`` are checked; misspelt keys are already refused by Hydra's
    struct mode when the command line is parsed.
    """
    for key, (ok, what) in CHECKS.items():
        if OmegaConf.select(cfg, key, default="__absent__", throw_on_missing=False) == "__absent__":
            continue
        value = _get(cfg, key)
        if not ok(value):
            raise ConfigError(
                f"config: {key} must be {what}, got {value!r} ({type(value).__name__})"
            )
    _relations(cfg)
