"""Small shared helpers: the config folder and atomic output files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: The repository's Hydra config tree (``conf/``).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def os_error_behind(exc: BaseException) -> OSError | None:
    """The `OSError` behind ``exc``: itself, or one in its cause/context chain (``torch.save``
    to a file object reports a full disk as a ``RuntimeError`` raised while handling it)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def write_failed(path: str | Path, error: BaseException, existed: bool | None = None):
    """The `config.WriteFailed` for ``path`` (one line: the file, the reason, what is left)."""
    from poseaug_pl.training.config import (
        WriteFailed,  # (lazy: keeps this module free of the package's imports)
    )

    os_error = os_error_behind(error) or error
    reason = getattr(os_error, "strerror", None) or str(os_error) or type(os_error).__name__
    left = {None: "", True: "; the previous file is unchanged", False: "; nothing was written"}
    return WriteFailed(f"cannot write {path}: {reason}{left[existed]}")


def _is_write_failed(error: BaseException) -> bool:
    from poseaug_pl.training.config import WriteFailed

    return isinstance(error, WriteFailed)


def fsync_path(path: str | Path, directory: bool = False) -> None:
    """Flush ``path`` (a file, or with ``directory`` a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary file is created first (in ``path``'s own folder, so the final rename stays on
    one filesystem), the block writes it, then it is flushed to the disk (fsync) and renamed over
    ``path`` (``os.replace``), and the folder is synced. A reader, a crash or a full disk never
    leaves a half-written ``path``: a failure inside the block, or while syncing or renaming,
    leaves the previous ``path`` (or none) as it was and removes the temporary file.

    Raises:
        config.WriteFailed: an `OSError` (disk full, read-only folder, no permission) while
            creating, writing, syncing or renaming the file; other exceptions pass unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # suffix kept for writers
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.open("wb").close()  # a read-only or missing folder fails here, before any work
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and not _is_write_failed(e) and os_error_behind(e) is not None:
            raise write_failed(path, e, existed) from e
        raise
    with contextlib.suppress(OSError):  # the rename itself is durable once the folder is synced
        fsync_path(path.parent, directory=True)


def check_writable(path: str | Path) -> None:
    """Make sure ``path`` can be created: a file is created and removed in the nearest folder of
    it that exists (nothing is left behind, no folder is made).

    Raises:
        config.WriteFailed: that folder is read-only, not writable or full.
    """
    folder = Path(path).expanduser().absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    probe_folder(folder, path)


def probe_folder(folder: str | Path, named: str | Path) -> None:
    """Create and remove a file in ``folder``; failing, `config.WriteFailed` names ``named``."""
    probe = Path(folder) / f".write_test.{os.getpid()}"
    try:
        probe.open("wb").close()
    except OSError as e:
        raise write_failed(named, e) from e
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file, so readers never see half of it
    (`atomic_output`; a failed write raises `config.WriteFailed`)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)
