"""Files from others are data, never code: npz and pickle files are read without running code.

Every reader of ``.npz`` files (cross sets, keypoint files, Human3.6M) refuses an object array that
pickles anything but numpy arrays, dicts, lists, strings and numbers with one line naming the
file and the refused global, before the global is called; data made of those still reads, in
every pickle protocol, from Python 2 and 3 and numpy 1 and 2.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from helpers import cli
from poseaug_pl.data import DataError, load_cross_set, load_h36m
from poseaug_pl.data.keypoints import read_keypoints
from poseaug_pl.data.safe_pickle import ADMITTED, SafeNpz, read_npz, safe_pickle_load
from test_bad_input import write_h36m

#: The global a payload calls, as a pickle names it (``posix.mkdir`` on Linux).
REFUSED = f"{os.mkdir.__module__}.{os.mkdir.__name__}"


class MakesFolder:
    """Unpickling this creates the folder ``marker``: a stand-in for any code a file could run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def assert_refused(message: str, path: Path, marker: Path) -> None:
    """One line naming the file and the refused global; the payload did not run."""
    assert len(message.strip().splitlines()) == 1, message
    assert str(path) in message and f"'{REFUSED}'" in message, message
    assert not marker.exists(), "the payload ran"


def assert_cli_refused(r, path: Path, marker: Path, *outputs: Path) -> None:
    """A command that met a payload: exit 2, exactly one ``error:`` line, nothing written."""
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert_refused(errors[0], path, marker)
    for out in outputs:
        assert not out.exists() or not any(out.iterdir() if out.is_dir() else [out]), out


