"""Small shared helpers: the config folder and plain-text tables."""

from __future__ import annotations

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
