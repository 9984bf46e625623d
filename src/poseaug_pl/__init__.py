"""poseaug-pl: PoseAug (differentiable pose augmentation for 3D human pose estimation) on
PyTorch Lightning and Hydra.

``from poseaug_pl import Lifter`` lifts 2D keypoints with a trained checkpoint
(`poseaug_pl.inference.lifter`); ``from poseaug_pl import PoseAugModule`` is the
LightningModule (`poseaug_pl.training.module`). The flat module paths of earlier releases
(``poseaug_pl.module``, ``poseaug_pl.skeleton``, ...) still import, with a deprecation
warning (`poseaug_pl._moved`).
"""

from poseaug_pl import _moved

__version__ = "0.1.0"

__all__ = ["Lifter", "PoseAugModule"]

#: the package's main classes, imported on first use (``import poseaug_pl`` stays light)
_MAIN = {"Lifter": "poseaug_pl.inference.lifter", "PoseAugModule": "poseaug_pl.training.module"}

_moved.install()


def _precheck() -> None:
    """Under ``python -m poseaug_pl.<command>``, check the command line's config names before
    the command's heavy imports (`cli.precheck`)."""
    import sys

    argv = getattr(sys, "orig_argv", [])
    if sys.argv[:1] != ["-m"] or "-m" not in argv:  # (sys.argv[0] is "-m" while it starts)
        return
    i = argv.index("-m")
    package, _, command = (argv[i + 1] if i + 1 < len(argv) else "").partition(".")
    from poseaug_pl.cli import COMMANDS, precheck

    if package == "poseaug_pl" and command in COMMANDS:
        precheck(command, argv[i + 2 :])


_precheck()


def __getattr__(name):
    if name in _MAIN:
        import importlib

        return getattr(importlib.import_module(_MAIN[name]), name)
    raise AttributeError(f"module 'poseaug_pl' has no attribute {name!r}")