def assert_same(got, want) -> None:
    """``got`` is ``want``: same types (plain ``np.ndarray``, not a subclass), dtypes and values."""
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype)
        if want.dtype.hasobject:
            for g, w in zip(got.flat, want.flat):
                assert_same(g, w)
        else:
            np.testing.assert_array_equal(got, want)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            assert_same(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    else:
        assert got == want


# --- the payloads are live ------------------------------------------------------------------


def test_a_payload_runs_code_under_plain_np_load(tmp_path):
    """What the readers below guard against: ``allow_pickle=True`` calls the payload."""
    marker = tmp_path / "ran"
    np.savez(tmp_path / "p.npz", positions_2d={"video": MakesFolder(marker)})
    with np.load(tmp_path / "p.npz", allow_pickle=True) as npz:
        npz["positions_2d"]
    assert marker.is_dir()


# --- every reader refuses a payload ---------------------------------------------------------


def test_cross_set_refuses_a_payload(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "evil.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = MakesFolder(marker)
    np.savez(path, pose3d=payload, pose2d=np.zeros((1, 16, 2), np.float32))
    with pytest.raises(DataError) as e:
        load_cross_set(path)
    assert_refused(str(e.value), path, marker)


@pytest.mark.parametrize("where", ["positions_2d", "metadata", "keypoints", "single array"])
def test_keypoint_file_refuses_a_payload(tmp_path, where):
    marker, path = tmp_path / "ran", tmp_path / "evil.npz"
    evil = MakesFolder(marker)
    ok = {"v": {"custom": [np.zeros((3, 17, 2), np.float32)]}}
    members = {
        "positions_2d": {"positions_2d": {"v": {"custom": [evil]}}},
        "metadata": {"positions_2d": ok, "metadata": {"video_metadata": {"v": {"w": evil}}}},
        "keypoints": {"keypoints": np.array([evil, None], dtype=object), "other": np.zeros(2)},
        "single array": {"anything": np.array([evil, None], dtype=object)},
    }[where]
    np.savez(path, **members)
    with pytest.raises(DataError) as e:
        read_keypoints(path)
    assert_refused(str(e.value), path, marker)


def test_human36m_3d_file_refuses_a_payload(tmp_path):
    root, marker = write_h36m(tmp_path / "h"), tmp_path / "ran"
    path = root / "data_3d_h36m.npz"
    np.savez(path, positions_3d={"S1": {"Walking 1": MakesFolder(marker)}})
    with pytest.raises(DataError) as e:
        load_h36m(root, subjects=["S1"], cache_dir=False)
    assert_refused(str(e.value), path, marker)


def test_human36m_2d_file_refuses_a_payload(tmp_path):
    root, marker = write_h36m(tmp_path / "h", with_2d=True), tmp_path / "ran"
    path = root / "data_2d_h36m_det.npz"
    np.savez(path, positions_2d={"S1": {"Walking 1": [MakesFolder(marker)] * 4}},
             metadata={"num_joints": 16})  # fmt: skip
    with pytest.raises(DataError) as e:
        load_h36m(root, keypoints="det", subjects=["S1"], cache_dir=False)
    assert_refused(str(e.value), path, marker)


def test_a_bare_pickle_named_npz_is_not_unpickled(tmp_path):
    """``np.load(allow_pickle=True)`` unpickles a file that is neither zip nor .npy; the readers
    take only zip archives."""
    marker = tmp_path / "ran"
    root = tmp_path / "h"
    root.mkdir()
    for path in (root / "data_3d_h36m.npz", tmp_path / "cross.npz", tmp_path / "kp.npz"):
        path.write_bytes(pickle.dumps(MakesFolder(marker)))
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_h36m(root, cache_dir=False)
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_cross_set(tmp_path / "cross.npz")
    with pytest.raises(DataError, match="cannot read"):
        read_keypoints(tmp_path / "kp.npz")
    assert not marker.exists()


def test_commands_refuse_payloads_with_one_line_and_write_nothing(tmp_path, tiny_ckpt):
    """predict (keypoints), prepare_data (Human3.6M, cross set) and train (cross set)."""
    marker = tmp_path / "ran"
    kp = tmp_path / "kp.npz"
    np.savez(kp, positions_2d={"v": {"custom": [MakesFolder(marker)]}})
    root = write_h36m(tmp_path / "h")
    np.savez(root / "data_3d_h36m.npz", positions_3d={"S1": {"Walking 1": MakesFolder(marker)}})
    cross = tmp_path / "cross.npz"
    np.savez(cross, pose3d=np.array([MakesFolder(marker), None], dtype=object),
             pose2d=np.zeros((2, 16, 2), np.float32))  # fmt: skip
    tiny_data = ["data.train_sequences=6", "data.test_sequences=2", "data.wild_sequences=2",
                 "data.frames=20"]  # fmt: skip
    out, cache, ckpts = tmp_path / "out.npz", tmp_path / "cache", tmp_path / "r3" / "checkpoints"
    runs = {  # name: (file with the payload, outputs that must not appear, command line)
        "predict": (kp, [out], ["predict", f"ckpt_path={tiny_ckpt}", f"input={kp}",
                                f"output={out}", "image_width=1000", "image_height=1000"]),
        "prepare_data h36m": (root / "data_3d_h36m.npz", [cache], [
            "prepare_data", "data=h36m", f"data.root={root}", f"data.cache_dir={cache}",
            f"hydra.run.dir={tmp_path / 'r1'}"]),
        "prepare_data cross": (cross, [], ["prepare_data", *tiny_data,
            f"+data.cross_sets.evil={cross}", f"hydra.run.dir={tmp_path / 'r2'}"]),
        "train cross": (cross, [ckpts], ["train", *tiny_data, "logger=none",
            f"+data.cross_sets.evil={cross}", f"hydra.run.dir={tmp_path / 'r3'}"]),
    }  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(runs, pool.map(lambda run: cli(*run[2]), runs.values())))
    for name, (path, outputs, _) in runs.items():
        assert_cli_refused(results[name], path, marker, *outputs)


# --- what is admitted -----------------------------------------------------------------------


def test_only_numpy_array_dtype_and_scalar_rebuilders_and_bytes_are_admitted():
    assert {f"{m}.{n}" for m, n in ADMITTED} == {
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "_codecs.encode",
        "builtins.bytes",
        "__builtin__.bytes",
    }


def data_like_videopose3d():
    """Nested dicts and lists of float32/float64/int arrays, strings, numbers, object arrays."""
    rng = np.random.default_rng(0)
    zero_d = np.empty((), dtype=object)
    zero_d[()] = {"inner": np.arange(3)}
    return {
        "S1": {"Walking 1": rng.random((5, 17, 3)).astype(np.float32),
               "Eating": [rng.random((4, 16, 2)).astype(np.float32) for _ in range(4)]},
        "float64": rng.random((2, 3)),
        "int": np.arange(6, dtype=np.int64).reshape(2, 3),
        "fortran": np.asfortranarray(rng.random((3, 4))),
        "empty": np.zeros((0, 16, 2), np.float32),
        "strings": np.array(["a", "bc"]),
        "object": zero_d,
        "meta": {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": [[1, 3], [2, 4]],
                 "video_metadata": {"v": {"w": 1920, "h": np.int64(1080)}}},
        "numbers": (1, 2.5, -3, 10**30, np.float64(0.25), np.float32(1.5), np.bool_(True)),
        "plain": [None, True, "text", b"raw bytes", ""],
    }  # fmt: skip


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_restricted_unpickler_reads_data_in_every_protocol(protocol):
    data = data_like_videopose3d()
    blob = pickle.dumps(data, protocol=protocol)
    assert_same(safe_pickle_load(io.BytesIO(blob), "data.pkl"), pickle.loads(blob))


def test_shared_and_cyclic_references_survive():
    arr, loop = np.arange(3.0), []
    loop.append(loop)
    blob = pickle.dumps({"a": arr, "b": arr, "loop": loop, "t": (arr,)}, protocol=4)
    got = safe_pickle_load(io.BytesIO(blob), "x.pkl")
    assert got["a"] is got["b"] is got["t"][0] and type(got["a"]) is np.ndarray
    assert got["loop"][0] is got["loop"]


def test_npz_object_members_read_like_np_load(tmp_path):
    data = data_like_videopose3d()
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, positions_3d=data["S1"], metadata=data, plain=np.arange(5.0))
        with np.load(path, allow_pickle=True) as want:
            want = {k: want[k] for k in want.files}
        assert_same(read_npz(path), want)


