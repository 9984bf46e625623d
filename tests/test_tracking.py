"""Specification of what a run shows: W&B mode and identity, logged panels, figures, metadata."""

import json
import os
import struct
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir

from helpers import TINY, tiny_cfg
from poseaug_pl.data import synthetic
from poseaug_pl.models import Augmentor, augmentation_parameters
from poseaug_pl.train import train
from poseaug_pl.training import tracking
from poseaug_pl.utils import CONFIG_DIR

#: Keys every PoseAug run logs, grouped by dashboard panel.
PANEL_KEYS = (
    "train/aug/loss", "train/aug/adv3d", "train/aug/adv2d", "train/aug/reg",
    "train/aug/error_ratio_ba", "train/aug/error_ratio_rt", "train/aug/hard_ratio",
    "train/disc/d3d_loss", "train/disc/d2d_real_acc", "train/disc/d3d_fake_acc",
    "train/pose/loss_real", "train/pose/loss_aug",
    "train/lr/augmentor", "train/lr/discriminator", "train/lr/estimator",
    "val/mpjpe", "test/synthetic/mpjpe", "test/synthetic_wild/pa_mpjpe",
)  # fmt: skip
HISTOGRAMS = tuple(
    f"train/aug/hist/{k}"
    for k in ("angle_change_deg", "bone_length_ratio", "rotation_angle_deg", "translation_depth")
)
IMAGES = ("train/aug/figure", "test/per_joint_error")
DASHBOARD = ["trainer.log_every_n_steps=1", "callbacks.augmentation_histograms.every_n_batches=2"]


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    """No W&B settings in the environment and a HOME without ~/.netrc."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DISABLED", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# --- mode and identity ---------------------------------------------------------------------


def test_auto_mode_is_offline_without_api_key(no_wandb_env):
    mode, why = tracking.resolve_mode("auto")
    assert mode == "offline" and "API key" in why


def test_auto_mode_is_offline_when_the_server_is_unreachable(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(tracking, "reachable", lambda timeout=2.0: False)
    assert tracking.resolve_mode("auto")[0] == "offline"
    monkeypatch.setattr(tracking, "reachable", lambda timeout=2.0: True)
    assert tracking.resolve_mode("auto")[0] == "online"


def test_explicit_modes_and_wandb_mode_win(no_wandb_env, monkeypatch):
    assert tracking.resolve_mode("disabled")[0] == "disabled"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.resolve_mode("auto") == ("disabled", "WANDB_MODE")
    with pytest.raises(ValueError, match="mode must be one of"):
        tracking.resolve_mode("sometimes")


def test_offline_logger_leaves_the_process_environment_alone(no_wandb_env, tmp_path):
    logger = tracking.wandb_logger(str(tmp_path), experiment="exp", mode="offline", tags=["x"])
    assert "WANDB_MODE" not in os.environ  # Lightning's offline=True would set it for good
    init = logger._wandb_init
    assert init["mode"] == "offline" and init["group"] == "exp" and init["name"] == "exp"
    assert init["tags"] == ["exp", "x"]


def test_logger_group_accepts_several_loggers_at_once():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["logger=[csv,wandb]", "paths.output_dir=/tmp/x"])
    assert set(cfg.logger) == {"csv", "wandb"}
    assert cfg.logger.wandb.experiment == "poseaug_synthetic"


def test_best_checkpoint_is_uploaded_only_when_online(tmp_path):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights")

    class Run:
        def __init__(self, mode):
            self.settings, self.id, self.logged = type("S", (), {"mode": mode}), "abc", []

        def log_artifact(self, artifact, aliases):
            self.logged.append((artifact.type, artifact.name, aliases))

    class WandbLogger:  # stands in for Lightning's (matched by class name)
        def __init__(self, run):
            self.experiment = run

    online, offline = Run("online"), Run("offline")
    tracking.log_checkpoint([WandbLogger(online), WandbLogger(offline)], ckpt)
    assert online.logged == [("model", "model-abc", ["best"])]
    assert offline.logged == []


# --- what gets logged ------------------------------------------------------------------------


def test_augmentation_parameters_are_in_their_ranges():
    poses = synthetic.generate(sequences=2, frames=16, seed=0)
    aug = Augmentor(hidden=32)
    with torch.no_grad():
        p = augmentation_parameters(aug(poses.pose3d[:64], poses.cam[:64]))
    assert p["angle_change_deg"].shape == (64 * 13,)
    assert 0 <= p["angle_change_deg"].min() and p["angle_change_deg"].max() <= 180
    assert 0.8 - 1e-6 <= p["bone_length_ratio"].min() <= p["bone_length_ratio"].max() <= 1.2 + 1e-6
    assert 0 <= p["rotation_angle_deg"].min() and p["rotation_angle_deg"].max() <= 180
    assert p["translation_depth"].min() >= aug.min_depth


def test_training_logs_every_panel_with_wandb_disabled(tmp_path, monkeypatch):
    """The fast, mocked version of the offline test: record what reaches the (no-op) run."""
    import wandb
    from wandb.sdk.lib.noop_run import NoopRun

    logged = {}
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(NoopRun, "log", lambda self, data, *a, **k: logged.update(data))
    train(tiny_cfg(tmp_path, "logger=wandb", *DASHBOARD))
    for key in PANEL_KEYS:
        assert key in logged, key
    for key in HISTOGRAMS:
        assert isinstance(logged[key], wandb.Histogram), key
    for key in IMAGES:
        images = logged[key] if isinstance(logged[key], list) else [logged[key]]
        assert all(isinstance(i, wandb.Image) for i in images), key
    assert isinstance(logged["test/metrics"], wandb.Table)
    assert wandb.run is None  # finished
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    expected = {"augmentations_epoch001.png", "aug_params_epoch001.png", "per_joint_error.png"}
    assert expected <= figures


def test_csv_log_gets_parameter_summaries(tmp_path):
    train(tiny_cfg(tmp_path, "logger=csv", "test=false", *DASHBOARD))
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("angle_change_deg", "translation_depth"):
        assert f"train/aug/params/{name}_mean" in header


def test_config_records_the_git_commit(tmp_path):
    train(tiny_cfg(tmp_path, "test=false", "trainer.max_epochs=1", "augment=false"))
    first = (tmp_path / "config_resolved.yaml").read_text().splitlines()[0]
    assert first.startswith("# git commit: ")


# --- real W&B files (offline) ---------------------------------------------------------------


def wandb_records(path):
    """Decode the records of an offline ``run-<id>.wandb`` file (W&B's LevelDB-style log)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        buf = chunk if kind in (1, 2) else buf + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def offline_run(run_dir):
    """``(history {key: set of _type or python type}, config keys, run record)`` of a run."""
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    history, config, run = {}, set(), None
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            for item in r.history.item:
                key = item.key or "/".join(item.nested_key)
                value = json.loads(item.value_json)
                history.setdefault(key, set()).add(type(value).__name__)
                if key.endswith("/_type"):
                    history.setdefault(key.removesuffix("/_type"), set()).add(value)
        elif kind == "config":
            config |= {item.key or item.nested_key[0] for item in r.config.update}
        elif kind == "run":
            run = r.run
    return history, config, run


@pytest.mark.slow
@pytest.mark.parametrize("how", ["WANDB_MODE=offline", "auto without API key"])
def test_offline_wandb_run_contains_every_panel(tmp_path, monkeypatch, no_wandb_env, how):
    if how.startswith("WANDB_MODE"):
        monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    train(tiny_cfg(tmp_path, "logger=wandb", *DASHBOARD))
    assert os.environ.get("WANDB_MODE") == ("offline" if how.startswith("WANDB") else None)
    history, config, run = offline_run(tmp_path)
    for key in PANEL_KEYS:
        assert key in history, key
    for key in HISTOGRAMS:
        assert "histogram" in history[key], key
    assert "image-file" in history["test/per_joint_error"]
    assert "images/separated" in history["train/aug/figure"]
    assert "table-file" in history["test/metrics"]
    assert {"cfg", "git_commit", "hard_ratio"} <= config
    assert run.run_group == "poseaug_synthetic" and "poseaug_synthetic" in run.tags


@pytest.mark.slow
def test_multirun_gives_every_job_its_own_wandb_run(tmp_path, no_wandb_env):
    sweep = tmp_path / "sweep"
    args = [a for a in TINY if a != "logger=none"]
    cmd = [sys.executable, "-m", "poseaug_pl.train", "-m", *args, "logger=wandb",
           "logger.wandb.mode=offline", "test=false", "model.hard_ratio.end=4.0,6.0",
           f"hydra.sweep.dir={sweep}"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = [offline_run(sweep / str(job))[2] for job in (0, 1)]
    assert runs[0].run_id != runs[1].run_id
    assert runs[0].run_group == runs[1].run_group == f"poseaug_synthetic/sweep-{sweep.name}"
    names = sorted(r.display_name for r in runs)  # experiment + the job's overrides
    assert names[0].startswith("poseaug_synthetic data.train_sequences=6")
    assert names[0].endswith("model.hard_ratio.end=4.0")
    assert names[1].endswith("model.hard_ratio.end=6.0")
