"""No good file is ever lost to a failed write, and a finished run is never overwritten.

* Every checkpoint and output file is written to a temporary file in its own folder, synced and
  renamed into place: a write that fails (disk full, read-only folder) keeps the previous file,
  removes the partial one and ends the command with one ``error:`` line and exit code 1.
* ``train`` into a folder holding a finished run is refused (exit 2, nothing there changed)
  unless ``ckpt_path=`` resumes one of its checkpoints or ``overwrite=true`` is given.

The full-disk and read-only tests mount a tmpfs in a user + mount namespace (``unshare``) and
skip where that is not available.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY, TINY_CSV, cli, tiny_cfg
from poseaug_pl.training import checkpoint_io
from poseaug_pl.training.checkpoint_io import AtomicCheckpointIO
from poseaug_pl.training.config import ConfigError, WriteFailed
from poseaug_pl.training.runfolder import check_new_run, clear_run, finished_run
from poseaug_pl.utils import atomic_output, write_text_atomic

#: A one-epoch baseline (small checkpoints, no augmentation figures), logged to CSV.
BASELINE = [*TINY_CSV, "augment=false", "feedback=false", "model.warmup_epochs=0", "test=false",
            "trainer.max_epochs=1"]  # fmt: skip


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files of an atomic write left behind (``.<stem>.<pid>.tmp<suffix>``)."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name or p.name.startswith(".write_test")]


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


# --- the checkpoint plugin and the atomic writer ------------------------------------------------


def test_a_checkpoint_save_that_fails_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "best.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 0}, path)
    before = path.read_bytes()

    def disk_full(checkpoint, file):
        file.write(b"PK\x03\x04" + b"x" * 5000)  # some bytes of the new file reach the disk
        file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_io, "_write", disk_full)
    with pytest.raises(WriteFailed) as e:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 1}, path)
    assert str(e.value) == (f"cannot write {path}: No space left on device; "
                            "the previous file is unchanged")  # fmt: skip
    assert "\n" not in str(e.value)
    assert path.read_bytes() == before  # byte-identical
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt"]  # no partial file
    assert io.load_checkpoint(path)["epoch"] == 0


def test_a_first_checkpoint_that_fails_leaves_no_file(tmp_path, monkeypatch):
    def broken(checkpoint, file):
        file.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from OSError(
            errno.ENOSPC, "No space left on device"
        )

    monkeypatch.setattr(checkpoint_io, "_write", broken)
    with pytest.raises(WriteFailed, match="No space left on device; nothing was written"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 0}, tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []


class Gadget:  # a pickled object: code, not data
    pass


def test_checkpoints_load_weights_only_whatever_the_caller_asks(tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {}, "gadget": Gadget()}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)


def test_every_trainer_of_train_writes_checkpoints_atomically(tmp_path):
    from poseaug_pl.train import build_trainer

    trainer = build_trainer(tiny_cfg(tmp_path))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_atomic_output_keeps_the_old_file_and_maps_only_os_errors(tmp_path):
    path = tmp_path / "metrics.json"
    write_text_atomic(path, '{"old": 1}')
    with pytest.raises(WriteFailed, match=r"metrics.json: No space left on device; the previous"):
        with atomic_output(path) as tmp:
            tmp.write_text('{"new"')
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(KeyError):  # not a write error: passes unchanged
        with atomic_output(path) as tmp:
            tmp.write_text("half")
            raise KeyError("bug")
    assert path.read_text() == '{"old": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_the_csv_log_is_rewritten_atomically(tmp_path, monkeypatch):
    import csv

    from poseaug_pl.training.resume import AppendingCSVLogger

    logger = AppendingCSVLogger(tmp_path, name="csv", version="")
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()
    before = (tmp_path / "csv" / "metrics.csv").read_bytes()
    logger.log_metrics({"loss": 0.5, "val": 2.0}, step=1)

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", full)
    with pytest.raises(WriteFailed, match="metrics.csv"):
        logger.save()
    assert (tmp_path / "csv" / "metrics.csv").read_bytes() == before
    logger.finalize("failed")  # after a failure the log only warns: the first error is reported
    monkeypatch.undo()
    logger.finalize("success")
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    assert [r["step"] for r in rows] == ["0", "1"] and rows[1]["val"] == "2.0"
    assert _leftovers(tmp_path) == []


# --- a real training run on a filesystem that fills up ------------------------------------------


@functools.cache
def _no_namespace() -> str | None:
    """Why a user + mount namespace with a tmpfs cannot be made here (None: it can)."""
    if shutil.which("unshare") is None:
        return "unshare not found"
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"poseaug_ns_probe_{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(probe))}"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        probe.rmdir()
    return None if r.returncode == 0 else f"no user+mount namespace: {r.stderr.strip()[:200]}"


def _in_namespace(script: str) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) in a new user + mount namespace; skip where there is none."""
    why = _no_namespace()
    if why:
        pytest.skip(why)
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def _q(path: Path) -> str:
    return shlex.quote(str(path))


