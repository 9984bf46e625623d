"""Specification: files are data. A run folder, checkpoint or data file received from someone
else never makes a command write or read outside the folder the user named, never asks for more
memory than the file plausibly holds, and every bad one ends in exactly one ``error:`` line with
a non-zero exit and no partial output; a resume continues the run it resumes.

Each test plants a marker outside the run (a file whose bytes and time must not change, or a
secret whose bytes must not be copied) and checks it afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY, cli
from poseaug_pl.data import DataError
from poseaug_pl.utils import atomic_output, remove_stale_temporaries


def _fingerprint(path: Path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _one_error(r) -> str:
    """The single ``error:`` line of a failed command (no traceback)."""
    assert r.returncode != 0, r.stdout[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr[-3000:]
    return lines[0]


@pytest.fixture
def marker(tmp_path):
    """A precious file outside every run: ``(path, fingerprint)``."""
    out = tmp_path / "elsewhere"
    out.mkdir()
    path = out / "precious.npz"
    path.write_bytes(b"precious bytes\n")
    return path, _fingerprint(path)


def _received_run(tiny_ckpt, dst: Path) -> Path:
    """A copy of the tiny run (checkpoints and saved config), as received from someone."""
    src = tiny_ckpt.parents[1]
    (dst / "checkpoints").mkdir(parents=True)
    for f in ("last.ckpt", "best.ckpt"):
        (dst / "checkpoints" / f).write_bytes((src / "checkpoints" / f).read_bytes())
    (dst / "config_resolved.yaml").write_text((src / "config_resolved.yaml").read_text())
    return dst


# --- writes and reads outside the run ---------------------------------------------------------


def test_a_set_name_from_a_run_config_never_becomes_a_path(tmp_path, tiny_ckpt, marker):
    run = _received_run(tiny_ckpt, tmp_path / "run")
    target = marker[0].with_suffix("")  # predictions/<name>.npz would land on the marker
    text = (run / "config_resolved.yaml").read_text()
    text = text.replace("cross_sets: {}", f"cross_sets:\n    {target}: {marker[0]}")
    assert str(target) in text
    (run / "config_resolved.yaml").write_text(text)
    r = cli("evaluate", f"ckpt_path={run / 'checkpoints/last.ckpt'}", "save_predictions=true",
            f"hydra.run.dir={tmp_path / 'eval'}")  # fmt: skip
    assert "each name a letter" in _one_error(r)
    assert _fingerprint(marker[0]) == marker[1]
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_symbolic_links_in_a_run_folder_are_refused_before_anything_is_written(
    tmp_path, tiny_ckpt, marker
):
    run = _received_run(tiny_ckpt, tmp_path / "run")
    os.symlink(marker[0], run / "train.log")  # Hydra's log file would append to the marker
    inside = {p: _fingerprint(p) for p in run.rglob("*") if p.is_file() and not p.is_symlink()}
    r = cli("train", f"ckpt_path={run / 'checkpoints/last.ckpt'}", "trainer.max_epochs=2")
    assert "holds symbolic links (train.log)" in _one_error(r)
    r = cli("evaluate", f"ckpt_path={run / 'checkpoints/last.ckpt'}", f"hydra.run.dir={run}")
    assert "holds symbolic links" in _one_error(r)
    assert _fingerprint(marker[0]) == marker[1]
    assert not (run / ".hydra").exists()
    assert {p: _fingerprint(p) for p in run.rglob("*")
            if p.is_file() and not p.is_symlink()} == inside  # fmt: skip


def test_a_linked_run_config_is_not_followed(tmp_path, tiny_ckpt):
    run = _received_run(tiny_ckpt, tmp_path / "run")
    secret = tmp_path / "secret.yaml"
    secret.write_text((run / "config_resolved.yaml").read_text())
    (run / "config_resolved.yaml").unlink()
    os.symlink(secret, run / "config_resolved.yaml")
    r = cli("evaluate", f"ckpt_path={run / 'checkpoints/last.ckpt'}",
            f"hydra.run.dir={tmp_path / 'eval'}")  # fmt: skip
    assert "a symbolic link" in _one_error(r)


def test_evaluate_never_replaces_a_runs_metrics_without_overwrite(tmp_path, tiny_ckpt):
    run = _received_run(tiny_ckpt, tmp_path / "run")
    (run / "metrics.json").write_text('{"kept": 1}')
    r = cli("evaluate", f"ckpt_path={run / 'checkpoints/last.ckpt'}", f"hydra.run.dir={run}")
    assert "already holds results" in _one_error(r) and r.returncode == 2
    assert json.loads((run / "metrics.json").read_text()) == {"kept": 1}
    assert not (run / ".hydra").exists()


def test_temporary_files_are_unpredictable_exclusive_and_cleaned_after_a_kill(tmp_path, marker):
    out = tmp_path / "best.ckpt"
    names = []
    for _ in range(2):
        with atomic_output(out) as tmp:
            names.append(tmp.name)
            assert not tmp.name.endswith(".ckpt")  # a *.ckpt glob never counts it
            tmp.write_bytes(b"new")
    assert names[0] != names[1] and str(os.getpid()) in names[0]
    # a planted link at the old predictable name is neither followed nor in the way
    os.symlink(marker[0], tmp_path / f".best.{os.getpid()}.tmp.ckpt")
    with atomic_output(out) as tmp:
        tmp.write_bytes(b"newer")
    assert out.read_bytes() == b"newer" and _fingerprint(marker[0]) == marker[1]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".best.{dead}.x8Yq2ab1.tmp"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".best.{os.getpid()}.x8Yq2ab2.tmp"
    live.write_bytes(b"being written")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


def test_compare_reads_no_checkpoint_outside_the_named_folder(tmp_path, tiny_ckpt):
    from poseaug_pl.compare import epoch_offset

    run = tmp_path / "run"
    run.mkdir()
    (run / "config_resolved.yaml").write_text(
        f"model:\n  estimator_ckpt: ../../../../../../..{tiny_ckpt}\n"
    )
    assert epoch_offset(run, root=run) == 0  # outside ``root``: not opened
    assert epoch_offset(run, root="/") == 1


def _convert(dataset: str, root: Path, out: Path):
    """`prepare_data`'s conversion in this process (what the command runs; its `DataError` is
    the command line's one ``error:`` line, tested through the CLI in test_convert_*.py)."""
    from omegaconf import OmegaConf

    from poseaug_pl.prepare_data import convert

    return convert(OmegaConf.create({"dataset": dataset, "root": str(root), "output": str(out),
                                     "split": None, "annotation": None}))  # fmt: skip


