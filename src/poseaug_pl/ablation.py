"""Seed summary of the CPU ablation (``scripts/h36m_cpu_ablation.sh``).

``python -m poseaug_pl.ablation OUT`` reads ``OUT/seed<k>/<run>/metrics.json`` for the runs
`RUNS`, writes ``OUT/summary.json`` shaped ``{run: {set: {mpjpe, pa_mpjpe, pck, auc}}}`` (means
over the seeds; mm and %) and ``OUT/summary_std.json`` (the same shape, standard deviations over
the seeds, 0 for a single seed), and prints MPJPE per run and set as ``mean +- std`` with the
ratio to the control.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from poseaug_pl.evaluation.report import ablation_rows, format_table
from poseaug_pl.training.config import WriteFailed
from poseaug_pl.utils import write_text_atomic

#: Runs of the ablation, in table order.
RUNS = ("baseline", "control", "variant_a", "poseaug")
#: Metrics kept in the summary; and those kept where a set's benchmark reports them (MuPoTS-3D's
#: official 3DPCK and AUC, `evaluation.protocols`).
METRICS = ("mpjpe", "pa_mpjpe", "pck", "auc")
BENCHMARK_METRICS = ("pck_14", "auc_14", "pck_seq_mean", "auc_seq_mean")


def collect(out_dir: str | Path) -> dict[str, list[dict]]:
    """``{run: [metrics.json of each seed that finished]}`` under ``out_dir/seed*/``."""
    found: dict[str, list[dict]] = {}
    for seed_dir in sorted(Path(out_dir).glob("seed*")):
        for run in RUNS:
            path = seed_dir / run / "metrics.json"
            if path.is_file():
                found.setdefault(run, []).append(json.loads(path.read_text()))
    return found


def summarise(found: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Seed means and standard deviations (population std; 0 for one seed) per run/set/metric.

    Only test sets present in every seed of a run are summarised.
    """
    mean: dict = {}
    std: dict = {}
    for run, seeds in found.items():
        sets = [s for s in seeds[0] if all(s in m for m in seeds)]
        keys = {s: [*METRICS, *(k for k in BENCHMARK_METRICS if all(k in m[s] for m in seeds))]
                for s in sets}  # fmt: skip
        mean[run] = {s: {k: statistics.fmean(m[s][k] for m in seeds) for k in keys[s]}
                     for s in sets}  # fmt: skip
        std[run] = {s: {k: statistics.pstdev([m[s][k] for m in seeds]) for k in keys[s]}
                    for s in sets}  # fmt: skip
    return mean, std


def partial_sets(found: dict[str, list[dict]]) -> list[str]:
    """One line per test set that some but not all seeds of a run have (left out of the summary,
    e.g. runs finished before a set was added and reused by the script)."""
    notes = []
    for run, seeds in found.items():
        counts: dict[str, int] = {}
        for m in seeds:
            for s in m:
                counts[s] = counts.get(s, 0) + 1
        notes += [f"{run}: {s} left out (in {n} of {len(seeds)} seeds)"
                  for s, n in counts.items() if n < len(seeds)]  # fmt: skip
    return notes


def main(argv: list[str] | None = None) -> None:
    """Write ``summary.json`` / ``summary_std.json`` and print the table."""
    ap = argparse.ArgumentParser(prog="python -m poseaug_pl.ablation", description=__doc__)
    ap.add_argument("out", help="the ablation's output folder (with seed<k>/<run>/metrics.json)")
    args = ap.parse_args(argv)
    found = collect(args.out)
    if not found:
        raise SystemExit(f"error: {args.out}: no seed*/<run>/metrics.json found")
    mean, std = summarise(found)
    for note in partial_sets(found):
        print(f"warning: {note}", file=sys.stderr)
    out = Path(args.out)
    try:
        write_text_atomic(out / "summary.json", json.dumps(mean, indent=2))
        write_text_atomic(out / "summary_std.json", json.dumps(std, indent=2))
    except WriteFailed as e:  # disk full, read-only folder: one line, exit 1
        raise SystemExit(f"error: {e}") from None
    counts = {r: len(v) for r, v in found.items()}
    print("MPJPE (mm), mean +- std over seeds, (ratio to control); each run at its last epoch:")
    print(format_table(ablation_rows(mean, std, counts, RUNS)))
    print("PA-MPJPE (mm):")
    print(format_table(ablation_rows(mean, std, counts, RUNS, "pa_mpjpe")))
    if any("pck_seq_mean" in m for per in mean.values() for m in per.values()):
        print("MuPoTS-3D 3DPCK (%, official: bones at true lengths, mean of sequences):")
        print(format_table(ablation_rows(mean, std, counts, RUNS, "pck_seq_mean")))
    print(f"written: {out / 'summary.json'}, {out / 'summary_std.json'}")


if __name__ == "__main__":
    main()
