"""No silent failures: divergence stops the run, bad input is one line and exit 2, units are
checked, outputs are written atomically, caches leave no debris."""

import os
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import TINY, cli, tiny_cfg
from poseaug_pl.data import DataError, generate, load_cross_set
from poseaug_pl.data import h36m as h36m_module
from poseaug_pl.data.layouts import COCO_FROM_16, coco_like
from poseaug_pl.train import build_model, check_checkpoints, train
from poseaug_pl.training.config import ConfigError, TrainingDiverged, validate
from poseaug_pl.utils import atomic_output

FIXTURE_REUSE = HealthCheck.function_scoped_fixture  # tmp_path is reused: files are rewritten


@pytest.fixture(scope="module")
def pairs():
    data = generate(sequences=1, frames=30, seed=0)
    return data.pose3d.numpy(), data.pose2d.numpy()


# --- divergence ------------------------------------------------------------------------------


def test_a_diverging_run_stops_with_one_line_and_writes_no_checkpoint(tmp_path):
    r = cli("train", *TINY, f"hydra.run.dir={tmp_path}", "model.weights.adv3d=1e39")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, r.stderr[-2000:]
    assert lines[-1].startswith("error: training diverged: the augmentor loss became NaN or inf "
                                "at step 0")  # fmt: skip
    assert sum(line.startswith(("error", "Traceback")) for line in lines) == 1
    assert not list(tmp_path.rglob("*.ckpt")) and not (tmp_path / "metrics.json").exists()


def test_the_guard_names_the_first_network_and_step(tmp_path):
    model = build_model(tiny_cfg(tmp_path))
    model._watch("d2d", torch.tensor(1.0))
    model.check_health()  # healthy: nothing happens
    model._watch("estimator", torch.tensor(float("nan")))
    with pytest.raises(TrainingDiverged, match="the estimator loss became NaN or inf at step 0"):
        model.check_health()
    model._watch("d3d", torch.tensor(float("inf")))  # same step: D3d updates before P
    with pytest.raises(TrainingDiverged, match="the d3d loss"):
        model.check_health()
    with pytest.raises(TrainingDiverged):
        model.on_save_checkpoint({})  # never a checkpoint of that state


def test_non_finite_weights_are_never_saved(tmp_path):
    model = build_model(tiny_cfg(tmp_path))
    with torch.no_grad():
        next(model.d3d.parameters())[0] = float("nan")
    with pytest.raises(TrainingDiverged, match="non-finite weights in d3d"):
        model.on_save_checkpoint({})


@pytest.mark.parametrize("n_inside", [0, 3])
def test_nan_outside_the_frame_never_reaches_the_estimator(tmp_path, n_inside):
    model = build_model(tiny_cfg(tmp_path))
    aug2d, aug3d = torch.randn(8, 16, 2) * 0.3, torch.randn(8, 16, 3)
    inside = torch.arange(8) < n_inside
    aug2d[~inside], aug3d[~inside] = float("nan"), float("nan")
    loss = model.augmented_estimator_loss(aug2d, aug3d, inside)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(
        torch.isfinite(p.grad).all() for p in model.estimator.parameters() if p.grad is not None
    )


# --- bad input: one line, exit 2, before training ---------------------------------------------


BAD_VALUES = [
    ("model.lr.estimator=-1e-3", "model.lr.estimator must be a number > 0"),
    ("data.eval_batch_size=0", "data.eval_batch_size must be an integer from 1 to 1,048,576"),
    ("data.train_sequences=0", "data.train_sequences must be an integer from 1 to 100,000"),
    ("model.d_every=0", "model.d_every must be an integer >= 1"),
    ("model.pool_size=32", "data.batch_size=64 > model.pool_size=32"),
    ("model.warmup_epochs=2", "model.warmup_epochs=2 >= trainer.max_epochs=2"),
    ("data.val_fraction=0", "data.val_fraction=0 leaves no validation set"),
    ("data.val_fraction=1.5", "data.val_fraction must be a number in [0, 1)"),
    ("model.weights.adv3d=-1", "model.weights.adv3d must be a number >= 0"),
    ("model.grad_clip=null", "model.grad_clip must be a number >= 0"),
    ("model.estimator.dropout=null", "dropout=null is only meaningful for ST-GCN"),
]


