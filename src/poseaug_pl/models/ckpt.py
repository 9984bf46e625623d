"""Reading training checkpoints: tensors and plain data only, one clear line for a bad file.

Nothing read from a checkpoint runs code: files load with torch's ``weights_only`` loader,
networks are built by name (`poseaug_pl.models.registry`), and weights must fit exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from poseaug_pl.data.poseset import DataError
from poseaug_pl.preflight import missing_checkpoint

log = logging.getLogger(__name__)

#: Module arguments of earlier versions that were retired (docs/experiments/
#: 2026-12-05-retired-options.md), with the value that is the module's behaviour today.
RETIRED = {
    "feedback_mode": "train",
    "aug_norm": "batch",
    "aug_bn_stats": False,
    "estimator_update": "alternate",
    "bone_jitter": 0.0,
    "d2d_real_views": None,
    "aug_batch": "rebatch",
    "view_diversity_of": "rotation",
    "view_diversity_cap": 90.0,
}
#: Earlier arguments that left the module: initialisation files (``train`` reads them), the
#: trainer's epochs, the collapse callback's setting.
MOVED_OUT = ("estimator_ckpt", "augmentor_ckpt", "max_epochs", "on_collapse")


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """Load a checkpoint written by ``train`` onto the CPU (tensors only, no code).

    Args:
        path: the ``.ckpt`` file.
        what: how the message names it (``checkpoint``, ``model.estimator_ckpt``, ...).

    Raises:
        DataError: the file is missing, unreadable or truncated, or holds no ``state_dict``.
    """
    path = Path(path).expanduser()
    if problem := missing_checkpoint(path, what):
        raise DataError(problem)
    try:
        # memory-mapped: checking a file costs no full read; tensors load on first use
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # pickle, zip and torch errors all mean "not a checkpoint"
        raise DataError(f"{path}: not a readable {what} ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise DataError(f"{path}: not a poseaug-pl training checkpoint (no state_dict)")
    check_tensor_sizes(ckpt, path, path.stat().st_size)
    return ckpt


def _tensors(node, depth: int = 0):
    """Every tensor in nested dicts, lists and tuples (at most 32 levels deep)."""
    if isinstance(node, torch.Tensor):
        yield node
    elif depth < 32 and isinstance(node, dict):
        for value in node.values():
            yield from _tensors(value, depth + 1)
    elif depth < 32 and isinstance(node, (list, tuple)):
        for value in node:
            yield from _tensors(value, depth + 1)


def check_tensor_sizes(ckpt: dict, path, file_bytes: int) -> None:
    """Refuse tensors larger than the file that holds them, before anything uses them: each
    tensor's elements must lie in bytes of its own storage (no stride-0 or overlapping view of a
    few bytes posing as a large weight), and all of them together in about the file's size.

    Raises:
        DataError: one line naming the file and the first such tensor's shape.
    """
    total = 0
    for t in _tensors(ckpt):
        size = t.numel() * t.element_size()
        total += size
        if size > t.untyped_storage().nbytes() or (t.numel() and min(t.stride(), default=1) < 0):
            stored = t.untyped_storage().nbytes()
            raise DataError(f"{path}: a {tuple(t.shape)} tensor that its {stored} stored bytes "
                            "cannot hold (a view posing as a larger tensor): refused")  # fmt: skip
    if total > file_bytes * 1.05 + (1 << 20):
        raise DataError(f"{path}: its tensors claim {total / 2**20:.0f} MiB, more than the "
                        f"{file_bytes / 2**20:.0f} MiB file holds (views sharing storage): "
                        "refused")  # fmt: skip


def sub_state(ckpt: dict, prefix: str) -> dict:
    """The ``prefix.*`` entries of a checkpoint's ``state_dict``, with the prefix removed."""
    head = prefix + "."
    return {k.removeprefix(head): v for k, v in ckpt["state_dict"].items() if k.startswith(head)}


def _describe(spec) -> str:
    """``videopose channels=1024 blocks=4`` of a network spec (for messages)."""
    if not isinstance(spec, dict):
        return "?"
    name = spec.get("name") or str(spec.get("_target_", "?")).rsplit(".", 1)[-1]
    return " ".join(
        [str(name), *(f"{k}={v}" for k, v in spec.items() if k not in ("name", "_target_"))]
    )


