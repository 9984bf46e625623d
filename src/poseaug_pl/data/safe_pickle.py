"""Reading pickled data from files others made, without running their code.

NumPy's pickle-allowing load and the standard library's unpickler call whatever a file names:
a crafted ``.npz`` runs arbitrary code while it loads. Here object arrays (VideoPose3D's
``positions_3d`` / ``positions_2d`` / ``metadata`` dicts) and whole pickle files are unpickled
by `RestrictedUnpickler`, which resolves only the globals numpy arrays, dtypes and scalars need
(`ADMITTED`); dicts, lists, tuples, sets, strings, bytes, numbers, ``None`` and booleans need
none. Any other global is refused with a one-line `DataError` naming the file and the global.

The admitted numpy callables are wrapped, not handed out as they are: a pickle also sets a
dtype's state (its flags), and a dtype whose flags deny that it holds objects makes numpy build an
object array from raw bytes, i.e. from forged pointers. Every dtype that reaches an array or a
scalar is therefore rebuilt from its type string (structured dtypes are refused), arrays are
unpickled as a private subclass whose ``__setstate__`` does that, and the result is handed back
as plain ``np.ndarray`` objects.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from poseaug_pl.data.poseset import DataError

_CHUNK = 1 << 20


class _Refused(Exception):
    """Something in a pickle this module will not build (turned into `DataError` with a path)."""


def _one_line(text: str) -> str:
    """``text`` with control and non-ASCII characters escaped (names from a file may hold any)."""
    return ascii(str(text))[1:-1]


def _canonical_dtype(dtype) -> np.dtype:
    """A fresh numpy-built dtype equal to the (possibly pickle-built) ``dtype``.

    Raises:
        _Refused: a structured or subarray dtype (never needed by the data read here).
    """
    if not isinstance(dtype, np.dtype):
        dtype = np.dtype(dtype)  # e.g. the b"b" that ndarray pickles pass to _reconstruct
    if dtype.fields is not None or dtype.subdtype is not None:
        raise _Refused("a structured dtype")
    return np.dtype(dtype.str)


class _PickledArray(np.ndarray):
    """What pickled ``numpy.ndarray`` objects are built as until `_plain` views them as
    ``np.ndarray``: its ``__setstate__`` swaps the pickled dtype for `_canonical_dtype`'s."""

    def __new__(cls, *args, **kwargs):  # only `_reconstruct` (below) makes these
        raise TypeError("ndarray cannot be called from a data file")

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) in (4, 5):
            i = len(state) - 3  # (version,) shape, dtype, is_fortran, rawdata
            state = (*state[:i], _canonical_dtype(state[i]), *state[i + 1 :])
        np.ndarray.__setstate__(self, state)


class _Frozen:
    """An admitted callable: a pickle may call it but can neither set its attributes nor state."""

    __slots__ = ("_fn", "_name")

    def __init__(self, fn, name: str):
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_name", name)

    def __call__(self, *args):
        return self._fn(*args)

    def __setattr__(self, key, value):
        raise AttributeError(f"{self._name} is read-only")

    def __setstate__(self, state):
        raise AttributeError(f"{self._name} is read-only")

    def __repr__(self) -> str:
        return f"<admitted {self._name}>"


class _NdarrayToken(_Frozen):
    """``numpy.ndarray`` as a pickle sees it: an argument for `_reconstruct`, nothing else."""

    def __call__(self, *args):
        raise TypeError("ndarray cannot be called from a data file")


def _make_dtype(obj, align=False, copy=False, *rest):
    # Always a copy: numpy's own pickles ask for one, and the state a pickle sets next must
    # never reach numpy's shared built-in dtypes.
    return np.dtype(obj, bool(align), True, *rest)


def _reconstruct(cls, shape, dtype):
    if not isinstance(cls, _NdarrayToken):
        raise _Refused("_reconstruct of something other than numpy.ndarray")
    return np.ndarray.__new__(_PickledArray, shape, _canonical_dtype(dtype))


def _scalar(dtype, *obj):
    return _NUMPY_SCALAR(_canonical_dtype(dtype), *obj)


def _frombuffer(buf, dtype, shape, order):
    # np.frombuffer refuses object dtypes: raw bytes never become object pointers. The result is
    # a `_PickledArray` too, so that a state the pickle sets on it next is checked as well.
    arr = np.frombuffer(buf, dtype=_canonical_dtype(dtype)).reshape(shape, order=order)
    return arr.view(_PickledArray)


def _latin1_bytes(text, encoding):
    # Python 3 writes bytes under pickle protocols 0-2 as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused("_codecs.encode other than of a str to latin1")
    return text.encode("latin1")


def _empty_bytes(*args):
    # ... and empty bytes as bytes()
    if args:
        raise _Refused("bytes() with arguments")
    return b""


