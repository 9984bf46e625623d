"""Specification of PoseAug training: optimiser order, warm-up, schedules, resume, the CLIs."""

import csv
import json
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from helpers import TINY, TINY_CSV, cli, tiny_cfg
from poseaug_pl.train import build_model, train
from poseaug_pl.utils import CONFIG_DIR

NAMES = ("augmentor", "d3d", "d2d", "estimator")


class Spy(L.Callback):
    """Records which optimiser stepped, per (epoch, batch), and values at epoch starts."""

    def __init__(self):
        self.steps, self.epoch_values, self.snapshots = {}, [], []

    def on_train_start(self, trainer, pl_module):
        for i, opt in enumerate(trainer.optimizers):
            original = opt.step

            def step(*args, _i=i, _orig=original, **kwargs):
                self.steps.setdefault(self._key, []).append(NAMES[_i])
                return _orig(*args, **kwargs)

            opt.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._key = (trainer.current_epoch, batch_idx)
        if batch_idx == 0:  # after the module's own epoch-start hook has set the rates
            lrs = [o.param_groups[0]["lr"] for o in trainer.optimizers]
            self.epoch_values.append((pl_module.schedule.hard_ratio(), lrs))

    def on_train_epoch_start(self, trainer, pl_module):
        self.snapshots.append({k: v.clone() for k, v in pl_module.estimator.state_dict().items()})


def run_with_spy(tmp_path, *overrides):
    spy = Spy()
    cfg = tiny_cfg(tmp_path, "test=false", *overrides)
    train(cfg, extra_callbacks=[spy])
    return spy


def test_optimiser_order_follows_algorithm_1(tmp_path):
    spy = run_with_spy(tmp_path, "model.d_every=2")
    # warm-up epoch: augmentor every batch, discriminators every 2nd batch, estimator never
    assert spy.steps[(0, 0)] == ["augmentor", "d3d", "d2d"]
    assert spy.steps[(0, 1)] == ["augmentor"]
    # afterwards: A, (D), then the estimator on real and on augmented pairs
    assert spy.steps[(1, 0)] == ["augmentor", "d3d", "d2d", "estimator", "estimator"]
    assert spy.steps[(1, 1)] == ["augmentor", "estimator", "estimator"]


def test_estimator_is_not_updated_during_warmup(tmp_path):
    spy = run_with_spy(tmp_path, "trainer.max_epochs=3")
    first, second, third = spy.snapshots
    assert all(torch.equal(first[k], second[k]) for k in first)  # epoch 0 is warm-up
    assert not all(torch.equal(second[k], third[k]) for k in second)


def test_hard_ratio_and_learning_rate_follow_the_epoch(tmp_path):
    spy = run_with_spy(tmp_path, "trainer.max_epochs=3", "model.hard_ratio.start=2",
                       "model.hard_ratio.end=20", "model.lr.augmentor=1e-3")  # fmt: skip
    ratios = [r for r, _ in spy.epoch_values]
    assert ratios == pytest.approx([2.0, 11.0, 20.0])
    lrs = [lr[0] for _, lr in spy.epoch_values]
    assert lrs == pytest.approx([1e-3 * (1 - e / 4) for e in range(3)])


def test_baseline_steps_only_the_estimator(tmp_path):
    spy = run_with_spy(tmp_path, "augment=false", "feedback=false")
    assert set(name for steps in spy.steps.values() for name in steps) == {"estimator"}
    assert spy.steps[(0, 0)] == ["estimator"]


def test_epoch_phases_make_a_gan_pass_then_an_estimator_pass_per_epoch(tmp_path):
    spy = run_with_spy(tmp_path, "schedule=epoch_phases", "model.d_every=1")
    batches = 1 + max(b for e, b in spy.steps if e == 1)
    n = batches // 2  # the training loader makes two passes per epoch
    for epoch in (0, 1):  # the first pass: augmentor and discriminators only
        assert all(spy.steps[(epoch, b)] == ["augmentor", "d3d", "d2d"] for b in range(n))
    assert all((0, b) not in spy.steps for b in range(n, batches))  # warm-up: no estimator
    first = spy.steps[(1, n)]  # the second pass starts on the epoch's augmented pairs ...
    assert set(first) == {"estimator"} and len(first) >= 2
    assert all(spy.steps[(1, b)] == ["estimator"] for b in range(n + 1, batches))  # ... real


