"""Specification of speed: no host syncs in the training step; the benchmark's output."""

import json
import traceback
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers import cli, tiny_cfg
from poseaug_pl.train import train

#: Tensor methods that copy a value to the host (and so wait for the device).
SYNC_METHODS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")
TORCH_DIR = str(Path(torch.__file__).parent)


class SyncRecorder(L.Callback):
    """Records host-sync calls made while a training batch runs, with their caller."""

    def __init__(self):
        self.active, self.calls = False, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.active = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.active = False

    def record(self, name: str) -> None:
        if not self.active:
            return
        caller = traceback.extract_stack(limit=3)[0]
        # torch.optim reads its CPU step counters with .item(): no device involved
        if not caller.filename.startswith(TORCH_DIR):
            self.calls.append(f"{name} at {caller.filename}:{caller.lineno}")


@pytest.mark.parametrize("schedule", ["interleaved", "epoch_phases"])
def test_training_step_makes_no_host_sync_outside_logging(tmp_path, monkeypatch, schedule):
    recorder = SyncRecorder()
    for name in SYNC_METHODS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            recorder.record(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    cfg = tiny_cfg(tmp_path, "test=false", "trainer.max_epochs=3", f"schedule={schedule}",
                   "logger=csv", "trainer.log_every_n_steps=1000",
                   "callbacks.augmentation_histograms.every_n_batches=1000")  # fmt: skip
    train(cfg, extra_callbacks=[recorder])
    assert recorder.calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_step_makes_no_cuda_sync(tmp_path):
    class SyncDebug(L.Callback):
        def on_train_batch_start(self, *args):
            torch.cuda.set_sync_debug_mode("error")

        def on_train_batch_end(self, *args):
            torch.cuda.set_sync_debug_mode(0)

    cfg = tiny_cfg(tmp_path, "test=false", "trainer=gpu", "trainer.max_epochs=3",
                   "trainer.log_every_n_steps=1000",
                   "callbacks.augmentation_histograms.every_n_batches=1000")  # fmt: skip
    train(cfg, extra_callbacks=[SyncDebug()])


def test_bench_prints_its_json_line_last(tmp_path):
    r = cli("bench", "bench.warmup=1", "bench.steps=2", "bench.repeats=2", "data.batch_size=64",
            "data.frames=16",
            "data.train_sequences=4", "model.estimator.channels=32", "model.augmentor.hidden=32",
            f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"device", "estimator", "batch_size", "ms_per_step", "samples_per_s",
            "bare_ms_per_step", "overhead"} <= set(result)  # fmt: skip
    assert result["batch_size"] == 64 and result["estimator"] == "VideoPose"
    assert result["ms_per_step"] > 0 and result["bare_ms_per_step"] > 0
    lo, hi = result["overhead_range"]
    assert result["repeats"] == 2 and lo <= result["overhead"] <= hi
    assert "over 2 repeats" in r.stdout
    assert "smaller than the logging interval" not in r.stderr


def test_bench_refuses_too_few_batches(tmp_path):
    r = cli("bench", "bench.steps=500", "data.batch_size=64", "data.frames=16",
            "data.train_sequences=4", "model.estimator.channels=32",
            f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert r.returncode == 2 and "bench needs" in r.stderr
