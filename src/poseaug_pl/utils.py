"""Small shared helpers: the config folder and atomic output files."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
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


#: A temporary file of `atomic_output` or `probe_folder`: ``.<name>.<pid>.<random>.tmp[suffix]``.
TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(\.[A-Za-z0-9]+)?")


def _temporary(folder: Path, name: str, suffix: str = "") -> Path:
    """Create a new, empty temporary file in ``folder`` and return its path: the name holds the
    process id and a random part (unpredictable), and the file is created exclusively without
    following a link (`tempfile.mkstemp`: ``O_CREAT | O_EXCL | O_NOFOLLOW``)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=f".tmp{suffix}")
    os.close(fd)
    return Path(tmp)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files (`TEMPORARY`) in ``folder`` (not below it) that a process
    which no longer runs left behind (killed during a write); returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for path in entries:
        m = TEMPORARY.fullmatch(path.name)
        if not m or path.is_dir() or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (ours or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


@contextlib.contextmanager
def atomic_output(path: str | Path, keep_suffix: bool = False):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary file is created first (in ``path``'s own folder, so the final rename stays on
    one filesystem; a new, unpredictable name, created exclusively: `_temporary`), the block
    writes it, then it is flushed to the disk (fsync) and renamed over ``path``
    (``os.replace``, which replaces a link at ``path`` instead of writing through it), and the
    folder is synced. A reader, a crash or a full disk never leaves a half-written ``path``: a
    failure inside the block, or while syncing or renaming, leaves the previous ``path`` (or
    none) as it was and removes the temporary file (a process killed meanwhile leaves it for
    `remove_stale_temporaries`).

    Args:
        keep_suffix: end the temporary name with ``path``'s suffix (for writers that choose the
            format by it); otherwise it ends in ``.tmp``, so that no ``*.ckpt`` glob counts it.

    Raises:
        config.WriteFailed: an `OSError` (disk full, read-only folder, no permission) while
            creating, writing, syncing or renaming the file; other exceptions pass unchanged.
    """
    path = Path(path)
    existed = path.exists()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a read-only or missing folder fails here, before any work
        tmp = _temporary(path.parent, path.stem, path.suffix if keep_suffix else "")
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
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
    probe = None
    try:
        probe = _temporary(Path(folder), "write_test")
    except OSError as e:
        raise write_failed(named, e) from e
    finally:
        if probe is not None:
            with contextlib.suppress(OSError):
                probe.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file, so readers never see half of it
    (`atomic_output`; a failed write raises `config.WriteFailed`)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)