def _h5(path: Path, build) -> Path:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        build(f, h5py)
    return path


def _3dhp_root(tmp_path: Path, build) -> Path:
    """A test-set folder whose TS1 is ``build``'s and TS2 .. TS6 are plain."""
    root = tmp_path / "mpi_inf_3dhp_test_set"
    for k in range(1, 7):
        (root / f"TS{k}").mkdir(parents=True)
        _h5(root / f"TS{k}" / "annot_data.mat", build if k == 1 else _good)
    return root


def _good(f, h5py, skip=()):
    n = 4
    data = {"univ_annot3": np.ones((n, 1, 17, 3)), "annot2": np.ones((n, 1, 17, 2)),
            "valid_frame": np.ones((n, 1)), "activity_annotation": np.ones((n, 1))}  # fmt: skip
    for k, v in data.items():
        if k not in skip:
            f[k] = v


@pytest.mark.parametrize("kind", ["external_link", "soft_loop", "external_storage", "group",
                                  "reference", "huge", "strings"])  # fmt: skip
def test_3dhp_files_are_read_only_as_numbers_stored_in_them(tmp_path, kind):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4 * 17 * 3, dtype=np.float64).tobytes())

    def build(f, h5py):
        _good(f, h5py, skip=("univ_annot3",))
        if kind == "external_link":
            _h5(tmp_path / "other.h5", lambda g, _: g.create_dataset("x", data=np.ones(3)))
            f["univ_annot3"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "x")
        elif kind == "soft_loop":
            f["univ_annot3"] = h5py.SoftLink("/loop")
            f["loop"] = h5py.SoftLink("/univ_annot3")
        elif kind == "external_storage":
            f.create_dataset("univ_annot3", shape=(4, 1, 17, 3), dtype="f8",
                             external=[(str(secret), 0, secret.stat().st_size)])  # fmt: skip
        elif kind == "group":
            f.create_group("univ_annot3")
        elif kind == "reference":
            f["univ_annot3"] = np.array([f["annot2"].ref] * 4, dtype=h5py.ref_dtype)
        elif kind == "huge":
            f.create_dataset("univ_annot3", shape=(10**6, 1, 17, 3000), dtype="f8")
        else:
            f["univ_annot3"] = np.array([b"a", b"b", b"c", b"d"])

    root = _3dhp_root(tmp_path, build)
    out = tmp_path / "out.npz"
    with pytest.raises(DataError, match="univ_annot3"):  # (the command line's one error: line)
        _convert("mpi_inf_3dhp", root, out)
    assert not out.exists()


