"""The cross-dataset benchmarks' own numbers and tables: MPI-INF-3DHP, 3DPW and HumanEva-I.

A cross set names its benchmark in the ``dataset`` its converter wrote (``prepare_data``), or by
its set name (`data.cross.protocol_of`). ``evaluate`` then adds to ``metrics.json[<set>]``:

* ``mpi_inf_3dhp``: ``pck_14`` and ``auc_14`` (3D PCK at 150 mm and its AUC over 0..150 mm in
  5 mm steps, over the 14 joints of the groups most later papers use, `metrics.PCK_JOINTS_14`;
  the 16-joint PCK and AUC of PoseAug's released helper stay in the set's row) and, when the rows
  carry their scene, ``per_scene``: ``{GS, noGS, outdoor: {pck_14, auc_14, mpjpe, pa_mpjpe,
  frames}}``, each scene's frames pooled (the official README's frame-weighted mean of its two
  sequences). MPJPE is over all 16 joints, as PoseAug reports it.
* ``3dpw``: nothing more (its papers report the set's PA-MPJPE and MPJPE); the table says so.
* ``humaneva``: ``per_action_subject``: ``{action: {subject: {mpjpe, pa_mpjpe, frames}}}``,
  the papers' table of actions by subject.
* ``mupots3d``: MuPoTS-3D's official 3DPCK (``mpii_mupots_multiperson_eval.m``): root-relative,
  each predicted bone first given its true length from the pelvis out, PCK at 150 mm and AUC
  over 0..150 mm (5 mm steps) over the 14 joints 1-14 of its 17 (`metrics.PCK_JOINTS_14`), every
  annotated person (ground-truth 2D: none goes undetected). ``pck_14`` and ``auc_14`` pool every
  person; ``pck_seq_mean`` and ``auc_seq_mean`` average the sequences, as the published ports
  of the script report "all sequences"; ``per_sequence``: ``{TS<k>: {pck_14, auc_14, mpjpe,
  pa_mpjpe, frames}}`` (frames: persons). MPJPE is over PoseAug's 16 joints without rescaling.

`protocol_table` prints each as the papers lay it out.
"""

from __future__ import annotations

#: MPI-INF-3DHP's scenes in the papers' order: green screen (TS1-TS2), studio without green
#: screen (TS3-TS4), outdoor (TS5-TS6).
SCENES = ("GS", "noGS", "outdoor")
#: The keys this module adds to a set's metrics.
PROTOCOL_KEYS = ("protocol", "pck_14", "auc_14", "per_scene", "per_action_subject",
                 "pck_seq_mean", "auc_seq_mean", "per_sequence")


def protocol_metrics(protocol: str, cells, subjects, actions) -> dict:
    """A benchmark's numbers from a set's per-cell sums.

    Args:
        protocol: ``mpi_inf_3dhp``, ``3dpw``, ``humaneva`` or ``mupots3d``.
        cells: (subjects, actions, `metrics.CELL_COLUMNS`) summed `metrics.cell_rows`.
        subjects, actions: the cells' names.
    """
    from poseaug_pl.evaluation.metrics import cell_summary  # (torch: imported when computing)

    out: dict = {"protocol": protocol}
    if protocol == "mpi_inf_3dhp":
        total = cell_summary(cells.sum((0, 1)))
        out |= {"pck_14": total["pck_14"], "auc_14": total["auc_14"]}
        if set(actions) <= set(SCENES):
            by_scene = dict(zip(actions, map(cell_summary, cells.sum(0))))
            out["per_scene"] = {s: by_scene[s] for s in SCENES if by_scene.get(s, {}).get("frames")}
    elif protocol == "mupots3d":
        total = cell_summary(cells.sum((0, 1)))
        per = {s: v for s, v in zip(subjects, map(cell_summary, cells.sum(1))) if v["frames"]}
        out |= {"pck_14": total["pck_14"], "auc_14": total["auc_14"],
                "pck_seq_mean": sum(v["pck_14"] for v in per.values()) / max(len(per), 1),
                "auc_seq_mean": sum(v["auc_14"] for v in per.values()) / max(len(per), 1)}
        if len(per) > 1:
            out["per_sequence"] = per
    elif protocol == "humaneva" and (len(subjects) > 1 or len(actions) > 1):
        keep = ("mpjpe", "pa_mpjpe", "frames")
        out["per_action_subject"] = {
            a: {s: {k: v[k] for k in keep} for s, v in
                ((s, cell_summary(cells[i, j])) for i, s in enumerate(subjects)) if v["frames"]}
            for j, a in enumerate(actions)
        }  # fmt: skip
    return out


