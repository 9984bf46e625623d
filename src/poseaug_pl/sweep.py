"""Hydra multirun support: the optimisation objective and the end-of-sweep summary.

`SweepSummary` is registered as a Hydra callback in ``conf/hydra/default.yaml``: when a multirun
ends it reads every job's overrides and ``metrics.json``, prints a table and writes
``<sweep dir>/sweep_summary.csv``. `objective` turns a run's metrics into the single number an
Optuna sweep minimises (``optimized_metric`` in the config).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from poseaug_pl.evaluation.report import format_table
from poseaug_pl.utils import atomic_output

log = logging.getLogger(__name__)

#: Test sets of the training domain; every other set counts as cross-dataset.
IN_DOMAIN = ("h36m", "synthetic")


def objective(metrics: dict, name: str) -> float:
    """The number ``name`` picks from a run's metrics (``{set: {metric: value}}``).

    ``cross_mpjpe`` / ``cross_pa_mpjpe``: the mean over every cross-dataset test set (all but
    ``h36m`` and ``synthetic``); ``<set>/<metric>``, e.g. ``h36m/mpjpe``: one value. NaN when
    the run produced no such metric (a failed or untested run).
    """
    if name.startswith("cross_"):
        metric = name.removeprefix("cross_")
        values = [m[metric] for s, m in metrics.items() if s not in IN_DOMAIN and metric in m]
        return sum(values) / len(values) if values else math.nan
    test_set, _, metric = name.partition("/")
    if not metric:
        raise ValueError(f"optimized_metric must be cross_<metric> or <set>/<metric>, got {name!r}")
    return float(metrics.get(test_set, {}).get(metric, math.nan))


def job_rows(sweep_dir: str | Path, metric_names=("mpjpe", "pa_mpjpe")) -> list[dict]:
    """One row per job folder of a sweep: job, overrides, ``<set>/<metric>`` and ``cross_mpjpe``.

    ``overrides`` lists what differs between the jobs (all of a lone job's overrides).
    """
    files = sorted(Path(sweep_dir).glob("**/.hydra/overrides.yaml"))
    job_overrides = [OmegaConf.to_container(OmegaConf.load(f)) for f in files]
    common = set.intersection(*map(set, job_overrides)) if len(files) > 1 else set()
    rows = []
    for overrides_file, overrides in zip(files, job_overrides):
        job_dir = overrides_file.parent.parent
        swept = " ".join(o for o in overrides if o not in common)
        row = {"job": str(job_dir.relative_to(sweep_dir)), "overrides": swept}
        metrics_file = job_dir / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            for s, m in metrics.items():
                row.update({f"{s}/{k}": round(m[k], 2) for k in metric_names if k in m})
            row["cross_mpjpe"] = round(objective(metrics, "cross_mpjpe"), 2)
        else:
            row["status"] = "no metrics.json"
        rows.append(row)
    rows.sort(key=lambda r: [int(p) if p.isdigit() else p for p in Path(r["job"]).parts])
    return rows


def write_summary(sweep_dir: str | Path) -> Path | None:
    """Write ``sweep_summary.csv`` for the jobs under ``sweep_dir``; print the table."""
    rows = job_rows(sweep_dir)
    if not rows:
        return None
    path = Path(sweep_dir) / "sweep_summary.csv"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_output(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nsweep summary ({len(rows)} jobs, MPJPE in mm):\n{format_table(rows)}\n-> {path}")
    return path


class SweepSummary(Callback):
    """Hydra callback: `write_summary` of the sweep folder when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        """Summarise ``hydra.sweep.dir``."""
        try:
            write_summary(config.hydra.sweep.dir)
        except Exception as e:  # a summary must never turn a finished sweep into a failure
            log.warning("sweep summary failed: %s", e)  # (WriteFailed too: the jobs' files stay)