# --- memory within what a file holds ----------------------------------------------------------


def test_a_stride0_checkpoint_is_refused_before_it_allocates(tmp_path, tiny_ckpt):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["state_dict"]["estimator.fake"] = torch.zeros(1).expand(20000, 20000)
    bad = tmp_path / "run" / "checkpoints" / "last.ckpt"
    bad.parent.mkdir(parents=True)
    torch.save(ckpt, bad)
    assert bad.stat().st_size < 50 << 20
    r = cli("export", f"ckpt_path={bad}", "format=torchscript", f"output={tmp_path / 'e.pt'}")
    assert "cannot hold" in _one_error(r)
    assert not (tmp_path / "e.pt").exists()


def test_sizes_from_a_config_have_ceilings(tmp_path):
    r = cli("train", *TINY, "data.train_sequences=100000000", f"hydra.run.dir={tmp_path / 'a'}")
    assert "data.train_sequences" in _one_error(r)
    r = cli("train", *TINY, "data.train_sequences=50000", "data.frames=50000",
            f"hydra.run.dir={tmp_path / 'b'}")  # fmt: skip
    assert "training pairs" in _one_error(r)
    r = cli("train", *TINY, "model.estimator.channels=1000000", f"hydra.run.dir={tmp_path / 'c'}")
    assert "model.estimator.channels" in _one_error(r)


def test_an_inflation_bomb_is_refused_before_it_inflates(tmp_path):
    from poseaug_pl.data import load_cross_set

    path = tmp_path / "bomb.npz"
    header = b"\x93NUMPY\x01\x00" + b"{'descr': '<f8', 'fortran_order': False, 'shape': (0,), }"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("pose3d.npy", "w", force_zip64=True) as f:
            f.write(header.ljust(126) + b"\n")
            zeros = bytes(1 << 20)
            for _ in range(300):  # 300 MiB of zeros: about 0.3 MiB compressed
                f.write(zeros)
        z.writestr("pose2d.npy", b"")
    assert path.stat().st_size < 2 << 20
    with pytest.raises(DataError, match="inflates to 300 MiB"):
        load_cross_set(path)


def test_a_header_larger_than_its_member_is_refused(tmp_path):
    from poseaug_pl.data import load_cross_set

    path = tmp_path / "liar.npz"
    np.savez(path, pose3d=np.zeros((2, 16, 3)), pose2d=np.zeros((2, 16, 2)))
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["pose3d.npy"] = members["pose3d.npy"].replace(b"(2, 16, 3)", b"(9999999, 16, 3)"[:10])
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(DataError):
        load_cross_set(path)


# --- one line for every bad input -------------------------------------------------------------


@pytest.mark.parametrize("text,expect", [
    ('[{"image_id": 1e30, "keypoints": [1, 2, 1]}]', "image_id"),
    ('[{"image_id": Infinity, "keypoints": [1, 2, 1]}]', "Infinity"),
    ("[" * 200_000 + "]" * 200_000, "RecursionError"),
])  # fmt: skip
def test_predict_json_that_json_parses_badly_ends_in_one_line(tmp_path, tiny_ckpt, text, expect):
    src = tmp_path / "kp.json"
    src.write_text(text)
    r = cli("predict", f"ckpt_path={tiny_ckpt}", f"input={src}", f"output={tmp_path / 'o.npz'}")
    assert expect in _one_error(r)
    assert not (tmp_path / "o.npz").exists()


