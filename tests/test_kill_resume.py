"""A real ``train`` process killed with SIGKILL after a checkpoint, resumed from ``ckpt_path=``
alone into a new folder, gives the uninterrupted run's metrics and weights (slow: make
test-full)."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import TINY

pytestmark = pytest.mark.slow

RUN = [*TINY, "trainer.max_epochs=6", "data.train_sequences=24"]


def _train(out, *extra):
    return [sys.executable, "-m", "poseaug_pl.train", *RUN, f"hydra.run.dir={out}", *extra]


def test_sigkill_then_resume_matches_the_uninterrupted_run(tmp_path):
    full, cut, resumed = tmp_path / "full", tmp_path / "cut", tmp_path / "resumed"
    subprocess.run(_train(full), check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(_train(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = cut / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                if torch.load(last, map_location="cpu", weights_only=True)["epoch"] >= 1:
                    break
            except Exception:  # being written: try again
                pass
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert epoch < 5 and not (cut / "metrics.json").exists()
    r = subprocess.run(_train(resumed, f"ckpt_path={last}"), capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"(resumed after {epoch + 1}: 6 in all)" in r.stdout
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((resumed / "metrics.json").read_text())
    for name in a:
        assert b[name]["mpjpe"] == pytest.approx(a[name]["mpjpe"], abs=1e-4), name
    wa = torch.load(full / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    wb = torch.load(resumed / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    assert wa["epoch"] == wb["epoch"]
    for k, v in wa["state_dict"].items():
        torch.testing.assert_close(v, wb["state_dict"][k], atol=1e-6, rtol=0, msg=k)
