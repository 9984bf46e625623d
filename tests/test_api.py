"""Specification: the import paths users and scripts wrote keep working."""

import importlib
import sys

import pytest

from poseaug_pl._moved import MOVED


def test_the_main_classes_import_from_the_package_root():
    from poseaug_pl import Lifter, PoseAugModule
    from poseaug_pl.inference.lifter import Lifter as L2
    from poseaug_pl.training.module import PoseAugModule as P2

    assert Lifter is L2 and PoseAugModule is P2


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_flat_path_imports_with_a_deprecation_warning(old):
    sys.modules.pop(f"poseaug_pl.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"poseaug_pl.{MOVED[old]}"):
        mod = importlib.import_module(f"poseaug_pl.{old}")
    new = importlib.import_module(f"poseaug_pl.{MOVED[old]}")
    public = [n for n in dir(new) if not n.startswith("_")]
    assert public and all(getattr(mod, n) is getattr(new, n) for n in public)


def test_the_old_module_path_of_the_lightning_module():
    sys.modules.pop("poseaug_pl.module", None)
    with pytest.warns(DeprecationWarning):
        from poseaug_pl.module import PoseAugModule
    from poseaug_pl.training.module import PoseAugModule as today

    assert PoseAugModule is today
