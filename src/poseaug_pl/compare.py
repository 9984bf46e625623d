"""Compare finished runs: their ``metrics.json`` and CSV training logs.

``python -m poseaug_pl.compare RUN_DIR [RUN_DIR ...] [--reference RUN_DIR]`` prints one row per
run and test set and, with a reference run (e.g. the baseline), the change of every run's
MPJPE against it; its tables are `evaluation.report`'s. `notebooks/02_compare_runs.ipynb` uses
the same functions for its tables and plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

from poseaug_pl.evaluation.report import format_table, metric_rows, summary_rows

#: What each test set of a metrics.json must hold, as numbers (the comparison table's columns).
TABLE_METRICS = ("mpjpe", "pa_mpjpe", "pck", "auc", "frames")
#: A run's metrics.json is kilobytes; a larger file is not one.
MAX_METRICS_BYTES = 64 << 20


def load_metrics(run_dir: str | Path) -> dict:
    """``{test set: {mpjpe, pa_mpjpe, n_mpjpe, pck, auc, frames[, per_joint]}}`` of a run."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.json (did the run finish with test=true?)")
    if path.stat().st_size > MAX_METRICS_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size >> 20} MiB, not a run's metrics.json")
    try:
        metrics = json.loads(path.read_text())
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not readable JSON ({type(e).__name__})") from None
    if not isinstance(metrics, dict) or not all(
        isinstance(m, dict) and all(isinstance(m.get(k), (int, float)) and not isinstance(
            m.get(k), bool) for k in TABLE_METRICS) for m in metrics.values()
    ):  # fmt: skip
        raise ValueError(f"{path}: not a run's metrics.json ({{set: {{{', '.join(TABLE_METRICS)}"
                         ", ...}}} with numbers expected)")  # fmt: skip
    return metrics


def read_log(run_dir: str | Path, key: str) -> list[tuple[int, int, float]]:
    """``(epoch, step, value)`` of every logged ``key`` in ``<run>/csv/metrics.csv`` (or [])."""
    path = Path(run_dir) / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [(int(r["epoch"] or 0), int(r["step"] or 0), float(r[key]))
                for r in csv.DictReader(f) if r.get(key)]  # fmt: skip


def epoch_offset(run_dir: str | Path, root: str | Path | None = None) -> int:
    """Epochs the run's estimator had trained before it started: those of the checkpoint it
    continued (``model.estimator_ckpt`` in ``config_resolved.yaml``; a relative path is taken
    from ``root``, the folder the run started in, by default the working directory), else 0.
    Plot a continuation's epoch ``e`` at ``epoch_offset + e`` beside its baseline.

    A run folder may come from anyone: its config is read as data (`runfolder.run_config`: no
    ``${...}`` is resolved), and only a checkpoint inside ``root`` is opened (0 otherwise)."""
    from omegaconf import OmegaConf

    from poseaug_pl.training.runfolder import folder_config

    run = folder_config(run_dir)
    ckpt = OmegaConf.select(run, "model.estimator_ckpt", default=None) if run is not None else None
    if not isinstance(ckpt, str) or not ckpt:
        return 0
    top = Path(root or ".").resolve()
    ckpt = (top / ckpt).resolve()
    if not ckpt.is_relative_to(top) or not ckpt.is_file():
        return 0
    import torch

    epoch = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    return int(epoch) + 1 if isinstance(epoch, int) and 0 <= epoch < 1_000_000 else 0


#: A default run folder's name: Hydra's date and time (conf/hydra/default.yaml).
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(-\d+)?")


def run_label(arg: str) -> tuple[str, Path]:
    """``(label, folder)`` of a command-line run: ``NAME=FOLDER`` names it; else the folder's
    name, or, for a default folder named by its date and time, ``<experiment> seed <k>`` from
    its saved config (read as data)."""
    name, sep, folder = arg.partition("=")
    if sep and name and not Path(arg).exists():
        return name, Path(folder)
    path = Path(arg)
    label = path.name or str(path)
    if TIMESTAMP.fullmatch(label):
        from poseaug_pl.training.runfolder import folder_config

        try:
            run = folder_config(path)
        except ValueError:  # an unreadable config: the folder's name
            run = None
        if run is not None and run.get("experiment_name"):
            label = f"{run.get('experiment_name')} seed {run.get('seed', '?')}"
    return label, path


def main(argv: list[str] | None = None) -> None:
    """Print the comparison table of the given run folders."""
    ap = argparse.ArgumentParser(prog="python -m poseaug_pl.compare", description=__doc__)
    ap.add_argument("runs", nargs="+", help="run folders (with metrics.json), each as FOLDER or "
                    "NAME=FOLDER (the row's label; default: the folder's name, or experiment and "
                    "seed for a folder named by its date)")  # fmt: skip
    ap.add_argument("--reference", help="run folder (or NAME=FOLDER) to compare MPJPE against")
    args = ap.parse_args(argv)
    runs = {}
    for r in args.runs:  # an unfinished run is left out of the table, with a warning
        label, folder = run_label(r)
        while label in runs:  # two runs of one label: tell them apart
            label = f"{label} ({folder.name})" if folder.name not in label else label + "'"
        try:
            runs[label] = load_metrics(folder)
        except (FileNotFoundError, ValueError) as e:
            print(f"warning: {e}; left out", file=sys.stderr)
    ref, name = None, None
    if args.reference:
        name, folder = run_label(args.reference)
        try:
            ref = load_metrics(folder)
        except (FileNotFoundError, ValueError) as e:
            print(f"warning: {e}; no comparison against it", file=sys.stderr)
    if not runs:
        raise SystemExit("error: none of the runs has a metrics.json")
    print(format_table(metric_rows(runs)))
    if ref is not None:
        print(f"\nMPJPE (mm), change against {name}:")
        print(format_table(summary_rows({name: ref, **runs}, reference=name)))


if __name__ == "__main__":
    main()