class CrashAt(L.Callback):
    """Simulates a crash (node failure, kill) at the start of an epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ["test=false", "trainer.max_epochs=3"]
    train(tiny_cfg(full, *common))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_cfg(cut, *common), extra_callbacks=[CrashAt(2)])  # dies after two epochs
    assert torch.load(cut / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1
    train(tiny_cfg(cut, *common, f"ckpt_path={cut / 'checkpoints/last.ckpt'}"))
    a, b = _state(full / "checkpoints/last.ckpt"), _state(cut / "checkpoints/last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    assert any(k.startswith("pool3d") for k in a)  # the fake pools travel in the checkpoint


def test_checkpoint_holds_plain_hparams_and_loads_safely(tmp_path):
    train(tiny_cfg(tmp_path, "test=false", "trainer.max_epochs=1", "model.warmup_epochs=0"))
    ckpt = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert isinstance(hp["estimator"], dict) and hp["recipe"] == "capped"
    assert len(ckpt["optimizer_states"]) == 4


def test_estimator_ckpt_initialises_the_estimator(tmp_path):
    base = tmp_path / "base"
    train(tiny_cfg(base, "test=false", "augment=false", "trainer.max_epochs=1"))
    from poseaug_pl.training.module import PoseAugModule

    cfg = tiny_cfg(tmp_path / "aug", f"model.estimator_ckpt={base / 'checkpoints/last.ckpt'}")
    model = build_model(cfg)
    assert isinstance(model, PoseAugModule)
    state = _state(base / "checkpoints/last.ckpt")
    want = {k.removeprefix("estimator."): v for k, v in state.items() if k.startswith("estimator.")}
    for k, v in model.estimator.state_dict().items():
        torch.testing.assert_close(v, want[k])


# --- the command-line interface, as a user runs it ---------------------------------------------


def test_train_then_evaluate_through_the_cli(tmp_path):
    run = tmp_path / "run"
    r = cli(
        "train",
        *[a for a in TINY if a != "logger=none"],
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={run}",
    )  # with the csv log
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ("checkpoints/last.ckpt", "checkpoints/best.ckpt", "metrics.json",
              "config_resolved.yaml", ".hydra/config.yaml"):  # fmt: skip
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"synthetic", "synthetic_wild"}
    assert set(metrics["synthetic"]) == {"mpjpe", "pa_mpjpe", "n_mpjpe", "pck", "auc", "frames",
                                         "per_joint", "per_bone_angle", "per_bone_length",
                                         "per_action"}  # fmt: skip
    per_action = metrics["synthetic"]["per_action"]  # the generator's motion classes
    assert sum(a["frames"] for a in per_action.values()) == metrics["synthetic"]["frames"]
    assert len(metrics["synthetic"]["per_joint"]) == 16
    assert (
        len(metrics["synthetic"]["per_bone_angle"])
        == len(metrics["synthetic"]["per_bone_length"])
        == 15
    )
    assert "synthetic_wild" in r.stdout and "MPJPE" in r.stdout  # the end-of-run summary
    figures = sorted(p.name for p in (run / "figures").glob("*.png"))
    assert figures == ["augmentations_epoch000.png", "augmentations_epoch001.png",
                       "per_joint_error.png"]  # fmt: skip
    logged = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("train/aug/hard_ratio", "train/lr/estimator", "train/disc/d3d_real_acc",
                "train/aug/error_ratio_rt", "train/pose/loss_aug", "val/mpjpe"):  # fmt: skip
        assert key in logged, key

    ev = tmp_path / "eval"
    r = cli("evaluate", f"ckpt_path={run / 'checkpoints/best.ckpt'}", "save_predictions=true",
            f"hydra.run.dir={ev}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((ev / "metrics.json").read_text())
    assert again["synthetic"]["mpjpe"] == pytest.approx(metrics["synthetic"]["mpjpe"], rel=1e-4)
    for name, m in again.items():
        pred = np.load(ev / "predictions" / f"{name}.npz")
        assert pred["pred"].shape == pred["target"].shape == (m["frames"], 16, 3)
        assert pred["pred"].dtype == np.float32
        mpjpe = np.linalg.norm(pred["pred"] - pred["target"], axis=-1).mean()
        assert mpjpe == pytest.approx(m["mpjpe"], rel=1e-3)  # millimetres, recomputable


def test_misspelt_override_fails_with_one_clear_message(tmp_path):
    r = cli("train", "model.hard_ratio.ned=5", f"hydra.run.dir={tmp_path}")
    assert r.returncode != 0 and "hard_ratio.ned" in r.stderr


def test_wrong_type_fails_at_start_up(tmp_path):
    r = cli("train", "trainer.max_epochs=many", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2
    assert "error: config: trainer.max_epochs must be an integer >= 1, got 'many'" in r.stderr


def test_h36m_experiment_without_data_says_where_it_looked(tmp_path):
    r = cli("train", "experiment=poseaug_h36m", f"data.root={tmp_path / 'nowhere'}",
            f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert r.returncode == 2
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert "nowhere" in line and "data.root" in line


def test_augmented_batches_leave_bn_running_statistics_alone():
    from torch import nn

    from poseaug_pl.models.batchnorm import frozen_bn_statistics

    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)).train()
    before = net[1].running_mean.clone()
    with frozen_bn_statistics(net):
        out = net(torch.randn(32, 4) * 5 + 3)
    assert torch.equal(net[1].running_mean, before)
    torch.testing.assert_close(out.mean(0), torch.zeros(8) + net[1].bias, atol=1e-5, rtol=0)
    assert net[1].momentum == 0.1  # restored
    net(torch.randn(32, 4) * 5 + 3)
    assert not torch.equal(net[1].running_mean, before)


def test_resume_into_a_new_folder_gives_the_uninterrupted_runs_results(tmp_path):
    """``ckpt_path=`` alone (a new run folder): the best checkpoint and its score carry over."""
    full, cut, new = tmp_path / "full", tmp_path / "cut", tmp_path / "new"
    common = ["trainer.max_epochs=3"]
    expected = train(tiny_cfg(full, *common))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_cfg(cut, *common), extra_callbacks=[CrashAt(2)])
    got = train(tiny_cfg(new, *common, f"ckpt_path={cut / 'checkpoints/last.ckpt'}"))
    for name in expected:
        assert got[name]["mpjpe"] == pytest.approx(expected[name]["mpjpe"], abs=1e-4), name
        assert got[name]["per_joint"] == pytest.approx(expected[name]["per_joint"], abs=1e-3)
    a, b = _state(full / "checkpoints/best.ckpt"), _state(new / "checkpoints/best.ckpt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)


class CrashAtBatch(L.Callback):
    """Raises at batch ``batch`` of epoch ``epoch``, after the batches before it were logged."""

    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            trainer.loggers[0].save()  # what a process killed later would have flushed
            raise RuntimeError("simulated crash")


def test_resume_in_place_appends_to_the_csv_log(tmp_path):
    """Rows a crashed process logged after its last checkpoint are dropped, the rest kept."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    common = [*TINY_CSV, "trainer.max_epochs=3", "test=false"]
    read = lambda p: list(csv.DictReader(open(p / "csv" / "metrics.csv")))  # noqa: E731
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = lambda out, *extra: compose("train", [*common, f"paths.output_dir={out}", *extra])  # noqa: E731
        train(cfg(full))
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(cfg(cut), extra_callbacks=[CrashAtBatch(2, 3)])
        steps = [int(r["step"]) for r in read(cut)]
        assert max(steps) >= 12  # epoch 2 had logged rows past the epoch-1 checkpoint
        train(cfg(cut, f"ckpt_path={cut / 'checkpoints/last.ckpt'}"))
    a, b = read(full), read(cut)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r.get("val/mpjpe") for r in a] == [r.get("val/mpjpe") for r in b]