def _command(module: str, *args) -> str:
    return shlex.join([sys.executable, "-m", f"poseaug_pl.{module}", *map(str, args)])


def _pages(folder: Path) -> int:
    """Bytes a tmpfs needs for the files under ``folder`` (whole pages per file)."""
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(-(-p.stat().st_size // page) * page for p in folder.rglob("*") if p.is_file())


def test_a_full_disk_during_training_leaves_every_checkpoint_loadable(tmp_path):
    if _no_namespace():
        pytest.skip(_no_namespace())
    # size it: the files of a finished one-epoch run fit, plus half a checkpoint; the next
    # epoch's checkpoint (written beside the old one before the rename) does not
    measure = tmp_path / "measure"
    r = cli("train", *BASELINE, f"hydra.run.dir={measure}")
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = (measure / "checkpoints" / "last.ckpt").stat().st_size
    size_k = (_pages(measure) + ckpt // 2) // 1024
    run, saved = tmp_path / "run", tmp_path / "saved"
    run.mkdir()
    saved.mkdir()
    train = _command("train", *BASELINE, "trainer.max_epochs=3", f"hydra.run.dir={run}")
    r = _in_namespace(
        f"mount -t tmpfs -o size={size_k}k tmpfs {_q(run)} || exit 99\n"
        f"{train} >{_q(tmp_path / 'out.txt')} 2>{_q(tmp_path / 'err.txt')}; rc=$?\n"
        f"cp -a {_q(run)}/. {_q(saved)}/ && exit $rc"
    )
    if r.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()[:200]}")
    err = (tmp_path / "err.txt").read_text()
    assert r.returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    (line,) = _errors(err)
    written = rf"{re.escape(str(run))}/checkpoints/(best|last)\.ckpt"
    expected = (
        rf"error: cannot write {written}: No space left on device; the previous file is unchanged"
    )
    assert re.fullmatch(expected, line), line
    ckpts = sorted((saved / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in ckpts] == ["best.ckpt", "last.ckpt"]
    for p in ckpts:  # every checkpoint left loads, and holds the good first epoch
        state = torch.load(p, map_location="cpu", weights_only=True)
        assert state["epoch"] == 0 and state["state_dict"], p
    assert _leftovers(saved) == []


# --- read-only output folders -------------------------------------------------------------------


def _read_only_run(tmp_path: Path, command: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Mount a tmpfs read-only at ``tmp_path/ro``, run ``command`` there; (result, what the
    folder holds afterwards)."""
    ro = tmp_path / "ro"
    ro.mkdir(exist_ok=True)
    listing = tmp_path / "listing.txt"
    r = _in_namespace(
        f"mount -t tmpfs -o size=1m tmpfs {_q(ro)} && mount -o remount,ro {_q(ro)} || exit 99\n"
        f"{command}; rc=$?\nfind {_q(ro)} -mindepth 1 >{_q(listing)}; exit $rc"
    )
    if r.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()[:200]}")
    return r, listing.read_text().split()


@pytest.fixture
def keypoints(tmp_path) -> Path:
    """A small (N, 16, 3) pixel keypoint array with scores (the poseaug16 layout)."""
    from poseaug_pl.data import generate
    from poseaug_pl.geometry.camera import image_coordinates

    pixels = image_coordinates(generate(sequences=1, frames=8).pose2d[:8].double(), 1000, 1000)
    pixels = pixels.numpy()
    path = tmp_path / "kp.npy"
    np.save(path, np.concatenate([pixels, np.ones((*pixels.shape[:2], 1))], -1))
    return path


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export"])
def test_a_read_only_output_folder_ends_with_one_error_line(tmp_path, command, request):
    ro = tmp_path / "ro"
    if command == "train":
        args = [*TINY, f"hydra.run.dir={ro / 'run'}"]
    else:
        ckpt = request.getfixturevalue("tiny_ckpt")
        args = {
            "evaluate": [f"ckpt_path={ckpt}", f"hydra.run.dir={ro / 'eval'}"],
            "predict": [
                f"ckpt_path={ckpt}",
                f"input={request.getfixturevalue('keypoints')}",
                f"output={ro / 'out.npz'}",
                "layout=poseaug16",
                "image_width=1000",
                "image_height=1000",
            ],
            "export": [f"ckpt_path={ckpt}", "format=torchscript", f"output={ro / 'net.pt'}"],
        }[command]
    r, left = _read_only_run(tmp_path, _command(command, *args))
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    (line,) = _errors(r.stderr)
    assert line.startswith(f"error: cannot write {ro}") and "Read-only file system" in line, line
    assert left == []  # nothing partial


def test_predict_checks_every_named_file_before_writing_any(tmp_path, tiny_ckpt, keypoints):
    out = tmp_path / "out.npz"  # writable
    args = [
        f"ckpt_path={tiny_ckpt}",
        f"input={keypoints}",
        f"output={out}",
        "layout=poseaug16",
        "image_width=1000",
        "image_height=1000",
        f"figure={tmp_path / 'ro' / 'fig.png'}",
    ]
    r, _ = _read_only_run(tmp_path, _command("predict", *args))
    assert r.returncode == 1 and len(_errors(r.stderr)) == 1, r.stderr[-3000:]
    assert "fig.png" in _errors(r.stderr)[0]
    assert not out.exists()  # not half the outputs: none


# --- a finished run is never overwritten --------------------------------------------------------


def _csv_steps(path: Path) -> list[str]:
    import csv

    with open(path, newline="") as f:
        return [row["step"] for row in csv.DictReader(f)]


def _touch(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_which_folders_hold_a_run(tmp_path):
    run = tmp_path / "run"
    assert finished_run(run) == [] and check_new_run(run) == []  # new folder
    _touch(run / ".hydra" / "config.yaml")
    _touch(run / "config_resolved.yaml")
    _touch(run / "train.log")
    assert check_new_run(run) == []  # what Hydra and the start of a run write: not a run
    _touch(run / "metrics.json")
    with pytest.raises(ConfigError) as e:
        check_new_run(run)
    msg = str(e.value)
    assert str(run) in msg and "ckpt_path=" in msg and "overwrite=true" in msg
    _touch(run / "checkpoints" / "last.ckpt")
    assert finished_run(run) == ["checkpoints/last.ckpt", "metrics.json"]
    assert check_new_run(run, ckpt_path=run / "checkpoints" / "last.ckpt") == []  # resume here
    with pytest.raises(ConfigError, match="already holds a run"):  # another run's checkpoint
        check_new_run(run, ckpt_path=tmp_path / "other" / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match="resume or overwrite, not both"):
        check_new_run(run, ckpt_path=run / "checkpoints" / "last.ckpt", overwrite=True)
    assert check_new_run(run, overwrite=True) == ["checkpoints/last.ckpt", "metrics.json"]
    for name in ("csv/metrics.csv", "figures/a.png", "plausibility.jsonl", "ddp_check.json"):
        _touch(run / name)
    clear_run(run)
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()) == [
        ".hydra/config.yaml", "config_resolved.yaml", "train.log"]  # fmt: skip


def test_training_twice_into_one_folder_is_refused_unless_resumed_or_overwritten(tmp_path):
    run = tmp_path / "run"
    r = cli("train", *BASELINE, f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-2000:]
    first = _digests(run)
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt", "csv/metrics.csv",
            ".hydra/config.yaml"} <= set(first)  # fmt: skip
    steps = _csv_steps(run / "csv" / "metrics.csv")

    r = cli("train", *BASELINE, "seed=1", f"hydra.run.dir={run}")  # a second run: refused
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    (line,) = _errors(r.stderr)
    assert str(run) in line and f"ckpt_path={run}/checkpoints/last.ckpt" in line
    assert "overwrite=true" in line
    assert _digests(run) == first  # byte-identical, .hydra/ included; nothing added

    r = cli(
        "train",
        *BASELINE,
        f"ckpt_path={run / 'checkpoints/last.ckpt'}",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run}",
    )  # resuming it: allowed
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1

    r = cli("train", *BASELINE, "overwrite=true", f"hydra.run.dir={run}")  # afresh: allowed
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 0
    assert _csv_steps(run / "csv" / "metrics.csv") == steps  # one run's rows only
