"""Traps that quietly give wrong numbers: a warm-up epoch as the best checkpoint, a tested
checkpoint of unknown kind, an augmented Human3.6M run whose estimator starts from scratch."""

import contextlib
import io
import logging
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import ModelCheckpoint

from helpers import cli, tiny_cfg
from poseaug_pl.data import DataError
from poseaug_pl.evaluation.report import checkpoint_info, describe_checkpoint
from poseaug_pl.train import from_scratch_warning, train
from poseaug_pl.training.resume import RunCheckpoint
from poseaug_pl.utils import CONFIG_DIR


@pytest.fixture(scope="module", params=[True, False], ids=["augmented", "baseline"])
def warmup_run(request, tmp_path_factory):
    """A tiny run of 3 epochs, 2 of them warm-up (augmented) or a baseline, with the epochs at
    which the best-checkpoint callback considered saving."""
    out = tmp_path_factory.mktemp("warmup_run")
    considered = []
    original = ModelCheckpoint.on_validation_end

    def spy(self, trainer, pl_module):
        if self.monitor and not trainer.sanity_checking:
            considered.append(trainer.current_epoch)
        return original(self, trainer, pl_module)

    mp = pytest.MonkeyPatch()
    mp.setattr(ModelCheckpoint, "on_validation_end", spy)
    switches = [] if request.param else ["augment=false", "feedback=false"]
    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            train(tiny_cfg(out, "trainer.max_epochs=3", "model.warmup_epochs=2", *switches))
    finally:
        mp.undo()
    return SimpleNamespace(out=out, augmented=request.param, considered=considered,
                           printed=printed.getvalue())  # fmt: skip


def test_best_checkpoint_is_chosen_after_the_estimator_trained_on_augmented_pairs(warmup_run):
    best = torch.load(warmup_run.out / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(warmup_run.out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2  # last.ckpt is written every epoch either way
    if warmup_run.augmented:  # the two warm-up epochs are not considered
        assert warmup_run.considered == [2]
        assert best["epoch"] == 2 and best["augmented_updates"] > 0
        n = best["augmented_updates"]
        assert (f"checkpoint: best.ckpt, epoch 3 of 3; estimator trained on augmented pairs: yes "
                f"({n} updates)") in warmup_run.printed  # fmt: skip
    else:  # a baseline: every epoch, as before
        assert warmup_run.considered == [0, 1, 2]


def test_evaluate_says_which_epoch_and_whether_augmented_pairs_were_seen(warmup_run, tmp_path):
    r = cli("evaluate", f"ckpt_path={warmup_run.out / 'checkpoints' / 'best.ckpt'}",
            f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    seen = "yes (" if warmup_run.augmented else "no (baseline)"
    assert "checkpoint: best.ckpt, epoch " in r.stdout and " of 3; " in r.stdout
    assert f"estimator trained on augmented pairs: {seen}" in r.stdout


def test_the_best_checkpoint_behaves_as_before_where_updates_are_not_counted():
    cb = RunCheckpoint(monitor="val/mpjpe", after_augmented_updates=True)
    trainer = SimpleNamespace(sanity_checking=False)
    module = SimpleNamespace(hparams={"augment": True, "train_estimator": True})
    assert not cb._warming_up(trainer, module)  # no augmented_updates attribute: unknown
    module.augmented_updates = 0
    assert cb._warming_up(trainer, module)
    assert not cb._warming_up(SimpleNamespace(sanity_checking=True), module)  # nothing to say
    module.hparams["train_estimator"] = False  # augmentor pretraining: every epoch
    assert not cb._warming_up(trainer, module)


@pytest.mark.parametrize(
    ("ckpt", "seen"),
    [
        ({"augmented_updates": 12345}, "yes (12345 updates)"),
        ({"augmented_updates": 0}, "no (warm-up)"),
        ({}, "unknown (older checkpoint)"),
        ({"hyper_parameters": {"augment": False, "max_epochs": 50}}, "no (baseline)"),
        ({"hyper_parameters": {"augment": True, "train_estimator": False, "max_epochs": 50}},
         "no (augmentor pretraining)"),
    ],
)  # fmt: skip
def test_checkpoint_line_names_epoch_and_augmented_pairs(ckpt, seen):
    hp = ckpt.pop("hyper_parameters", {"augment": True, "max_epochs": 50})
    line = describe_checkpoint(checkpoint_info({"epoch": 6, "hyper_parameters": hp, **ckpt},
                                               "best.ckpt"))  # fmt: skip
    assert (
        line
        == f"checkpoint: best.ckpt, epoch 7 of 50; estimator trained on augmented pairs: {seen}"
    )


def compose_train(*overrides):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize(
    ("overrides", "baseline"),
    [
        (["experiment=poseaug_h36m", "data.root=/data/h36m"], "baseline_h36m"),
        (["experiment=variant_a_h36m"], "baseline_h36m"),
        (["experiment=poseaug_h36m_cpu"], "baseline_h36m_cpu"),
        (["experiment=poseaug_h36m", "model.estimator_ckpt=b.ckpt"], None),
        (["experiment=poseaug_h36m", "ckpt_path=last.ckpt"], None),  # a resume
        (["experiment=baseline_h36m"], None),
        (["experiment=augmentor_h36m"], None),
        (["experiment=poseaug_synthetic"], None),  # may start from scratch on purpose
        ([], None),
    ],
)
def test_an_augmented_h36m_run_without_a_baseline_is_warned_about(overrides, baseline):
    warning = from_scratch_warning(compose_train(*overrides))
    if baseline is None:
        assert warning is None
    else:
        assert "\n" not in warning and "from scratch" in warning
        assert f"python -m poseaug_pl.train experiment={baseline} data.root=" in warning
        assert "model.estimator_ckpt=<that run>/checkpoints/best.ckpt" in warning


def test_train_logs_the_from_scratch_warning_at_start(tmp_path, caplog):
    cfg = compose_train("experiment=poseaug_h36m", f"data.root={tmp_path / 'nowhere'}",
                        f"paths.output_dir={tmp_path / 'run'}", "logger=none")  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="poseaug_pl.train"), pytest.raises(DataError):
        train(cfg)  # (no data there: fails after the warning)
    assert "data.root=" + str(tmp_path / "nowhere") in caplog.text
