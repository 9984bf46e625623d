"""Every plain-text table and report the package prints or writes, in one place.

* `format_table`: dict rows as an aligned plain-text table (what every other table uses);
* a run's test metrics: `plain_metrics` / `write_metrics` (``metrics.json``), `metrics_table`
  and the papers' per-action `action_table` (the cross-dataset benchmarks' tables are
  `evaluation.protocols`); `metrics_table_data` / `action_table_data` for
  W&B tables;
* which checkpoint was tested (its epoch, and whether its estimator has trained on augmented
  pairs): `checkpoint_info` and `describe_checkpoint`;
* runs side by side (``compare``, notebook 02): `metric_rows`, `summary_rows`;
* the seed summary of the CPU ablation (``ablation``): `ablation_rows`;
* augmentation plausibility (`geometry.plausibility` statistics): `plausibility_table`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from poseaug_pl.evaluation.protocols import PROTOCOL_KEYS, protocol_table
from poseaug_pl.utils import write_text_atomic

#: The scalar metrics of every test set in ``metrics.json``, in table order.
METRIC_KEYS = ("mpjpe", "pa_mpjpe", "n_mpjpe", "pck", "auc", "frames")


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


# --- a run's test metrics -------------------------------------------------------------------


def plain_metrics(results: dict) -> dict:
    """``{set: {mpjpe, pa_mpjpe, n_mpjpe, pck, auc, frames, per_joint, per_bone_angle,
    per_bone_length[, per_action][, the benchmark's keys]}}`` of `PoseAugModule.test_results`
    (`protocols.PROTOCOL_KEYS`).

    ``per_joint`` is the MPJPE of each of the 16 joints (mm); ``per_bone_angle`` the mean angle
    between predicted and true direction of each of the 15 bones (degrees, `skeleton.BONES`
    order) and ``per_bone_length`` the mean predicted / true length of each bone.
    """
    out = {}
    for s, r in results.items():
        out[s] = {k: r[k] for k in METRIC_KEYS}
        for k, digits in (("per_joint", 3), ("per_bone_angle", 3), ("per_bone_length", 4)):
            if k in r:
                out[s][k] = [round(v, digits) for v in r[k]]
        for k in ("per_action", *PROTOCOL_KEYS):
            if k in r:
                out[s][k] = r[k]
    return out


def write_metrics(results: dict, path: Path) -> dict:
    """Write `plain_metrics` of ``results`` as JSON; return it."""
    metrics = plain_metrics(results)
    write_text_atomic(path, json.dumps(metrics, indent=2))
    return metrics


def metrics_table(metrics: dict) -> str:
    """Plain-text table of `write_metrics` output."""
    rows = [{"set": s, "MPJPE": f"{m['mpjpe']:.1f}", "PA-MPJPE": f"{m['pa_mpjpe']:.1f}",
             "N-MPJPE": f"{m['n_mpjpe']:.1f}", "PCK": f"{m['pck']:.1f}", "AUC": f"{m['auc']:.1f}",
             "frames": m["frames"]} for s, m in metrics.items()]  # fmt: skip
    tables = [protocol_table(s, m) or ("per_action" in m and action_table(s, m["per_action"]))
              for s, m in metrics.items()]  # fmt: skip
    tables = [t for t in tables if t]
    return "\n\n".join([format_table(rows) + "\n(mm; PCK@150mm and AUC in %)", *tables])


#: The papers' column names and order of the Human3.6M actions (other names keep theirs).
PAPER_ACTIONS = {
    "Directions": "Dir.",
    "Discussion": "Disc.",
    "Eating": "Eat",
    "Greeting": "Greet",
    "Phoning": "Phone",
    "Photo": "Photo",
    "TakingPhoto": "Photo",
    "Posing": "Pose",
    "Purchases": "Purch.",
    "Sitting": "Sit",
    "SittingDown": "SitD.",
    "Smoking": "Smoke",
    "Waiting": "Wait",
    "WalkDog": "WalkD.",
    "WalkingDog": "WalkD.",
    "Walking": "Walk",
    "WalkTogether": "WalkT.",
    "WalkingTogether": "WalkT.",
}


def action_table(name: str, per_action: dict) -> str:
    """The papers' per-action table: actions as columns, Protocol 1 (MPJPE) and Protocol 2
    (PA-MPJPE) rows, and the average over actions (mm)."""
    order = list(dict.fromkeys(PAPER_ACTIONS))
    actions = sorted(per_action, key=lambda a: order.index(a) if a in order else len(order))
    rows = []
    for label, key in (("P1 (MPJPE)", "mpjpe"), ("P2 (PA-MPJPE)", "pa_mpjpe")):
        values = [per_action[a][key] for a in actions]
        row = {
            name: label,
            **{PAPER_ACTIONS.get(a, a): f"{v:.1f}" for a, v in zip(actions, values)},
        }
        rows.append({**row, "Avg": f"{sum(values) / len(values):.1f}"})
    return format_table(rows) + "\n(mm per action, takes merged; Avg: mean over actions)"


def metrics_table_data(results: dict) -> tuple[list[str], list[list]]:
    """Columns and rows of the metrics table of `PoseAugModule.test_results` (a W&B table)."""
    columns = ["set", *METRIC_KEYS]
    rows = [[name, *(r[c] for c in columns[1:])] for name, r in results.items()]
    return columns, rows


def action_table_data(per_action: dict) -> tuple[list[str], list[list]]:
    """Columns and rows of one test set's per-action table (a W&B table)."""
    columns = ["action", "mpjpe", "pa_mpjpe", "frames"]
    return columns, [[a, v["mpjpe"], v["pa_mpjpe"], v["frames"]] for a, v in per_action.items()]


# --- which checkpoint was tested ------------------------------------------------------------


def checkpoint_info(ckpt: dict, name: str) -> dict:
    """What a training checkpoint is: ``{file, epoch, max_epochs, global_step,
    augmented_updates, augmented}``.

    ``epoch`` counts from 1 (the epoch whose end saved it; None when unknown); ``max_epochs``
    the run's planned epochs (None when the checkpoint does not say). ``augmented`` says
    whether its estimator has trained on augmented pairs: ``yes``, ``no (baseline)``,
    ``no (augmentor pretraining)``, ``no (warm-up)`` or ``unknown (older checkpoint)`` (an
    augmented run's checkpoint written before ``augmented_updates`` was stored).

    Args:
        ckpt: the checkpoint dict (`models.ckpt.read_checkpoint`), or the same keys of a module
            in memory (``epoch``, ``global_step``, ``augmented_updates``, ``hyper_parameters``).
        name: how to name it (``best.ckpt``).
    """
    hp = ckpt.get("hyper_parameters") or {}
    epoch, updates = ckpt.get("epoch"), ckpt.get("augmented_updates")
    if not hp.get("augment", True):
        augmented = "no (baseline)"
    elif not hp.get("train_estimator", True):
        augmented = "no (augmentor pretraining)"
    elif not isinstance(updates, int):
        augmented, updates = "unknown (older checkpoint)", None
    else:
        augmented = "yes" if updates > 0 else "no (warm-up)"
    return {"file": name, "epoch": epoch + 1 if isinstance(epoch, int) else None,
            "max_epochs": ckpt.get("max_epochs", hp.get("max_epochs")),
            "global_step": ckpt.get("global_step"),
            "augmented_updates": updates, "augmented": augmented}  # fmt: skip


def describe_checkpoint(info: dict) -> str:
    """One line of `checkpoint_info`, e.g. ``checkpoint: best.ckpt, epoch 7 of 50; estimator
    trained on augmented pairs: yes (12345 updates)``."""
    epoch = f"epoch {info['epoch'] if info['epoch'] is not None else '?'}"
    if info.get("max_epochs"):
        epoch += f" of {info['max_epochs']}"
    seen = info["augmented"]
    if seen == "yes":
        seen += f" ({info['augmented_updates']} updates)"
    return f"checkpoint: {info['file']}, {epoch}; estimator trained on augmented pairs: {seen}"


# --- runs side by side ----------------------------------------------------------------------


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


def ablation_rows(mean: dict, std: dict, counts: dict[str, int], runs, metric: str = "mpjpe"):
    """One row per run (in the order of ``runs``, those in ``mean``): ``mean +- std`` of
    ``metric`` per set over the seeds, and the ratio to the ``control`` run."""
    rows = []
    ctrl = mean.get("control", {})
    for run in [r for r in runs if r in mean]:
        row = {"run": run, "seeds": counts[run]}
        for s, m in mean[run].items():
            if metric not in m:  # (a benchmark's own metric: only its sets have it)
                continue
            cell = f"{m[metric]:.1f} +- {std[run][s][metric]:.1f}"
            if run != "control" and s in ctrl:
                cell += f" ({m[metric] / ctrl[s][metric]:.3f}x)"
            row[s] = cell
        if len(row) > 2:  # (a run none of whose sets has the metric: no row)
            rows.append(row)
    return rows


# --- augmentation plausibility --------------------------------------------------------------


def plausibility_table(stats: dict[str, dict], title: str = "") -> str:
    """`plausibility.augmentation_statistics` as a small text table: one row per population
    (real, augmented), shares in %, angles in degrees, numbers right-aligned."""
    # (lazy: `compare` and `ablation` read this module without loading torch)
    from poseaug_pl.geometry.plausibility import AUGMENTATION_STATS, HIGH_VIEW_DEG, POSE_STATS

    cols = [*POSE_STATS, *AUGMENTATION_STATS]
    heads = ["upright", "inside", "scale2d", "elev", f"elev>={HIGH_VIEW_DEG:g}", "rot", "bone_ang",
             "bone_len", "d3d_acc", "d2d_acc"]  # fmt: skip

    def cell(name, v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if name in ("upright", "inside", "high_view", "bone_length_change", "d3d_acc", "d2d_acc"):
            return f"{100 * v:.1f}%"
        if name.endswith("_deg"):
            return f"{v:.1f}"
        return f"{v:.2f}"

    rows = [[k, *(cell(c, s.get(c)) for c in cols)] for k, s in stats.items()]
    widths = [max(len(r[i]) for r in [["", *heads], *rows]) for i in range(len(cols) + 1)]
    lines = [title] if title else []
    for r in [["", *heads], *rows]:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in
                               enumerate(zip(r, widths))))  # fmt: skip
    return "\n".join(lines)
