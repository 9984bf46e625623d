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


def _before_torch(*args):
    """``(one error line, imported module names)`` of ``python -m poseaug_pl.<args>``."""
    import subprocess

    r = subprocess.run([sys.executable, "-X", "importtime", "-m", *args],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr[-800:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    return errors[0], imported


@pytest.mark.parametrize("args,line", [
    (["train", "model.lr.estimator=-1"], "model.lr.estimator must be a number > 0"),
    (["train", "model.refilm.focal=[2,1]"], "[low, high] numbers with low <= high"),
    (["train", "data=h36m", "data.root=/no/such/dir"], "data_3d_h36m.npz: file not found"),
    (["train", "model.estimator_ckpt=/no/such.ckpt"], "model.estimator_ckpt not found"),
    (["train", "+data.cross_sets.mine=/no/such.npz"], "(cross-dataset set 'mine')"),
    (["train", "ckpt_path=/no/such.ckpt"], "ckpt_path not found"),
    (["evaluate", "ckpt_path=/no/such.ckpt"], "checkpoint not found"),
    (["evaluate"], "ckpt_path is required: add ckpt_path=..."),
    (["export", "ckpt_path=/", "output=x.onnx"], "a folder, not a checkpoint"),
])  # fmt: skip
def test_a_wrong_value_or_missing_file_answers_before_torch_loads(args, line):
    error, imported = _before_torch(f"poseaug_pl.{args[0]}", *args[1:])
    assert line in error
    assert "torch" not in imported and "lightning" not in imported


def test_the_commands_give_the_same_lines_after_torch_loads(tmp_path):
    """The early checks are the commands' own: in-process (no early check) the lines agree."""
    from poseaug_pl.data.datamodule import H36MDataModule
    from poseaug_pl.errors import DataError
    from poseaug_pl.models.ckpt import read_checkpoint

    with pytest.raises(DataError, match="model.estimator_ckpt not found"):
        read_checkpoint(tmp_path / "no.ckpt", "model.estimator_ckpt")
    with pytest.raises(DataError, match=r"data_3d_h36m.npz: file not found; Human3.6M"):
        H36MDataModule(root=str(tmp_path)).check()


def test_the_light_config_checks_know_every_network_the_registry_builds():
    from poseaug_pl.models.registry import NETWORKS
    from poseaug_pl.training.config import NETWORK_NAMES

    assert {role: tuple(table) for role, table in NETWORKS.items()} == NETWORK_NAMES


def test_a_run_says_how_long_it_will_take(tmp_path, capsys):
    from helpers import tiny_cfg
    from poseaug_pl.train import train

    train(tiny_cfg(tmp_path, "test=false", "augment=false", "trainer.max_epochs=8"))
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("time:")]
    assert lines[0].startswith("time: the first epoch took")
    assert "the 8 epochs of this run" in lines[0]
    assert [x.split(" of ")[0] for x in lines[1:]] == ["time: 2", "time: 4", "time: 6"]
    assert all("left" in x for x in lines[1:])
