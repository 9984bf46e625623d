"""Small shared helpers: the config folder, plain-text tables and atomic output files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: The repository's Hydra config tree (``conf/``).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def format_table(rows: list[dict]) -> str:
    """Render dict rows as an aligned plain-text table (columns from the union of keys)."""
    if not rows:
        return "(empty)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, width))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, width)) for row in cells]
    return "\n".join([line, "  ".join("-" * w for w in width), *body])


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    A failure inside the block leaves neither ``path`` (if it did not exist) nor the temporary
    file behind, so a command that fails writes no partial output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # suffix kept for writers
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file, so readers never see half of it."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)
