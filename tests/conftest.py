"""Shared fixtures: real Human3.6M data discovery and a per-session preprocessing cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def h36m_root() -> Path | None:
    """``$POSEAUG_H36M`` or ``../shared/data/h36m`` beside the repo, if it holds the 3D file."""
    for cand in (os.environ.get("POSEAUG_H36M"), REPO.parent / "shared" / "data" / "h36m"):
        if cand and (Path(cand) / "data_3d_h36m.npz").is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def h36m() -> Path:
    """Folder of the real Human3.6M files; skips the test when they are absent."""
    root = h36m_root()
    if root is None:
        pytest.skip(
            "real Human3.6M data not found (set POSEAUG_H36M or provide ../shared/data/h36m)"
        )
    return root


@pytest.fixture(scope="session")
def h36m_cache(tmp_path_factory) -> Path:
    """A preprocessing cache shared by the tests of one session (never the user's cache)."""
    return tmp_path_factory.mktemp("h36m_cache")


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch, tmp_path_factory):
    """Keep every test away from ~/.cache unless it passes its own cache_dir."""
    monkeypatch.setenv("POSEAUG_CACHE", str(tmp_path_factory.getbasetemp() / "default_cache"))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny synthetic baseline checkpoint (one epoch) for inference and export tests."""
    from helpers import tiny_cfg
    from poseaug_pl.train import train

    out = tmp_path_factory.mktemp("tiny_run")
    train(tiny_cfg(out, "test=false", "trainer.max_epochs=1", "augment=false", "feedback=false"))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def h36m_run(h36m, h36m_cache, tmp_path_factory) -> dict:
    """A small estimator trained on real Human3.6M (VideoPose 256 channels, 20 epochs on every
    50th frame, no test) and `evaluate`'s output of its last checkpoint (S9/S11, every 50th
    frame, predictions saved): ``{"dir", "ckpt", "metrics", "evaluate_dir"}``."""
    import json

    from helpers import cli

    out = tmp_path_factory.mktemp("h36m_run")
    r = cli("train", "experiment=baseline_h36m", f"data.root={h36m}",
            f"data.cache_dir={h36m_cache}", "data.stride=50", "data.wild_sequences=0",
            "trainer.max_epochs=20", "data.batch_size=128", "model.estimator.channels=256",
            "logger=none", "test=false", "callbacks.progress_bar.refresh_rate=0",
            f"hydra.run.dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = out / "checkpoints" / "last.ckpt"
    ev = out / "evaluate"
    r = cli(
        "evaluate",
        f"ckpt_path={ckpt}",
        "save_predictions=true",
        f"hydra.run.dir={ev}",
        f"data.cache_dir={h36m_cache}",
    )  # (a run folder's own cache_dir is not used)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((ev / "metrics.json").read_text())
    return {"dir": out, "ckpt": ckpt, "metrics": metrics, "evaluate_dir": ev, "stdout": r.stdout}
