"""``python -m poseaug_pl.prepare_data``: load (and cache) a dataset and summarise every split,
or convert an official release into a cross set (``dataset=NAME root=DIR output=FILE.npz``).

Examples::

    python -m poseaug_pl.prepare_data                      # embedded synthetic data
    python -m poseaug_pl.prepare_data data=h36m data.root=/data/h36m data.keypoints=sh_pt_mpii
    python -m poseaug_pl.prepare_data figures=outputs/figures   # PNG grids of sample poses
    python -m poseaug_pl.prepare_data dataset=humaneva root=/data/humaneva \\
        output=humaneva_validate.npz split=validate        # then +data.cross_sets.<name>=...
    python -m poseaug_pl.prepare_data dataset=mpi_inf_3dhp root=/data/mpi_inf_3dhp_test_set \\
        output=3dhp.npz                                    # also: 3dpw, mpi_inf_3dhp_spin, mupots3d
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from poseaug_pl.cli import entry_point
from poseaug_pl.data import PoseDataModule, build_datamodule
from poseaug_pl.evaluation.report import format_table

#: ``dataset=`` converters: name -> (module, function, default split, benchmark written as the
#: file's ``dataset``: the tables ``evaluate`` prints, `evaluation.protocols`).
CONVERTERS = {
    "humaneva": ("poseaug_pl.data.humaneva", "convert_humaneva", "train", "humaneva"),
    "3dpw": ("poseaug_pl.data.pw3d", "convert_3dpw", "test", "3dpw"),
    "mpi_inf_3dhp": ("poseaug_pl.data.mpi_inf_3dhp", "convert_mpi_inf_3dhp", "test",
                     "mpi_inf_3dhp"),
    "mpi_inf_3dhp_spin": ("poseaug_pl.data.mpi_inf_3dhp", "convert_spin", "test", "mpi_inf_3dhp"),
    "mupots3d": ("poseaug_pl.data.mupots3d", "convert_mupots3d", "test", "mupots3d"),
}  # fmt: skip


def check_written(tmp: Path, out: Path, dataset: str) -> None:
    """Read the converted file back as `evaluate` will (`data.load_cross_set`: keys, shapes,
    finite values, metres and normalised 2D, labels) and check every row, not only the median
    one: each pose within 5 m of its root and, for camera-frame sets, in front of the camera.

    Raises:
        DataError: one line naming ``out`` and what is wrong; nothing is written.
    """
    import numpy as np

    from poseaug_pl.data import DataError, load_cross_set
    from poseaug_pl.data.poseset import MAX_METRES

    try:
        data = load_cross_set(tmp, dataset)
    except DataError as e:
        why = str(e).replace(f"{tmp}: ", "")
        raise DataError(f"{out}: the converted {dataset} set fails the cross-set check ({why}); "
                        "nothing was written") from None  # fmt: skip
    pose3d = data.pose3d.numpy()
    reach = np.abs(pose3d - pose3d[:, :1]).max(axis=(1, 2))
    root = pose3d[:, 0, 2]
    bad = {"rows with a joint more than 5 m from the root (another unit?)": reach > MAX_METRES}
    if (np.abs(root) > 1e-6).any():  # camera-frame 3D (not root-centred): in front of the camera
        bad["rows with the root at or behind the camera (depth <= 0)"] = root <= 0
    for what, rows in bad.items():
        if rows.any():
            first = int(np.flatnonzero(rows)[0])
            raise DataError(f"{out}: the converted {dataset} set has {int(rows.sum())} {what}, "
                            f"first row {first}; nothing was written")  # fmt: skip


def convert(cfg: DictConfig) -> Path:
    """Convert ``cfg.dataset`` from ``cfg.root`` into the cross-set npz ``cfg.output`` (written
    atomically); print how many frames each sequence gave and how many were left out, and why."""
    import importlib
    import inspect

    import numpy as np
    from tqdm.auto import tqdm

    from poseaug_pl.data import DataError
    from poseaug_pl.utils import atomic_output

    if cfg.dataset not in CONVERTERS:
        raise DataError(f"dataset must be one of {sorted(CONVERTERS)}, got {cfg.dataset!r}")
    if not cfg.root or not cfg.output:
        raise DataError(f"dataset={cfg.dataset} needs root=<the release's folder> and "
                        "output=<file>.npz")  # fmt: skip
    module, function, split, benchmark = CONVERTERS[cfg.dataset]
    converter = getattr(importlib.import_module(module), function)
    extra = {"annotation": cfg.annotation} if cfg.get("annotation") else {}
    if extra and cfg.dataset not in ("mpi_inf_3dhp", "mupots3d"):
        raise DataError(f"annotation= is a setting of mpi_inf_3dhp and mupots3d, not of "
                        f"{cfg.dataset}")  # fmt: skip
    bar = lambda it: tqdm(it, desc=f"{cfg.dataset} sequences")  # noqa: E731
    dropped: dict = {}  # (filled by the converters that leave frames out)
    if "dropped" in inspect.signature(converter).parameters:
        extra["dropped"] = dropped
    try:
        arrays = converter(cfg.root, cfg.split or split, progress=bar, **extra)
    except DataError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
            RecursionError, MemoryError) as e:  # a file unlike the release's, met unchecked
        why = type(e).__name__ + (f": {str(e).splitlines()[0][:200]}" if str(e) else "")
        raise DataError(f"{cfg.root}: {cfg.dataset}'s files are not laid out as the official "
                        f"release's ({why})") from None  # fmt: skip
    part = next(k for k in ("chunk", "action", "actor") if k in arrays)
    keys = np.char.add(np.char.add(arrays["subject"].astype(str), " / "),
                       arrays[part].astype(str))  # fmt: skip
    names, counts = np.unique(keys, return_counts=True)
    rows = [{f"subject / {part}": n, "frames": int(c)} for n, c in zip(names, counts)]
    print(format_table(rows))
    out = Path(cfg.output)
    with atomic_output(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, dataset=np.array(benchmark))
        check_written(tmp, out, cfg.dataset)  # (a refused file never replaces the output)
    left = ", ".join(f"{n} {why}" for why, n in dropped.items() if n) or "none"
    print(f"{len(arrays['pose3d'])} frames ({cfg.dataset}, {cfg.split or split}; left out: "
          f"{left}): {out}")  # fmt: skip
    return out


def prepare(cfg: DictConfig):
    """Convert a release (``dataset=``), or instantiate ``cfg.data``, load every split, print
    the summary and draw figures if asked."""
    if cfg.get("dataset"):
        return convert(cfg)
    t0 = time.perf_counter()
    data = OmegaConf.to_container(cfg.data, resolve=True)
    dm: PoseDataModule = build_datamodule(data, "config: data")
    dm.setup("fit")
    took = time.perf_counter() - t0
    print(format_table(dm.summary()))
    print(f"loaded in {took:.1f}s")
    if cfg.figures:
        from poseaug_pl.evaluation import viz

        out = Path(cfg.figures)
        sets = {"train": dm.train_set, **dm.test_sets}
        gen = torch.Generator().manual_seed(int(cfg.seed))
        for name, s in sets.items():
            idx = torch.randperm(len(s), generator=gen)[: cfg.num_figure_poses]
            titles = [f"{s.subjects[s.subject[i]]} {s.actions[s.action[i]]}" for i in idx.tolist()]
            fig = viz.pose_grid(s.pose3d[idx], s.pose2d[idx], titles)
            print(f"figure: {viz.save_figure(fig, out / f'{name}.png')}")
    return dm


main = entry_point("prepare_data", prepare)


if __name__ == "__main__":
    main()