def test_predict_refuses_keypoints_that_are_not_pixels(tmp_path, tiny_ckpt):
    from poseaug_pl.data import generate
    from poseaug_pl.geometry.camera import image_coordinates

    pose = generate(sequences=1, frames=5).pose2d[:5].double()  # (5, 16, 2) normalised
    pixels = image_coordinates(pose, 1000, 1000).numpy()
    out = tmp_path / "o.npz"
    for name, arr, size, expect in (
        ("metres", pose.numpy() * 0.4, 1000, "must be pixels"),
        ("huge", np.full_like(pixels, 1e308), 1000, "not one"),
        ("image", pixels, "1e300", "image width and height"),
    ):
        np.save(tmp_path / f"{name}.npy", arr)
        r = cli("predict", f"ckpt_path={tiny_ckpt}", f"input={tmp_path / name}.npy",
                f"output={out}", "layout=poseaug16", f"image_width={size}",
                "image_height=1000")  # fmt: skip
        assert expect in _one_error(r), name
        assert not out.exists()


@pytest.mark.parametrize("opset", ["1000", "-1", "abc"])
def test_export_refuses_an_opset_it_would_not_write(tmp_path, tiny_ckpt, opset):
    pytest.importorskip("onnxscript")
    out = tmp_path / "e.onnx"
    r = cli("export", f"ckpt_path={tiny_ckpt}", "format=onnx", f"output={out}", f"opset={opset}")
    assert "opset" in _one_error(r)
    assert not out.exists()


@pytest.mark.parametrize("field,value", [
    ("epoch", -50), ("global_step", -1), ("rng_cpu", torch.zeros(3, dtype=torch.uint8)),
    ("optimizer_states", [{"state": "x"}] * 4),
])  # fmt: skip
def test_a_damaged_resume_state_ends_in_one_line_before_a_run_folder(tmp_path, tiny_ckpt,
                                                                     field, value):
    run = _received_run(tiny_ckpt, tmp_path / "run")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt[field] = value
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    new = tmp_path / "new"
    r = cli("train", f"ckpt_path={run / 'checkpoints/last.ckpt'}", f"hydra.run.dir={new}")
    assert field in _one_error(r)
    assert not new.exists() or not any(new.iterdir())


def test_converted_files_are_checked_before_they_are_written(tmp_path):
    from poseaug_pl.prepare_data import check_written

    out = tmp_path / "out.npz"
    pose3d = np.tile(np.linspace(0, 0.5, 16)[:, None], (4, 1, 3)) + [0, 0, 4.0]
    cases = {
        "NaN": dict(pose3d=np.where(np.arange(4)[:, None, None] == 2, np.nan, pose3d)),
        "behind the camera": dict(pose3d=pose3d * [1, 1, -1]),
        "5 m from the root": dict(pose3d=np.concatenate([pose3d[:3], pose3d[3:] * 1000])),
    }
    for why, arrays in cases.items():
        tmp = tmp_path / f".{why}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, pose2d=np.zeros((4, 16, 2)) + 0.1, **arrays)
        with pytest.raises(DataError, match="nothing was written"):
            check_written(tmp, out, "humaneva")


# --- resume continues the run it resumes ------------------------------------------------------