@pytest.mark.parametrize("override,message", BAD_VALUES)
def test_bad_values_are_refused_at_start_up(tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(tiny_cfg(tmp_path, override))


def test_val_fraction_zero_is_fine_when_the_last_checkpoint_is_tested(tmp_path):
    validate(tiny_cfg(tmp_path, "data.val_fraction=0", "test_ckpt=last"))


def test_a_decreasing_hard_ratio_is_said_once(tmp_path, caplog):
    validate(tiny_cfg(tmp_path, "model.hard_ratio.start=6", "model.hard_ratio.end=5"))
    assert "model.hard_ratio decreases" in caplog.text


def test_bad_checkpoints_are_refused_before_training(tmp_path, tiny_ckpt):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    (tmp_path / "half.ckpt").write_bytes(tiny_ckpt.read_bytes()[: tiny_ckpt.stat().st_size // 2])
    for key in ("ckpt_path", "model.estimator_ckpt", "model.augmentor_ckpt"):
        for name, message in (("none.ckpt", "not found"), ("junk.ckpt", "not a readable"),
                              ("half.ckpt", "not a readable")):  # fmt: skip
            with pytest.raises(DataError, match=f"{message}"):
                check_checkpoints(tiny_cfg(tmp_path, f"{key}={tmp_path / name}"))


def test_the_clis_turn_bad_input_into_one_line(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    runs = {
        "evaluate without ckpt_path": (("evaluate",), "ckpt_path is required"),
        "evaluate a junk file": (("evaluate", f"ckpt_path={tmp_path / 'junk.ckpt'}"),
                                 "not a readable checkpoint"),
        "a negative learning rate": (("train", *TINY, "model.lr.augmentor=-1"),
                                     "model.lr.augmentor must be a number > 0"),
    }  # fmt: skip
    for name, (args, message) in runs.items():
        r = cli(*args, f"hydra.run.dir={tmp_path / 'run'}")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (name, r.stderr)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_h36m_data_without_an_h36m_experiment_composes(tmp_path, h36m):
    import hydra
    from hydra import compose, initialize_config_dir

    from poseaug_pl.utils import CONFIG_DIR

    for name in ("train", "bench"):  # the default experiment / bench sizes are synthetic-only
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(name, overrides=["data=h36m", f"data.root={h36m}"])
        dm = hydra.utils.instantiate(cfg.data)
        assert type(dm).__name__ == "H36MDataModule"


# --- units and layouts of data files -----------------------------------------------------------


def test_millimetres_pixels_and_coco_order_are_refused_with_a_hint(tmp_path, pairs):
    p3, p2 = pairs
    cases = {
        "mm": (p3 * 1000, p2, "'pose3d' looks like millimetres"),
        "px": (p3, (p2 + 1) * 500, "'pose2d' looks like pixels"),
    }
    coco = coco_like(p2, face_px=0.01)
    cases["coco"] = (p3[:, list(COCO_FROM_16)], coco, "17 joints in COCO's order")
    for name, (a3, a2, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", pose3d=a3, pose2d=a2)
        with pytest.raises(DataError, match=message):
            load_cross_set(tmp_path / f"{name}.npz")
    np.savez(tmp_path / "ok.npz", pose3d=p3, pose2d=p2)
    assert len(load_cross_set(tmp_path / "ok.npz")) == len(p3)


def test_damaged_archives_are_one_line_errors(tmp_path, pairs):
    np.savez(tmp_path / "ok.npz", pose3d=pairs[0], pose2d=pairs[1])
    raw = bytearray((tmp_path / "ok.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a bad CRC inside pose3d.npy
    (tmp_path / "crc.npz").write_bytes(bytes(raw))
    (tmp_path / "cut.npz").write_bytes(bytes(raw[: len(raw) // 3]))
    for name in ("crc", "cut"):
        with pytest.raises(DataError, match="not a readable .npz file"):
            load_cross_set(tmp_path / f"{name}.npz")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape3=st.tuples(st.integers(0, 4), st.sampled_from([15, 16, 17, 32]), st.integers(1, 4)),
    joints2=st.sampled_from([16, 17, 18]),
    fill=st.sampled_from([0.0, 1.0, np.nan, np.inf, 1e6]),
    dtype=st.sampled_from(["f4", "f8", "i4", "U3", "O"]),
    flip=st.integers(-1, 400),
)
def test_fuzzed_cross_set_files_fail_only_with_data_error(tmp_path, shape3, joints2, fill, dtype,
                                                          flip):  # fmt: skip
    """Any malformed cross-set file: a DataError (one line at the CLI), never another error."""
    n = shape3[0]
    p3 = np.full(shape3, fill).astype(dtype) if dtype != "O" else np.empty(shape3, object)
    p2 = np.full((n, joints2, 2), fill)
    path = tmp_path / "fuzz.npz"
    np.savez(path, pose3d=p3, pose2d=p2)
    if flip >= 0:  # damage one byte of the archive
        raw = bytearray(path.read_bytes())
        raw[flip % len(raw)] ^= 0xA5
        path.write_bytes(bytes(raw))
    try:
        load_cross_set(path)
    except DataError as e:
        assert "\n" not in str(e)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.one_of(st.integers(-5, 0), st.floats(allow_nan=True, allow_infinity=True),
                       st.text(max_size=3), st.booleans(), st.none()),
       key=st.sampled_from(["model.lr.estimator", "data.eval_batch_size", "model.d_every",
                            "model.pool_size", "data.frames", "model.weights.reg"]))  # fmt: skip
def test_fuzzed_config_values_fail_only_with_config_error(tmp_path, value, key):
    from omegaconf import OmegaConf

    cfg = tiny_cfg(tmp_path)
    OmegaConf.update(cfg, key, value, force_add=True)
    try:
        validate(cfg)
    except ConfigError as e:
        assert "\n" not in str(e) and key in str(e) or "config:" in str(e)


# --- no debris -------------------------------------------------------------------------------


def test_atomic_output_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())
    with atomic_output(target) as tmp:
        tmp.write_text("{}")
    assert target.read_text() == "{}" and list(tmp_path.iterdir()) == [target]


def test_stale_cache_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / ".h36m_gt_0123.pt.999999999.tmp"
    alive = tmp_path / f".h36m_gt_0123.pt.{os.getpid()}.tmp"
    dead.write_bytes(b"x" * 100)
    alive.write_bytes(b"x")
    h36m_module._remove_stale_temporaries(tmp_path)
    assert not dead.exists() and alive.exists()


def test_training_writes_no_temporaries(tmp_path):
    train(tiny_cfg(tmp_path, "test=true"))
    assert (tmp_path / "metrics.json").is_file()
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


# --- GAN collapse ----------------------------------------------------------------------------


def test_collapse_reasons_on_hand_made_windows(tmp_path):
    model = build_model(tiny_cfg(tmp_path))
    cases = [
        ([0.6, 0.7, 1.0, 0.9, 0.0, 1.0], None),  # healthy
        ([1.0, 0.7, 1.0, 0.9, 0.0, 1.0], "the d3d discriminator was right on over 99%"),
        ([0.6, 0.7, 1.0, 0.0, 0.0, 1.0], "under 1% of the augmented poses were inside"),
        ([0.6, 0.7, 1.0, 0.9, 0.95, 1.0], "collapsed to a point or a line"),
    ]
    for window, reason in cases:
        model._window.copy_(torch.tensor(window) * 10)  # ten batches of these means
        got = model.collapse_reason()
        assert (got is None) if reason is None else (reason in got), (window, got)
        assert not model._window.any()  # each window is judged once


def test_flat_augmentations_are_counted(tmp_path, pairs):
    model = build_model(tiny_cfg(tmp_path))
    poses = torch.from_numpy(pairs[1][:8])
    line = poses.clone()
    line[..., 1] = 2 * line[..., 0]  # every joint on one line
    for x, flat in ((poses, 0.0), (line, 1.0)):
        model._window.zero_()
        model._watch_augmentation({"rt_2d": x}, torch.ones(8, dtype=torch.bool))
        assert model._window[4].item() == pytest.approx(flat)


def _collapse_once_in_epoch_1(fired: list):
    """A `collapse_reason` that reports one collapse, in epoch 1."""

    def reason(self):
        if self.current_epoch == 1 and not fired:
            fired.append(True)
            return "a test collapse"
        return None

    return reason


@pytest.mark.parametrize("mode", ["warn", "stop", "restore"])
def test_on_collapse_warns_stops_or_restores(tmp_path, monkeypatch, caplog, mode):
    from poseaug_pl.training.module import PoseAugModule

    monkeypatch.setattr(PoseAugModule, "collapse_reason", _collapse_once_in_epoch_1([]))
    cfg = tiny_cfg(tmp_path, f"callbacks.collapse_guard.on_collapse={mode}",
                   "trainer.log_every_n_steps=2",
                   "trainer.max_epochs=3", "test=false")  # fmt: skip
    if mode == "stop":
        with pytest.raises(TrainingDiverged, match="training collapsed: GAN collapse at step"):
            train(cfg)
        return
    train(cfg)
    assert "GAN collapse at step" in caplog.text
    if mode == "restore":
        assert "restored" in caplog.text and "restore 1 of 3" in caplog.text
    else:
        assert caplog.text.count("GAN collapse") == 1  # said once


def test_every_shipped_experiment_passes_the_start_up_checks():
    from hydra import compose, initialize_config_dir

    from poseaug_pl.utils import CONFIG_DIR

    names = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
    assert len(names) >= 10
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        for name in names:
            validate(compose("train", overrides=[f"experiment={name}"]))
        validate(compose("bench"))


def test_human36m_in_millimetres_is_refused_with_a_hint(tmp_path):
    from poseaug_pl.data import load_h36m
    from test_bad_input import write_h36m

    root = write_h36m(tmp_path / "h")
    pos = np.load(root / "data_3d_h36m.npz", allow_pickle=True)["positions_3d"].item()
    mm = {s: {a: x * 1000 for a, x in acts.items()} for s, acts in pos.items()}
    np.savez(root / "data_3d_h36m.npz", positions_3d=mm)
    with pytest.raises(DataError, match="'positions_3d' looks like millimetres"):
        load_h36m(root, subjects=["S1"], cache_dir=False)