try:  # numpy >= 1.26 (numpy.core is numpy 2's deprecated alias of numpy._core)
    from numpy._core.multiarray import scalar as _NUMPY_SCALAR
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core.multiarray import scalar as _NUMPY_SCALAR

_NDARRAY = _NdarrayToken(None, "numpy.ndarray")
_DTYPE = _Frozen(_make_dtype, "numpy.dtype")
_RECONSTRUCT = _Frozen(_reconstruct, "numpy multiarray._reconstruct")
_SCALAR = _Frozen(_scalar, "numpy multiarray.scalar")
_FROMBUFFER = _Frozen(_frombuffer, "numpy numeric._frombuffer")
_ENCODE = _Frozen(_latin1_bytes, "_codecs.encode")
_BYTES = _Frozen(_empty_bytes, "bytes")

#: The globals a data pickle may name, and the checked stand-in each resolves to:
#:
#: * ``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.multiarray._reconstruct`` (pickle
#:   protocols 0-4) and ``numpy.core.numeric._frombuffer`` (protocol 5): arrays;
#:   ``numpy.core.multiarray.scalar``: numpy scalars (``np.float64(1.5)``, ``np.int64(3)``).
#:   numpy 2 writes ``numpy._core`` where numpy 1 (and Python 2) wrote ``numpy.core``.
#: * ``_codecs.encode`` (of a str, to latin1 only) and ``bytes`` (empty only): how Python 3
#:   writes bytes, an array's raw data among them, under protocols 0-2.
#:
#: Nothing else: dicts, lists, tuples, strings, bytes, numbers, ``None`` and booleans are pickle
#: opcodes, not globals (sets too from protocol 4; ``collections.OrderedDict``, ``set`` below
#: protocol 4, ``complex`` and every class or function are refused).
ADMITTED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _SCALAR for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _FROMBUFFER for core in ("core", "_core")},
    ("_codecs", "encode"): _ENCODE,
    **{(module, "bytes"): _BYTES for module in ("builtins", "__builtin__")},
}


class RestrictedUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves only the globals in `ADMITTED`.

    Args:
        file: a binary file object positioned at the pickle.
        path: the file named in error messages.
        member: the archive member being read, if any (named in error messages too).
        encoding, errors: as for `pickle.Unpickler`; ``encoding="latin1"`` reads Python 2
            pickles of numpy arrays.
    """

    def __init__(self, file: BinaryIO, path, *, member: str | None = None,
                 encoding: str = "ASCII", errors: str = "strict"):  # fmt: skip
        super().__init__(file, encoding=encoding, errors=errors)
        self.path = path
        self.where = f" in '{_one_line(member)}'" if member else ""

    def find_class(self, module: str, name: str):
        try:
            return ADMITTED[(module, name)]
        except (KeyError, TypeError):
            raise DataError(
                f"{self.path}: refused to unpickle '{_one_line(module)}.{_one_line(name)}'"
                f"{self.where}: "
                "a data file may pickle only numpy arrays, dicts, lists, strings and numbers "
                "(loading it could run code)"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not supported")


def _plain(obj, seen: dict[int, tuple[Any, Any]]):
    """``obj`` with every `_PickledArray` inside it (dicts, lists, tuples, object arrays) viewed
    as ``np.ndarray`` and every dtype rebuilt; dicts and lists change in place. ``seen`` maps
    ``id(original)`` to ``(original, result)`` (the original kept alive so its id stays its)."""
    key = id(obj)
    if key in seen:
        return seen[key][1]
    if isinstance(obj, np.ndarray):
        out = obj.view(np.ndarray) if isinstance(obj, _PickledArray) else obj
        seen[key] = (obj, out)
        if out.dtype.hasobject:
            items = list(out.flat)
            new = [_plain(v, seen) for v in items]
            if any(a is not b for a, b in zip(items, new)):
                flat = np.empty(len(new), dtype=object)
                for i, v in enumerate(new):
                    flat[i] = v
                out[...] = flat.reshape(out.shape)
        return out
    if isinstance(obj, dict):
        seen[key] = (obj, obj)
        items = [(_plain(k, seen), _plain(v, seen)) for k, v in obj.items()]
        if any(a is not b for (a, _), b in zip(items, obj)):
            obj.clear()  # a key changed (a tuple or dtype key): rebuild in order
        obj.update(items)
        return obj
    if isinstance(obj, list):
        seen[key] = (obj, obj)
        obj[:] = [_plain(v, seen) for v in obj]
        return obj
    if isinstance(obj, tuple):
        out = tuple(_plain(v, seen) for v in obj)
        seen[key] = (obj, out)
        return out
    if isinstance(obj, (set, frozenset)):
        out = type(obj)(_plain(v, seen) for v in obj)
        seen[key] = (obj, out)
        return out
    if isinstance(obj, np.dtype):
        return _canonical_dtype(obj)
    return obj


def _load(file: BinaryIO, path, encoding: str = "ASCII", member: str | None = None) -> Any:
    """Unpickle ``file`` with `RestrictedUnpickler` and return plain numpy/Python objects.

    Raises:
        DataError: a refused global or dtype, in one line naming ``path``.
        pickle.UnpicklingError: any other damage (truncated, bad opcodes, wrong arguments).
        OSError: the file could not be read.
    """
    unpickler = RestrictedUnpickler(file, path, member=member, encoding=encoding)
    try:
        return _plain(unpickler.load(), {})
    except (DataError, OSError, pickle.UnpicklingError):
        raise
    except _Refused as e:
        raise DataError(
            f"{path}: refused to unpickle {e}{unpickler.where} (only plain numpy dtypes are read)"
        ) from None
    except Exception as e:  # EOFError, TypeError, ValueError, RecursionError, ... of damage
        raise pickle.UnpicklingError(f"{type(e).__name__}: {e}") from None


def safe_pickle_load(file: BinaryIO, path: str | Path, encoding: str = "ASCII") -> Any:
    """Unpickle a whole file (``encoding`` as the standard unpickler takes it) without running
    code: only `ADMITTED` globals resolve.

    Args:
        file: a binary file object positioned at the pickle.
        path: the file, for error messages.
        encoding: how Python 2 ``str`` objects are decoded; ``"latin1"`` for Python 2 pickles
            holding numpy arrays (e.g. 3DPW's sequence files).

    Returns:
        The unpickled dicts, lists, tuples, strings, numbers and plain ``np.ndarray`` objects.

    Raises:
        DataError: the pickle names a global outside `ADMITTED` (or a structured dtype).
        pickle.UnpicklingError: a damaged pickle.
    """
    return _load(file, path, encoding)


#: An ``.npz`` member may inflate to this many bytes whatever its compressed size ...
MAX_MEMBER_BYTES = 256 << 20
#: ... and beyond that to this many times its compressed size (numbers compress about 1-3x) ...
MAX_INFLATION = 20
#: ... and never beyond this.
MAX_ARCHIVE_BYTES = 8 << 30


class SafeNpz:
    """An ``.npz`` archive read like ``np.load(path)``, without running code.

    Plain members are read with ``allow_pickle=False``; object members (pickled arrays) by
    `RestrictedUnpickler`. Use it as a context manager, like ``np.load``'s ``NpzFile``.

    Attributes:
        path: the archive.
        files: member names without ``.npy``.

    Raises (on opening):
        zipfile.BadZipFile, OSError: not a zip archive, or unreadable.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.zip = zipfile.ZipFile(self.path)
        self._members = {n.removesuffix(".npy"): n for n in self.zip.namelist()}
        self.files = list(self._members)

    def __enter__(self) -> SafeNpz:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.zip.close()

    def __contains__(self, key: str) -> bool:
        return key in self._members

    def __getitem__(self, key: str) -> np.ndarray:
        """Member ``key`` as an array (an object member: a 0-d or larger object array).

        Raises:
            KeyError: no such member.
            DataError: an object member names a global outside `ADMITTED`.
            ValueError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError: a damaged member.
        """
        if key not in self._members:
            raise KeyError(f"{key} is not a file in the archive")
        name = self._members[key]
        info = self.zip.getinfo(name)
        budget = max(MAX_MEMBER_BYTES, MAX_INFLATION * info.compress_size)
        if info.file_size > min(budget, MAX_ARCHIVE_BYTES):
            raise DataError(f"{self.path}: '{key}' inflates to {info.file_size / 2**20:.0f} MiB "
                            f"from {info.compress_size / 2**20:.1f} MiB, more than such a file "
                            "holds: refused")  # fmt: skip
        with self.zip.open(name) as f:
            version = npy_format.read_magic(f)
            read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                           else npy_format.read_array_header_2_0)  # fmt: skip
            shape, _, dtype = read_header(f)
            declared = float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if not dtype.hasobject and declared > info.file_size:
                raise DataError(f"{self.path}: '{key}' declares {shape} {dtype} "
                                f"({declared / 2**20:.0f} MiB) in a {info.file_size} byte member: "
                                "refused")  # fmt: skip
            if dtype.hasobject:
                arr = _load(f, self.path, member=key)
                if not isinstance(arr, np.ndarray):
                    raise pickle.UnpicklingError(f"'{key}' pickles a {type(arr).__name__}")
                while f.read(_CHUNK):  # to the end, so that zipfile checks the CRC
                    pass
                return arr
        with self.zip.open(name) as f:
            arr = npy_format.read_array(f, allow_pickle=False)
            while f.read(_CHUNK):
                pass
            return arr


def read_npz(path: str | Path, keys=None) -> dict[str, np.ndarray]:
    """Every member (or those in ``keys`` that exist) of an ``.npz`` archive, read with `SafeNpz`.

    Raises:
        as `SafeNpz`.
    """
    with SafeNpz(path) as npz:
        return {k: npz[k] for k in npz.files if keys is None or k in keys}