def test_run_checkpoint_keeps_its_best_score_in_a_new_folder(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from poseaug_pl.training.resume import RunCheckpoint

    old = tmp_path / "old" / "checkpoints"
    old.mkdir(parents=True)
    (old / "best.ckpt").write_bytes(b"weights")
    best, score = str(old / "best.ckpt"), torch.tensor(42.0)
    state = {"monitor": "val/mpjpe", "best_model_score": score, "dirpath": str(old),
             "best_model_path": best, "kth_best_model_path": best, "kth_value": score,
             "best_k_models": {best: score}, "last_model_path": ""}  # fmt: skip
    new = tmp_path / "new" / "checkpoints"
    plain = ModelCheckpoint(dirpath=new, monitor="val/mpjpe")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        plain.load_state_dict(dict(state))
    assert plain.best_model_score is None  # Lightning forgets: the next epoch would be "best"
    ours = RunCheckpoint(dirpath=new, monitor="val/mpjpe")
    (old / "last.ckpt").write_bytes(b"resumed")  # the checkpoint being resumed, beside best
    ours._resuming_trainer = SimpleNamespace(ckpt_path=str(old / "last.ckpt"))
    ours.load_state_dict(dict(state))
    assert float(ours.best_model_score) == 42.0
    assert ours.best_model_path == str(new / "best.ckpt")
    assert (new / "best.ckpt").read_bytes() == b"weights"
    assert ours.state_key == plain.state_key  # old checkpoints restore into it


def test_run_checkpoint_forgets_a_best_file_that_no_longer_exists(tmp_path):
    from poseaug_pl.training.resume import RunCheckpoint

    gone = str(tmp_path / "old" / "checkpoints" / "best.ckpt")
    state = {"monitor": "val/mpjpe", "best_model_score": torch.tensor(42.0), "dirpath":
             str(tmp_path / "old" / "checkpoints"), "best_model_path": gone,
             "kth_best_model_path": gone, "kth_value": torch.tensor(42.0),
             "best_k_models": {gone: torch.tensor(42.0)}, "last_model_path": ""}  # fmt: skip
    ours = RunCheckpoint(dirpath=tmp_path / "new" / "checkpoints", monitor="val/mpjpe")
    (tmp_path / "old" / "checkpoints").mkdir(parents=True)
    (tmp_path / "old" / "checkpoints" / "last.ckpt").write_bytes(b"resumed")
    ours._resuming_trainer = SimpleNamespace(ckpt_path=str(tmp_path / "old/checkpoints/last.ckpt"))
    ours.load_state_dict(state)
    assert ours.best_model_score is None and ours.best_model_path == ""
    assert ours.best_k_models == {}  # the next epoch's checkpoint becomes the best
