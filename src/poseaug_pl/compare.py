"""Compare finished runs: their ``metrics.json`` and CSV training logs.

``python -m poseaug_pl.compare RUN_DIR [RUN_DIR ...] [--reference RUN_DIR]`` prints one row per
run and test set and, with a reference run (e.g. the baseline), the change of every run's
MPJPE against it. `notebooks/02_compare_runs.ipynb` uses the same functions for its tables and
plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from poseaug_pl.utils import format_table


def load_metrics(run_dir: str | Path) -> dict:
    """``{test set: {mpjpe, pa_mpjpe, n_mpjpe, pck, auc, frames[, per_joint]}}`` of a run."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.json (did the run finish with test=true?)")
    return json.loads(path.read_text())


def read_log(run_dir: str | Path, key: str) -> list[tuple[int, int, float]]:
    """``(epoch, step, value)`` of every logged ``key`` in ``<run>/csv/metrics.csv`` (or [])."""
    path = Path(run_dir) / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [(int(r["epoch"] or 0), int(r["step"] or 0), float(r[key]))
                for r in csv.DictReader(f) if r.get(key)]  # fmt: skip


def epoch_offset(run_dir: str | Path) -> int:
    """Epochs the run's estimator had trained before it started: those of the checkpoint it
    continued (``model.estimator_ckpt`` in ``config_resolved.yaml``), else 0. Plot a
    continuation's epoch ``e`` at ``epoch_offset + e`` beside its baseline."""
    cfg = Path(run_dir) / "config_resolved.yaml"
    if not cfg.is_file():
        return 0
    from omegaconf import OmegaConf

    ckpt = OmegaConf.select(OmegaConf.load(cfg), "model.estimator_ckpt", default=None)
    if not ckpt or not Path(ckpt).is_file():
        return 0
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1


def metric_rows(runs: dict[str, dict]) -> list[dict]:
    """One row per (run, test set) with the main metrics formatted for `format_table`."""
    return [
        {"run": name, "set": s, "MPJPE": f"{m['mpjpe']:.1f}", "PA-MPJPE": f"{m['pa_mpjpe']:.1f}",
         "PCK": f"{m['pck']:.1f}", "AUC": f"{m['auc']:.1f}", "frames": m["frames"]}
        for name, metrics in runs.items() for s, m in metrics.items()
    ]  # fmt: skip


def summary_rows(runs: dict[str, dict], metric: str = "mpjpe", reference: str | None = None):
    """One row per run, one column per test set (``metric``), like the paper's result tables.

    With ``reference`` (a key of ``runs``), each cell also shows the change against it.
    """
    rows = []
    for name, metrics in runs.items():
        row = {"run": name}
        for s, m in metrics.items():
            cell = f"{m[metric]:.1f}"
            ref = runs.get(reference, {}).get(s) if reference else None
            if ref is not None and name != reference and math.isfinite(ref[metric]):
                delta = m[metric] - ref[metric]
                cell += f" ({delta:+.1f}, {100 * delta / ref[metric]:+.0f}%)"
            row[s] = cell
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the comparison table of the given run folders."""
    ap = argparse.ArgumentParser(prog="python -m poseaug_pl.compare", description=__doc__)
    ap.add_argument("runs", nargs="+", help="run folders (with metrics.json)")
    ap.add_argument("--reference", help="run folder to compare MPJPE against")
    args = ap.parse_args(argv)
    runs = {}
    for r in args.runs:  # an unfinished run is left out of the table, with a warning
        try:
            runs[Path(r).name] = load_metrics(r)
        except FileNotFoundError as e:
            print(f"warning: {e}; left out", file=sys.stderr)
    try:
        ref = load_metrics(args.reference) if args.reference else None
    except FileNotFoundError as e:
        print(f"warning: {e}; no comparison against it", file=sys.stderr)
        ref = None
    if not runs:
        raise SystemExit("error: none of the runs has a metrics.json")
    print(format_table(metric_rows(runs)))
    if ref is not None:
        name = Path(args.reference).name
        print(f"\nMPJPE (mm), change against {name}:")
        print(format_table(summary_rows({name: ref, **runs}, reference=name)))


if __name__ == "__main__":
    main()
