"""Networks built from names: what a config, a checkpoint or a run folder may say about one.

A network is described by a plain dict, its *spec*: ``{"name": "videopose", "channels": 1024}``.
The name picks a class from the package's own table (`NETWORKS`); every other key must be an
argument of that class's constructor, with a plain value (number, string, bool, None, or a list
of those). Nothing else is ever imported or called, so a checkpoint's ``hyper_parameters`` can
name nothing outside this table: a file that does is refused with one line.

Checkpoints written before names existed carry Hydra's ``_target_`` with the class's import
path; the paths of the classes below still load (`LEGACY_TARGETS`), any other is refused.
"""

from __future__ import annotations

import inspect

from torch import nn

from poseaug_pl.models.augmentor import Augmentor
from poseaug_pl.models.discriminators import KCSDiscriminator, Pose2DDiscriminator
from poseaug_pl.models.estimators import STGCN, SemGCN, SimpleBaseline, VideoPose

#: role -> name -> class: every network a spec may build.
NETWORKS: dict[str, dict[str, type[nn.Module]]] = {
    "estimator": {
        "videopose": VideoPose,
        "simplebaseline": SimpleBaseline,
        "semgcn": SemGCN,
        "stgcn": STGCN,
    },  # fmt: skip
    "augmentor": {"poseaug": Augmentor},
    "d3d": {"kcs": KCSDiscriminator},
    "d2d": {"pose2d": Pose2DDiscriminator},
}

#: role -> the name used when a spec gives none (augmentor and discriminators have one class).
DEFAULT_NAME = {"augmentor": "poseaug", "d3d": "kcs", "d2d": "pose2d"}

#: Hydra ``_target_`` paths of earlier checkpoints -> (role, name).
LEGACY_TARGETS: dict[str, tuple[str, str]] = {
    path: (role, name)
    for role, table in NETWORKS.items()
    for name, cls in table.items()
    for path in (f"poseaug_pl.models.{cls.__name__}", f"{cls.__module__}.{cls.__name__}")
}


#: The largest integer a spec may give (a width or a count): larger ones are no network of
#: this field's, and a file must not make loading build a huge one.
MAX_INT = 1 << 13


class SpecError(ValueError):
    """A network spec that names an unknown network or carries an argument it cannot take."""


def is_plain(value) -> bool:
    """Whether ``value`` is a number, string, bool, None, or a list/tuple/dict of such values."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def network_name(role: str, spec: dict | None) -> str:
    """The registered name of a spec (``name``, or an earlier checkpoint's known ``_target_``).

    Raises:
        SpecError: an unknown role, name or ``_target_``.
    """
    if role not in NETWORKS:
        raise SpecError(f"unknown network role {role!r}")
    spec = spec or {}
    if not isinstance(spec, dict):
        raise SpecError(f"the {role} must be a mapping with a 'name', got {type(spec).__name__}")
    known = ", ".join(NETWORKS[role])
    if "_target_" in spec:
        target = spec["_target_"]
        hit = LEGACY_TARGETS.get(target) if isinstance(target, str) else None
        if hit is None or hit[0] != role:
            raise SpecError(f"unknown {role} {target!r} (known: {known})")
        if spec.get("name", hit[1]) != hit[1]:
            raise SpecError(f"the {role} names both {spec['name']!r} and {target!r}")
        return hit[1]
    name = spec.get("name", DEFAULT_NAME.get(role))
    if name not in NETWORKS[role]:
        raise SpecError(f"unknown {role} {name!r} (known: {known})")
    return name


def checked_arguments(args: dict, *classes: type, owner: str) -> dict:
    """``args`` when every key is a keyword argument of a constructor of ``classes`` and every
    value is plain data (`is_plain`).

    Raises:
        SpecError: ``<owner> takes no argument 'key'`` or a value that is not plain data.
    """
    params = {k: p for c in classes for k, p in inspect.signature(c.__init__).parameters.items()}
    for key, value in args.items():
        kind = params[key].kind if key in params and key != "self" else None
        if kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            raise SpecError(f"{owner} takes no argument {key!r}")
        if not is_plain(value):
            raise SpecError(f"{owner}: {key!r} must be plain data, got {type(value).__name__}")
    return args


def network_arguments(role: str, spec: dict | None) -> dict:
    """The constructor arguments of a spec, checked against the class's signature.

    Raises:
        SpecError: an unknown name, a key the constructor does not take, or a value that is
            not plain data.
    """
    name = network_name(role, spec)
    args = {k: v for k, v in (spec or {}).items() if k not in ("name", "_target_")}
    owner = f"the {role} {name!r}"
    for key, value in args.items():
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise SpecError(f"{owner}: {key!r} is {value}, above {MAX_INT}")
    return checked_arguments(args, NETWORKS[role][name], owner=owner)


def build(role: str, spec: dict | None) -> nn.Module:
    """Build the network a spec describes (see the module docstring).

    Args:
        role: ``estimator``, ``augmentor``, ``d3d`` or ``d2d``.
        spec: ``{"name": ..., **arguments}``; None or no name: the role's only class.

    Raises:
        SpecError: an unknown name or a bad argument (one line); the constructor's own
            ``ValueError`` for a value it refuses.
    """
    args = network_arguments(role, spec)
    return NETWORKS[role][network_name(role, spec)](**args)


def canonical_spec(role: str, spec: dict | None) -> dict:
    """The spec as ``{"name": ..., **arguments}`` (an earlier ``_target_`` replaced by its name)."""
    return {"name": network_name(role, spec), **network_arguments(role, spec)}