def test_a_killed_run_resumes_with_ckpt_path_alone_in_its_folder(tmp_path):
    """A non-default experiment with overrides, killed after an epoch, resumed with
    ``ckpt_path`` alone: the same folder, the same metrics as the uninterrupted run."""
    args = [*TINY, "experiment=baseline_synthetic", "data.frames=16", "model.estimator.channels=24",
            "trainer.max_epochs=4", "logger=csv"]  # fmt: skip
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert cli("train", *args, f"hydra.run.dir={full}").returncode == 0
    cmd = [sys.executable, "-m", "poseaug_pl.train", *args, f"hydra.run.dir={cut}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = cut / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if torch.load(last, map_location="cpu", weights_only=True)["epoch"] >= 1:
                break
        except Exception:  # not there yet, or being written
            pass
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run ended before it could be killed (a very fast machine)")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "metrics.json").exists()
    r = cli("train", f"ckpt_path={last}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"run folder: {cut}" in r.stdout and "baseline_synthetic" in r.stdout
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert a.keys() == b.keys()
    for name in a:
        assert b[name]["mpjpe"] == pytest.approx(a[name]["mpjpe"], abs=1e-4), name
    r = cli("train", f"ckpt_path={last}", "model.estimator.channels=32")
    assert "changes what the resumed run trained" in _one_error(r)


def _damaged_3dpw(root: Path, field: str, value) -> None:
    import pickle

    from test_convert_3dpw import write_sequence

    (root / "test").mkdir(parents=True)
    path = root / "test" / "seq.pkl"
    write_sequence(path, np.random.default_rng(0))
    seq = pickle.loads(path.read_bytes())
    seq[field] = value
    path.write_bytes(pickle.dumps(seq, protocol=2))


@pytest.mark.parametrize("field,value", [
    ("jointPositions", 3.0), ("cam_poses", "abc"), ("cam_poses", np.zeros(16)),
    ("campose_valid", "yes"), ("cam_intrinsics", np.zeros(2)),
])  # fmt: skip
def test_a_3dpw_file_with_wrong_types_is_one_line(tmp_path, field, value):
    _damaged_3dpw(tmp_path / "3dpw", field, value)
    out = tmp_path / "out.npz"
    with pytest.raises(DataError):
        _convert("3dpw", tmp_path / "3dpw", out)
    assert not out.exists()


@pytest.mark.parametrize("damage", ["integer keys", "list for dict", "string for arrays"])
def test_a_humaneva_file_with_wrong_types_is_one_line(tmp_path, damage):
    from test_convert_humaneva import write_fixture

    root = tmp_path / "humaneva"
    root.mkdir()
    write_fixture(root)
    pos3d = np.load(root / "data_3d_humaneva15.npz", allow_pickle=True)["positions_3d"].item()
    if damage == "integer keys":
        pos3d = {i: v for i, v in enumerate(pos3d.values())}
    elif damage == "list for dict":
        pos3d = {k: list(v.values()) for k, v in pos3d.items()}
    else:
        pos3d = {k: {a: "not an array" for a in v} for k, v in pos3d.items()}
    np.savez(root / "data_3d_humaneva15.npz", positions_3d=np.array(pos3d, dtype=object))
    out = tmp_path / "out.npz"
    with pytest.raises(DataError):
        _convert("humaneva", root, out)
    assert not out.exists()


def test_files_that_claim_gigabytes_are_refused_under_a_memory_limit(tmp_path, tiny_ckpt):
    """Under a 3 GB address-space limit (torch itself needs about 1.5), a checkpoint whose
    stride-0 weight claims 16 GB and an .npz that inflates to 4 GiB are refused by their budget
    checks, not by running out of memory."""
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["state_dict"]["estimator.fake"] = torch.zeros(1).expand(65536, 65536)
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    bomb = tmp_path / "bomb.npz"
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (536870912,), }"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("pose3d.npy", "w", force_zip64=True) as f:
            f.write(b"\x93NUMPY\x01\x00" + header.ljust(117) + b"\n")
            zeros = bytes(16 << 20)
            for _ in range(256):  # 4 GiB of zeros: about 4 MiB compressed
                f.write(zeros)
        z.writestr("pose2d.npy", b"")
    script = (
        "import sys\n"
        "from poseaug_pl.data import DataError, load_cross_set\n"
        "from poseaug_pl.models.ckpt import read_checkpoint\n"
        "for load, path in ((read_checkpoint, sys.argv[1]), (load_cross_set, sys.argv[2])):\n"
        "    try:\n"
        "        load(path)\n"
        "    except DataError as e:\n"
        "        print('refused:', e)\n"
    )
    r = subprocess.run(["bash", "-c", f'ulimit -v 3000000; "{sys.executable}" -c "$0" "$1" "$2"',
                        script, str(bad), str(bomb)], capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and "cannot hold" in lines[0] and "inflates to 4096 MiB" in lines[1]