def check_fits(net: nn.Module, state: dict, path, what: str, here=None, there=None,
               any_shape: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Raise unless ``state`` holds every weight of ``net``, no other, each of its shape.

    Args:
        net: the network (or module) the weights are for.
        state: its ``state_dict`` as read from ``path``.
        path, what: the file and how to name its part in the message.
        here, there: the network specs of ``net`` and of the checkpoint, named in a message
            about another width or another network.
        any_shape: key prefixes whose shape may differ (training state the loader resizes).

    Raises:
        DataError: missing or extra weights (the first few named) or another shape (both
            shapes named, and both specs where given).
    """
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    specs = f" (checkpoint: {_describe(there)}; this model: {_describe(here)})" if here else ""
    if missing:
        raise DataError(f"{path}: {what} lacks {len(missing)} of this model's weights, e.g. "
                        f"{', '.join(missing[:3])}{specs}")  # fmt: skip
    if extra:
        raise DataError(f"{path}: {what} has {len(extra)} weights this model lacks, e.g. "
                        f"{', '.join(extra[:3])}{specs}")  # fmt: skip
    for k, v in own.items():
        theirs = state[k]
        if not isinstance(theirs, torch.Tensor):
            raise DataError(f"{path}: {what}'s {k} is not a tensor ({type(theirs).__name__})")
        if theirs.is_floating_point() and not k.startswith("pool") and not theirs.isfinite().all():
            raise DataError(f"{path}: {what}'s {k} holds NaN or inf (a diverged model)")
        if theirs.shape != v.shape and not k.startswith(any_shape):
            shapes = f"{tuple(theirs.shape)} there and {tuple(v.shape)} here"
            raise DataError(f"{path}: {what} does not fit this model: {k} is {shapes}{specs}")


def load_weights(net: nn.Module, state: dict, path, what: str, here=None, there=None) -> None:
    """`check_fits`, then load ``state`` into ``net``."""
    check_fits(net, state, path, what, here, there)
    net.load_state_dict(state)


def hyper_parameters(ckpt: dict, path) -> dict:
    """The checkpoint's ``hyper_parameters``, checked to be plain data naming no callable.

    Lightning would import and call a ``_instantiator`` path stored here; any ``_``-prefixed
    key is refused.

    Raises:
        DataError: no hyper-parameters, a ``_``-prefixed key, or a value that is not plain data.
    """
    from poseaug_pl.models.registry import is_plain

    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict) or "estimator" not in hp:
        raise DataError(f"{path}: not a poseaug-pl training checkpoint (no estimator config)")
    for key, value in hp.items():
        if not isinstance(key, str) or key.startswith("_"):
            raise DataError(f"{path}: refused hyper-parameter {key!r} (it would name code to run)")
        if not is_plain(value):
            raise DataError(f"{path}: hyper-parameter {key!r} is not plain data "
                            f"({type(value).__name__})")  # fmt: skip
    return hp


def _fits_on_meta(build, state: dict, path, what: str, any_shape: tuple[str, ...] = ()):
    """Build with ``build()`` on the meta device (no memory) and `check_fits` ``state``.

    So a checkpoint's sizes (channels, blocks, pool size) allocate nothing until the weights it
    holds are known to match them: loading costs at most what the file itself holds.
    """
    try:
        with torch.device("meta"):
            net = build()
    except (ValueError, TypeError, RuntimeError, MemoryError) as e:  # SpecError, bad values
        raise DataError(
            f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    check_fits(net, state, path, what, any_shape=any_shape)


def build_network(ckpt: dict, path, role: str = "estimator") -> nn.Module:
    """The ``role`` network of a checkpoint, built by name from the package's own table.

    Built on the meta device first and checked against the checkpoint's weights
    (`_fits_on_meta`), then for real.

    Raises:
        DataError: the checkpoint names an unknown network or argument, or weights that do not
            fit it (one line with the file).
    """
    from poseaug_pl.models.registry import build

    spec = hyper_parameters(ckpt, path).get(role)
    _fits_on_meta(lambda: build(role, spec), sub_state(ckpt, role), path,
                  f"the checkpoint's {role}")  # fmt: skip
    return build(role, spec)


def upgrade_arguments(hp: dict, path) -> dict:
    """A checkpoint's module arguments in today's form: ``ba_half_width`` and ``rt_ratio`` join
    ``hard_ratio``; retired options (`RETIRED`) and `MOVED_OUT` are dropped, with a warning
    when a retired one differs from today's behaviour (the estimator's weights load as they
    are; training on from them follows today's design)."""
    hp = dict(hp)
    hard = dict(hp.get("hard_ratio") or {})
    if "ba_half_width" in hp:
        hard.setdefault("ba_half_width", hp.pop("ba_half_width"))
    rt = hp.pop("rt_ratio", None)
    if isinstance(rt, dict):
        hard.setdefault("rt_centre", rt.get("centre"))
        hard.setdefault("rt_half_width", rt.get("half_width"))
    if hard:
        hp["hard_ratio"] = hard
    for key, today in RETIRED.items():
        if key in hp and hp.pop(key) != today:
            log.warning("%s: trained with the retired option %s (see docs/experiments/); loaded "
                        "as today's design, whose %s is %r", path, key, key, today)  # fmt: skip
    for key in MOVED_OUT:
        hp.pop(key, None)
    return hp


def load_module(path, **overrides):
    """A `PoseAugModule` rebuilt from a checkpoint's plain hyper-parameters and weights.

    The safe counterpart of Lightning's ``load_from_checkpoint``: networks are built by name
    (`poseaug_pl.models.registry`), arguments are brought to today's form
    (`upgrade_arguments`), missing ones take ``conf/model/poseaug.yaml``'s defaults, all are
    checked as a config is (`training.config.check_module_arguments`), ``_``-prefixed ones are
    refused, and no file the checkpoint names is read.

    Args:
        path: a ``.ckpt`` written by ``train``.
        **overrides: constructor arguments that replace the stored ones (`MOVED_OUT` ones, as
            earlier versions took them, are ignored).

    Raises:
        DataError: an unreadable or foreign file, an unknown network, a bad argument, missing
            or misfitting weights; one line naming the file.
    """
    import inspect

    from poseaug_pl.training.config import check_module_arguments, module_defaults
    from poseaug_pl.training.module import PoseAugModule

    ckpt = read_checkpoint(path)
    params = set(inspect.signature(PoseAugModule.__init__).parameters) - {"self"}
    args = module_defaults()
    for key, value in upgrade_arguments(hyper_parameters(ckpt, path), path).items():
        if key in params:
            # settings dicts (lr, weights, ...) fill missing keys; a network's spec is its own
            merge = key not in ("augmentor", "d3d", "d2d") and isinstance(value, dict)
            args[key] = (
                {**args[key], **value} if merge and isinstance(args.get(key), dict) else value
            )
    args.update({k: v for k, v in overrides.items() if k not in MOVED_OUT})  # (ignored today)
    state = ckpt["state_dict"]
    pool = state.get("pool3d.items")
    if isinstance(pool, torch.Tensor) and pool.ndim == 3:  # the pools' size is what they hold
        args["pool_size"] = len(pool)
    if (problem := check_module_arguments(args)) is not None:
        raise DataError(f"{path}: {problem}")
    _fits_on_meta(lambda: PoseAugModule(**args), state, path, "checkpoint")
    model = PoseAugModule(**args)
    model.load_state_dict(state)
    return model


def initialise_estimator(model, path) -> None:
    """Initialise ``model``'s estimator from a checkpoint of the module (``model.estimator_ckpt``,
    e.g. a baseline run); the weights must fit exactly."""
    ckpt = read_checkpoint(path, "model.estimator_ckpt")
    est = sub_state(ckpt, "estimator")
    if not est:
        raise DataError(f"{path}: no estimator weights in this checkpoint")
    there = (ckpt.get("hyper_parameters") or {}).get("estimator")
    load_weights(model.estimator, est, path, "model.estimator_ckpt's estimator",
                 here=model.hparams.estimator, there=there)  # fmt: skip
    log.info("estimator initialised from %s", path)


def initialise_augmentor(model, path) -> None:
    """Initialise ``model``'s augmentor, both discriminators and fake pools from a checkpoint
    (``model.augmentor_ckpt``: a stand-alone augmentor pretraining run), so that runs which
    only differ after the warm-up (a sweep over the hard ratio) do not repeat it. Pools of
    another size start empty."""
    ckpt = read_checkpoint(path, "model.augmentor_ckpt")
    if not sub_state(ckpt, "augmentor"):
        raise DataError(f"{path}: no augmentor weights in this checkpoint")
    there = ckpt.get("hyper_parameters") or {}
    for role in ("augmentor", "d3d", "d2d"):
        load_weights(getattr(model, role), sub_state(ckpt, role), path,
                     f"model.augmentor_ckpt's {role}", here=model.hparams[role],
                     there=there.get(role))  # fmt: skip
    for name in ("pool3d", "pool2d"):
        pool, part = getattr(model, name), sub_state(ckpt, name)
        if part.get("items") is not None and part["items"].shape == pool.items.shape:
            pool.load_state_dict(part)
    log.info("augmentor and discriminators initialised from %s", path)
