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


@pytest.mark.parametrize("command,override", [
    ("train", "experiment=poseaug_h36mm"), ("train", "model.estimator.chanels=3"),
    ("evaluate", "data=h36mm"), ("predict", "layoutt=coco"),
])  # fmt: skip
def test_a_misspelt_name_answers_before_torch_loads(command, override):
    """The one line for a name that does not compose comes before the heavy imports (about a
    second, not the seconds torch and Lightning take)."""
    import subprocess

    r = subprocess.run([sys.executable, "-X", "importtime", "-m", f"poseaug_pl.{command}",
                        override], capture_output=True, text=True, timeout=120)  # fmt: skip
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "did you mean" in errors[0], r.stderr[-800:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    assert "torch" not in imported and "lightning" not in imported
