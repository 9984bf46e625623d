"""Print a table of several runs' metrics.json (one row per run and test set).

python scripts/compare_runs.py RUN_DIR [RUN_DIR ...]
"""

import json
import sys
from pathlib import Path

from poseaug_pl.utils import format_table


def rows(run_dirs):
    """One dict per (run, test set) with the main metrics."""
    out = []
    for d in map(Path, run_dirs):
        metrics = json.loads((d / "metrics.json").read_text())
        for name, m in metrics.items():
            out.append({"run": d.name, "set": name, "MPJPE": f"{m['mpjpe']:.1f}",
                        "PA-MPJPE": f"{m['pa_mpjpe']:.1f}", "PCK": f"{m['pck']:.1f}",
                        "AUC": f"{m['auc']:.1f}", "frames": m["frames"]})  # fmt: skip
    return out


if __name__ == "__main__":
    print(format_table(rows(sys.argv[1:])))