def protocol_table(name: str, m: dict) -> str | None:
    """The benchmark's table of one set's `metrics.json` entry (None for a set without one)."""
    from poseaug_pl.evaluation.report import format_table

    protocol = m.get("protocol")
    if protocol == "mpi_inf_3dhp":
        scenes = {**m.get("per_scene", {}), "All": m}
        rows = [{name: label, **{s: fmt.format(v[key]) for s, v in scenes.items()}}
                for label, key, fmt in (("PCK (14 joints)", "pck_14", "{:.1f}"),
                                        ("AUC (14 joints)", "auc_14", "{:.1f}"),
                                        ("MPJPE", "mpjpe", "{:.1f}"),
                                        ("frames", "frames", "{}"))]  # fmt: skip
        return format_table(rows) + ("\n(MPI-INF-3DHP: PCK at 150 mm and AUC in %, over head top, "
                                     "neck, shoulders, elbows, wrists, hips, knees, ankles; "
                                     "MPJPE in mm over PoseAug's 16 joints)")  # fmt: skip
    if protocol == "mupots3d":
        cols = (("PCK", "pck_14", "{:.1f}"), ("AUC", "auc_14", "{:.1f}"),
                ("MPJPE", "mpjpe", "{:.1f}"), ("persons", "frames", "{}"))  # fmt: skip
        rows = [{name: s, **{c: f.format(v[k]) for c, k, f in cols}}
                for s, v in m.get("per_sequence", {}).items()]  # fmt: skip
        rows.append({name: "All (persons)", **{c: f.format(m[k]) for c, k, f in cols}})
        if "per_sequence" in m:
            rows.append({name: "All (mean of sequences)", "PCK": f"{m['pck_seq_mean']:.1f}",
                         "AUC": f"{m['auc_seq_mean']:.1f}", "MPJPE": "", "persons": ""})
        return format_table(rows) + ("\n(MuPoTS-3D, every annotated person: 3DPCK at 150 mm and "
                                     "AUC in %, root-relative, bones at their true lengths, over "
                                     "head top, neck, shoulders, elbows, wrists, hips, knees, "
                                     "ankles; MPJPE in mm over PoseAug's 16 joints)")  # fmt: skip
    if protocol == "3dpw":
        row = {name: "3DPW", "PA-MPJPE": f"{m['pa_mpjpe']:.1f}", "MPJPE": f"{m['mpjpe']:.1f}",
               "frames": m["frames"]}  # fmt: skip
        return format_table([row]) + "\n(mm over PoseAug's 16 joints, every actor)"
    if protocol == "humaneva" and "per_action_subject" in m:
        table = m["per_action_subject"]
        subjects = list(dict.fromkeys(s for per in table.values() for s in per))
        rows = []
        for label, key in (("P1 (MPJPE)", "mpjpe"), ("P2 (PA-MPJPE)", "pa_mpjpe")):
            for s in subjects:
                rows.append({name: f"{label} {s}", **{a: f"{per[s][key]:.1f}" if s in per else "-"
                                                      for a, per in table.items()}})  # fmt: skip
        return format_table(rows) + ("\n(HumanEva-I: mm per action and subject, over PoseAug's 16 "
                                     "joints, the spine the pelvis-thorax midpoint)")  # fmt: skip
    return None


def protocol_table_data(m: dict) -> tuple[str, list[str], list[list]] | None:
    """Key, columns and rows of a set's benchmark table (a W&B table): ``per_scene`` (3DHP's
    scenes), ``per_sequence`` (MuPoTS-3D's sequences) or ``per_action_subject`` (HumanEva-I's
    actions by subject); None for a set without one."""
    if "per_scene" in m:
        columns = ["scene", "pck_14", "auc_14", "mpjpe", "pa_mpjpe", "frames"]
        rows = [[s, *(v[c] for c in columns[1:])] for s, v in m["per_scene"].items()]
        return "per_scene", columns, rows
    if "per_sequence" in m:
        columns = ["sequence", "pck_14", "auc_14", "mpjpe", "pa_mpjpe", "frames"]
        rows = [[s, *(v[c] for c in columns[1:])] for s, v in m["per_sequence"].items()]
        return "per_sequence", columns, rows
    if "per_action_subject" in m:
        columns = ["action", "subject", "mpjpe", "pa_mpjpe", "frames"]
        rows = [[a, s, v["mpjpe"], v["pa_mpjpe"], v["frames"]]
                for a, per in m["per_action_subject"].items() for s, v in per.items()]  # fmt: skip
        return "per_action_subject", columns, rows
    return None
