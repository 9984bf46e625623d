"""Start-up checks of a composed config: one clear line for a wrong type or value."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value of the wrong type or outside its allowed values."""


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


#: key -> (type check, description) for the user-facing settings.
CHECKS = {
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "feedback": (lambda v: isinstance(v, bool), "true or false"),
    "test": (lambda v: isinstance(v, bool), "true or false"),
    "test_ckpt": (lambda v: v in ("best", "last"), "'best' or 'last'"),
    "save_predictions": (lambda v: isinstance(v, bool), "true or false"),
    "recipe": (lambda v: v in ("paper", "released"), "'paper' or 'released'"),
    "schedule": (lambda v: v in ("interleaved", "epoch_phases"), "'interleaved' or 'epoch_phases'"),
    "trainer.max_epochs": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1",
    ),  # noqa: E501
    "data.batch_size": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1",
    ),  # noqa: E501
    "data.stride": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1",
    ),  # noqa: E501
    "data.keypoints": (
        lambda v: isinstance(v, str) and v != "",
        "a keypoint source name ('gt', 'sh_pt_mpii', ...)",
    ),  # noqa: E501
    "data.cross_sets": (lambda v: isinstance(v, DictConfig), "a mapping name: path"),
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
    "model.estimator.channels": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1",
    ),  # noqa: E501
    "model.estimator_ckpt": (
        lambda v: v is None or isinstance(v, str),
        "a checkpoint path or null",
    ),  # noqa: E501
}


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
