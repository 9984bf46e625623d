"""The module paths of releases before the package was arranged by concept (0.1's flat
layout), still importable: ``from poseaug_pl.module import PoseAugModule`` gives today's class
with a `DeprecationWarning` naming the new path. Installed by ``poseaug_pl/__init__.py``."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: old module (under ``poseaug_pl.``) -> its path today
MOVED = {
    "module": "training.module", "callbacks": "training.callbacks",
    "checkpoint_io": "training.checkpoint_io", "config": "training.config",
    "health": "training.health", "losses": "training.losses", "pools": "training.pools",
    "resume": "training.resume", "runfolder": "training.runfolder",
    "tracking": "training.tracking", "camera": "geometry.camera",
    "plausibility": "geometry.plausibility", "rotation": "geometry.rotation",
    "skeleton": "geometry.skeleton", "layouts": "data.layouts",
    "metrics": "evaluation.metrics", "viz": "evaluation.viz", "lifter": "inference.lifter",
    "ckpt": "models.ckpt",
}  # fmt: skip


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``poseaug_pl.<old>`` (`MOVED`) and gives a module that forwards every attribute to
    the module at its new path (the same objects: classes, functions, constants)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.partition(".")
        if package == "poseaug_pl" and name in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = f"poseaug_pl.{MOVED[spec.name.partition('.')[2]]}"
        warnings.warn(f"{spec.name} is now {new}: import from there ({spec.name} will go in "
                      "a later release)", DeprecationWarning, stacklevel=3)  # fmt: skip
        target = importlib.import_module(new)
        forward = types.ModuleType(spec.name, f"Moved: {new}")
        forward.__getattr__ = lambda attr: getattr(target, attr)
        forward.__dir__ = lambda: dir(target)
        forward.__all__ = getattr(target, "__all__", [n for n in dir(target) if n[:1] != "_"])
        return forward

    def exec_module(self, module) -> None:
        """(Nothing to run: the module forwards.)"""


def install() -> None:
    """Put `MovedModules` on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