class Python2Pickler(pickle._Pickler):
    """Writes what Python 2 wrote: ``str`` (ASCII text and an array's raw data) as byte strings
    (``BINSTRING``), numpy under its numpy 1 name ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if isinstance(obj, str) and not obj.isascii():
            return self.save_str(obj)  # a Python 2 unicode object
        n = len(raw)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + raw if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + raw)  # fmt: skip
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def test_python2_pickle_of_arrays_reads_with_latin1():
    data = {"poses": [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(3.0)],
            "genders": "m", "trans": np.float64(0.5), "ids": np.arange(4)}  # fmt: skip
    buf = io.BytesIO()
    Python2Pickler(buf, protocol=2).dump(data)
    blob = buf.getvalue().replace(b"cnumpy._core.", b"cnumpy.core.")
    assert b"cnumpy.core.multiarray\n_reconstruct" in blob and pickle.BINUNICODE not in blob
    got = safe_pickle_load(io.BytesIO(blob), "seq.pkl", encoding="latin1")
    assert_same(got, data)


def test_python3_protocol_2_pickle_with_bytes_reads_with_latin1():
    data = {b"name": b"S1\xff", "poses": np.arange(4, dtype=np.float32), "empty": b""}
    blob = pickle.dumps(data, protocol=2)
    assert_same(safe_pickle_load(io.BytesIO(blob), "x.pkl", encoding="latin1"), data)


# --- pickles that try to get past the checks ------------------------------------------------

#: A dtype state whose flags deny the object field it declares: numpy, given it, copies raw
#: bytes into the object field, i.e. makes object pointers from the file's bytes.
FORGED_STRUCT = (3, "|", None, ("a", "b"), {"a": (np.dtype("O"), 0), "b": (np.dtype("i8"), 8)},
                 16, 1, 0)  # fmt: skip
FORGED_OBJECT = (3, "|", None, None, None, -1, -1, 0)


class ForgedDtype:
    def __init__(self, base, state):
        self.base, self.state = base, state

    def __reduce__(self):
        return (np.dtype, (self.base, False, True), self.state)


class ForgedArray:
    def __init__(self, rebuild, args, dtype, raw):
        self.rebuild, self.args, self.dtype, self.raw = rebuild, args, dtype, raw

    def __reduce__(self):
        return (self.rebuild, self.args, (1, (1,), self.dtype, False, self.raw))


class ForgedScalar:
    def __reduce__(self):
        return (np.float64(0).__reduce__()[0], (ForgedDtype("V16", FORGED_STRUCT), b"A" * 16))


def forged_payloads():
    reconstruct, args = np.zeros(1).__reduce__()[:2]
    frombuffer = np.zeros(2).__reduce_ex__(5)[0]
    return {
        "structured": ForgedArray(reconstruct, args, ForgedDtype("V16", FORGED_STRUCT), b"A" * 16),
        "object": ForgedArray(reconstruct, args, ForgedDtype("O", FORGED_OBJECT), b"A" * 8),
        "frombuffer": ForgedArray(frombuffer, (bytearray(16), np.dtype("V16"), (1,), "C"),
                                  ForgedDtype("V16", FORGED_STRUCT), b"A" * 16),
        "scalar": ForgedScalar(),
    }  # fmt: skip


def test_plain_pickle_builds_an_object_array_from_raw_bytes():
    """The danger the checks below close (the array is not read: that would crash)."""
    forged = pickle.loads(pickle.dumps(forged_payloads()["object"]))
    assert forged.dtype.kind == "O" and not forged.dtype.hasobject


@pytest.mark.parametrize("name", ["structured", "object", "frombuffer", "scalar"])
def test_a_forged_dtype_never_makes_object_pointers(name):
    blob = pickle.dumps({"x": forged_payloads()[name]}, protocol=5)
    with pytest.raises((DataError, pickle.UnpicklingError)) as e:
        safe_pickle_load(io.BytesIO(blob), "forged.pkl")
    assert len(str(e.value).splitlines()) == 1


def test_a_refused_name_with_a_newline_is_one_line():
    blob = (b"\x80\x04" + pickle.SHORT_BINUNICODE + b"\x04os\nx" + pickle.SHORT_BINUNICODE
            + b"\x06system" + pickle.STACK_GLOBAL + pickle.STOP)  # fmt: skip
    with pytest.raises(DataError, match=r"^evil\.pkl: refused to unpickle 'os\\nx\.system'") as e:
        safe_pickle_load(io.BytesIO(blob), "evil.pkl")
    assert "\n" not in str(e.value)


def test_safe_npz_lists_members_like_np_load(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros(2), y={"k": 1})
    with SafeNpz(tmp_path / "a.npz") as npz, np.load(tmp_path / "a.npz") as plain:
        assert npz.files == plain.files and "y" in npz and "z" not in npz
        assert npz["y"].item() == {"k": 1}
        with pytest.raises(KeyError):
            npz["z"]


# --- the real data --------------------------------------------------------------------------


def real_files(h36m_root: Path | None) -> list[Path]:
    humaneva = REPO.parent / "shared" / "data" / "humaneva" / "humaneva_train_16j.npz"
    files = [h36m_root / "data_3d_h36m.npz", h36m_root / "data_2d_h36m_sh_pt_mpii.npz"]
    return [p for p in files + [humaneva] if p.is_file()]


def test_real_files_read_as_plain_np_load_reads_them(h36m):
    files = real_files(h36m)
    assert files
    for path in files:
        with np.load(path, allow_pickle=True) as trusted:  # the shared files are trusted
            want = {k: trusted[k] for k in trusted.files}
        assert_same(read_npz(path), want)
