"""MATLAB v5 ``.mat`` files (MuPoTS-3D's ``annot.mat``) read as plain arrays, within a budget.

`scipy.io.loadmat` allocates what a file declares: a struct array's dimensions, a compressed
variable's inflated size. `read_mat5` first walks the file's elements itself, so that a small file
cannot make it allocate much more than it holds:

* the file is read into memory once (at most ``max_bytes``);
* compressed variables are inflated here, at most ``max_inflated`` bytes in all;
* every matrix must be numeric, logical, char, cell or struct (no objects, function handles,
  sparse or opaque classes), at most `MAX_DEPTH` deep, and hold at least a tag's 8 bytes per
  struct field or cell it declares, or a byte per number;

then scipy reads the checked, uncompressed bytes from memory. Nothing in the file names code to
run: v5 files hold data only, and the classes that could stand for more are refused above.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from poseaug_pl.data.poseset import DataError

#: Largest file read, and largest total inflated size of its compressed variables (bytes).
MAX_FILE_BYTES = 256 * 2**20
MAX_INFLATED_BYTES = 1024 * 2**20
#: Deepest nesting of structs and cells accepted.
MAX_DEPTH = 8

_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
#: mxClass ids: cell, struct, char, then the numeric classes (double .. uint64).
_CELL, _STRUCT, _CHAR = 1, 2, 4
_NUMERIC = set(range(6, 16))


class _Bad(Exception):
    """What is wrong with the file, for `read_mat5`'s one-line error."""


def _tag(buf: bytes, pos: int, end: int, order: str) -> tuple[int, int, int, int]:
    """``(type, nbytes, data_start, next_element)`` of the element at ``pos`` (small elements:
    four bytes of data packed into the tag)."""
    if pos + 8 > end:
        raise _Bad("truncated element")
    first, second = struct.unpack_from(order + "II", buf, pos)
    if first >> 16:  # small data element: nbytes in the upper half, data in the second word
        return first & 0xFFFF, first >> 16, pos + 4, pos + 8
    data_end = pos + 8 + second
    if data_end > end:
        raise _Bad("an element runs past the end of its container")
    return first, second, pos + 8, pos + 8 + math.ceil(second / 8) * 8


def _check_matrix(buf: bytes, start: int, end: int, order: str, depth: int) -> None:
    """Check the body ``buf[start:end]`` of one miMATRIX element (see the module docstring)."""
    if depth > MAX_DEPTH:
        raise _Bad(f"structs or cells nested deeper than {MAX_DEPTH}")
    if start == end:  # an empty matrix ([] in a cell or struct field)
        return
    typ, n, data, pos = _tag(buf, start, end, order)
    if typ != _MI_UINT32 or n != 8:
        raise _Bad("a matrix without array flags")
    cls = struct.unpack_from(order + "I", buf, data)[0] & 0xFF
    typ, n, data, pos = _tag(buf, pos, end, order)
    if typ != _MI_INT32 or n % 4 or n < 8:
        raise _Bad("a matrix without dimensions")
    dims = struct.unpack_from(order + f"{n // 4}i", buf, data)
    if min(dims) < 0:
        raise _Bad("negative dimensions")
    count = math.prod(dims)
    _, _, _, pos = _tag(buf, pos, end, order)  # the array name
    if cls in _NUMERIC or cls == _CHAR:
        if count > end - pos:  # at least a byte per number
            raise _Bad(f"a {dims} array in {end - start} bytes")
        return
    if cls == _CELL:
        children = count
    elif cls == _STRUCT:
        typ, n, data, pos = _tag(buf, pos, end, order)  # field name length
        width = struct.unpack_from(order + "i", buf, data)[0]
        typ, n, data, pos = _tag(buf, pos, end, order)  # field names
        if width <= 0 or n % width:
            raise _Bad("a struct with malformed field names")
        children = count * (n // width)
    else:
        raise _Bad(f"a matrix of MATLAB class {cls} (only numbers, text, cells and structs)")
    if children * 8 > end - pos:  # every child has at least its 8-byte tag
        raise _Bad(f"a {dims} struct or cell in {end - start} bytes")
    for _ in range(children):
        typ, n, data, pos = _tag(buf, pos, end, order)
        if typ != _MI_MATRIX:
            raise _Bad("a struct field or cell that is not a matrix")
        _check_matrix(buf, data, data + n, order, depth + 1)


def _uncompressed(raw: bytes, max_inflated: int) -> bytes:
    """The file's bytes with every compressed variable inflated (within ``max_inflated``) and
    every matrix checked."""
    if len(raw) < 128:
        raise _Bad("shorter than a MATLAB file header")
    endian = raw[126:128]
    order = "<" if endian == b"IM" else ">"
    if endian not in (b"IM", b"MI") or struct.unpack_from(order + "H", raw, 124)[0] != 0x0100:
        if raw.startswith(b"\x89HDF") or raw[512:516] == b"\x89HDF" or raw[:10] == b"MATLAB 7.3":
            raise _Bad("a MATLAB v7.3 (HDF5) file, not v5: re-save it with save(..., '-v7')")
        raise _Bad("not a MATLAB v5 .mat file (no v5 header)")
    out, pos, inflated = [raw[:128]], 128, 0
    while pos < len(raw):
        typ, n, data, nxt = _tag(raw, pos, len(raw), order)
        if typ == _MI_COMPRESSED:
            z = zlib.decompressobj()
            try:
                body = z.decompress(raw[data:data + n], max_inflated - inflated + 1)
            except zlib.error as e:
                raise _Bad(f"a damaged compressed variable ({e})") from None
            inflated += len(body)
            if inflated > max_inflated:
                raise _Bad(f"its variables inflate to more than {max_inflated >> 20} MiB")
            nxt = data + n  # (compressed elements are not padded)
        else:
            body = raw[pos:nxt]
        typ, n, data, end = _tag(body, 0, len(body), order)
        if typ != _MI_MATRIX:
            raise _Bad(f"a top-level element of type {typ} (only matrices)")
        _check_matrix(body, data, data + n, order, 0)
        out.append(body[:data + n] + b"\0" * (-(data + n) % 8))
        pos = nxt
    return b"".join(out)


def read_mat5(path: str | Path, max_bytes: int = MAX_FILE_BYTES,
              max_inflated: int = MAX_INFLATED_BYTES) -> dict[str, np.ndarray]:  # fmt: skip
    """The variables of a MATLAB v5 (or v6/v7) file as numpy arrays (structs as record arrays,
    cells as object arrays of arrays), read within the budgets above.

    Raises:
        DataError: a missing, oversized, damaged or non-v5 file, or one holding other classes
            than numbers, text, cells and structs; one line naming the file.
    """
    from scipy.io import loadmat  # (the datasets extra)

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size > max_bytes:
        raise DataError(f"{path}: {path.stat().st_size >> 20} MiB, more than a MATLAB annotation "
                        f"file holds ({max_bytes >> 20} MiB)")  # fmt: skip
    try:
        clean = _uncompressed(path.read_bytes(), max_inflated)
        with np.errstate(all="ignore"):
            data = loadmat(io.BytesIO(clean), struct_as_record=True, squeeze_me=False)
    except _Bad as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # scipy's own errors on malformed bytes, of many kinds
        raise DataError(f"{path}: not a readable MATLAB v5 file ({type(e).__name__}: "
                        f"{str(e)[:200]})") from None  # fmt: skip
    return {k: v for k, v in data.items() if not k.startswith("__")}
