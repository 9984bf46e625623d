"""LightningDataModules serving pose pairs from tensors on the training device.

A batch is a dict of tensors: ``pose3d`` (B, 16, 3) camera-frame metres (absolute), ``pose2d``
(B, 16, 2) normalised, ``cam`` (B, 9) normalised intrinsics (absent for cross-sets without
calibration), ``subject``, ``action``, ``sequence`` and ``index`` (B,) int64.

Splits: ``train``; ``val``, whole sequences held out from the training subjects (for model
selection, never test data); and the named test sets (`test_names`): the in-domain test split,
the domain's extra sets, then every cross-dataset set, then (with ``raised_camera``) a
raised-camera copy ``<name>_raised`` of each of them but ``synthetic_wild``
(`poseaug_pl.data.views`).
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from poseaug_pl.data.cross import load_cross_set
from poseaug_pl.data.h36m import TEST_SUBJECTS, TRAIN_SUBJECTS, load_h36m
from poseaug_pl.data.loader import EpochSampler, TensorBatches
from poseaug_pl.data.poseset import DataError, PoseSet
from poseaug_pl.data.synthetic import generate
from poseaug_pl.data.views import raise_camera, upright
from poseaug_pl.geometry import skeleton
from poseaug_pl.geometry.camera import elevation_range
from poseaug_pl.preflight import missing_cross_set, missing_h36m
from poseaug_pl.training.config import SET_NAME

#: Test sets filmed by random cameras already: no raised-camera copy.
RANDOM_VIEW_SETS = ("synthetic_wild",)
#: Seed of the raised cameras: the same raised test sets for every run and seed.
RAISED_SEED = 0

log = logging.getLogger(__name__)


def _names(names, shown: int = 6) -> str:
    """Names joined by spaces; past ``shown``, the first few and how many in all."""
    names = list(names)
    if len(names) <= shown:
        return " ".join(names)
    return f"{' '.join(names[:3])} ... ({len(names)})"


def split_by_sequence(data: PoseSet, fraction: float, seed: int = 0) -> tuple[PoseSet, PoseSet]:
    """Hold out whole sequences (all cameras of them) as a validation set.

    Args:
        data: the training pairs.
        fraction: share of sequences held out (0 gives an empty validation set).
        seed: seed of the choice.

    Returns:
        (train, val) sets.
    """
    seqs = torch.unique(data.sequence)
    k = round(fraction * len(seqs))
    if fraction > 0 and len(seqs) > 1:
        k = min(max(k, 1), len(seqs) - 1)
    gen = torch.Generator().manual_seed(seed)
    held = seqs[torch.randperm(len(seqs), generator=gen)[:k]]
    is_val = torch.isin(data.sequence, held)
    return data.select(~is_val, name="train"), data.select(is_val, name="val")


class PoseDataModule(L.LightningDataModule):
    """Base datamodule: subclasses implement `load_splits`.

    Args:
        batch_size: training batch size (the last incomplete batch is dropped).
        eval_batch_size: batch size of validation and test loaders.
        val_fraction: share of training sequences held out for validation.
        cross_sets: mapping name -> npz path of cross-dataset test sets (PoseAug layout).
        seed: seed of the validation split and of the per-epoch shuffling.
        raised_camera: ``[low, high]`` degrees: also test on every test set (but
            ``synthetic_wild``) re-filmed from its camera raised by U(low, high), as
            ``<name>_raised``; None (default): no such sets.
        upright: turn each cross set's sideways-filmed footage upright (`views.upright`), as a
            video pipeline does before its 2D detector; False: the sets as given.
    """

    def __init__(
        self,
        batch_size: int = 1024,
        eval_batch_size: int = 8192,
        val_fraction: float = 0.05,
        cross_sets: dict | None = None,
        seed: int = 0,
        raised_camera=None,
        upright: bool = True,
    ):
        super().__init__()
        self.upright = bool(upright)
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if raised_camera is not None:
            raised_camera = elevation_range(raised_camera, "raised_camera")
        self.raised_camera = raised_camera
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.val_fraction, self.seed = float(val_fraction), int(seed)
        self.cross_sets = dict(cross_sets or {})
        for name in self.cross_sets:
            if not SET_NAME.fullmatch(str(name)):
                raise DataError(f"data.cross_sets: {str(name)[:80]!r} is not a set name (a letter, "
                                "then letters, digits, '_' or '-'; it names files)")  # fmt: skip
        self._cross: dict[str, PoseSet] = {}  # read by `check`, handed to `setup`
        self._splits: tuple[PoseSet, dict[str, PoseSet]] | None = None  # likewise
        self.train_set: PoseSet | None = None
        self.val_set: PoseSet | None = None
        self.test_sets: dict[str, PoseSet] = {}
        self._train_loader: TensorBatches | None = None

    def load_splits(self) -> tuple[PoseSet, dict[str, PoseSet]]:
        """Return the training pairs and the domain's named test sets."""
        raise NotImplementedError

    def check(self) -> None:
        """Fail fast (DataError) on a missing or unusable input file, before any training is set
        up: the cross-dataset sets are read and checked here (and kept for `setup`)."""
        for name, path in self.cross_sets.items():
            if problem := missing_cross_set(name, path):
                raise DataError(problem)
            self._cross[name] = load_cross_set(path, name)

    @property
    def test_names(self) -> list[str]:
        """Names of the test sets, in the order of `test_dataloader`."""
        return list(self.test_sets)

    def setup(self, stage: str | None = None) -> None:
        """Load every split once and move it to the training device (when a trainer is attached)."""
        if self.train_set is not None:
            return
        train, tests = self._splits or self.load_splits()
        self._splits = None
        for name, path in self.cross_sets.items():
            if name in tests:
                raise DataError(f"{path}: cross-set name {name!r} clashes with a built-in test set")
            tests[name] = self._cross.pop(name, None) or load_cross_set(path, name)
            if self.upright:
                tests[name], turned = upright(tests[name])
                for footage, degrees in turned.items():
                    log.info("%s: %s is filmed sideways or upside down: turned upright "
                             "(%+d degrees; data.upright=false: as given)",
                             name, footage, degrees)  # fmt: skip
        if self.raised_camera is not None:
            for name in [n for n in tests if n not in RANDOM_VIEW_SETS]:
                raised = raise_camera(tests[name], *self.raised_camera, seed=RAISED_SEED)
                if raised is None:
                    log.warning(
                        "%s: root-centred 3D (the camera's position is unknown, as in "
                        "SPIN's 3DHP file) cannot be re-filmed: no raised copy",
                        name,
                    )
                    continue  # fmt: skip
                if raised.name in tests:
                    raise DataError(f"test set name {raised.name!r} is taken: rename that set")
                tests[raised.name] = raised
        train, val = split_by_sequence(train, self.val_fraction, self.seed)
        if len(train) == 0:
            raise DataError("no training pairs left after the validation split")
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        self.train_set, self.val_set = train.to(device), val.to(device)
        self.test_sets = {k: v.to(device) for k, v in tests.items()}

    def _rank(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def train_dataloader(self) -> TensorBatches:
        """Shuffled training batches (one loader object for the whole run), in as many passes
        per epoch as the module's schedule asks for (``train_passes()``)."""
        if self._train_loader is None:
            rank, world = self._rank()
            sampler = EpochSampler(len(self.train_set), True, self.seed, rank, world)
            bs = self.batch_size
            if len(sampler) < bs:
                log.warning(
                    "batch_size %d > %d training pairs per rank; using %d",
                    bs,
                    len(sampler),
                    len(sampler),
                )
                bs = len(sampler)
            model = self.trainer.lightning_module if self.trainer is not None else None
            passes = model.train_passes() if hasattr(model, "train_passes") else 1
            self._train_loader = TensorBatches(
                self.train_set.tensors(), bs, sampler, drop_last=True, passes=passes
            )
        return self._train_loader

    def _eval_loader(self, data: PoseSet) -> TensorBatches:
        rank, world = self._rank()
        sampler = EpochSampler(len(data), False, rank=rank, world_size=world)
        return TensorBatches(data.tensors(), self.eval_batch_size, sampler)

    def val_dataloader(self) -> TensorBatches:
        """Validation batches in order (empty when ``val_fraction`` is 0)."""
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> list[TensorBatches]:
        """One loader per test set, in `test_names` order."""
        return [self._eval_loader(v) for v in self.test_sets.values()]

    def train_bone_templates(self) -> torch.Tensor:
        """(S, 15) mean bone lengths of each training subject (for PoseAug's bone swap)."""
        lengths = skeleton.bone_lengths(self.train_set.pose3d)
        subs = torch.unique(self.train_set.subject)
        return torch.stack([lengths[self.train_set.subject == s].mean(0) for s in subs])

    def summary(self) -> list[dict]:
        """One row per split: name, pairs, subjects, depth range, share of 2D outside [-1, 1]."""
        sets = {"train": self.train_set, "val": self.val_set, **self.test_sets}
        rows = []
        for name, s in sets.items():
            if s is None or len(s) == 0:
                rows.append({"set": name, "pairs": 0})
                continue
            depth = s.pose3d[:, 0, 2]
            rows.append(
                {
                    "set": name,
                    "pairs": len(s),
                    "subjects": _names(s.subjects[i] for i in torch.unique(s.subject).tolist()),
                    "depth_m": f"{depth.min().item():.2f}-{depth.max().item():.2f}",
                    "out_of_frame_%": round(
                        100 * (s.pose2d.abs() > 1).any(-1).any(-1).float().mean().item(), 2
                    ),
                }
            )
        return rows


class SyntheticDataModule(PoseDataModule):
    """The embedded synthetic mocap data (`poseaug_pl.data.synthetic`).

    Test sets: ``synthetic`` (the held-out S9/S11 templates, Human3.6M cameras) and
    ``synthetic_wild`` (the shifted domain that plays the cross-dataset target).

    Args:
        train_sequences, test_sequences, wild_sequences: sequences per set (x 4 cameras x frames).
        frames: frames per sequence (25 fps).
        train_subjects, test_subjects: bone-length templates of each split.
        **kwargs: `PoseDataModule` arguments.
    """

    def __init__(
        self,
        train_sequences: int = 200,
        test_sequences: int = 20,
        wild_sequences: int = 40,
        frames: int = 200,
        train_subjects=TRAIN_SUBJECTS,
        test_subjects=TEST_SUBJECTS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.train_sequences, self.test_sequences = train_sequences, test_sequences
        self.wild_sequences, self.frames = wild_sequences, frames
        self.train_subjects, self.test_subjects = tuple(train_subjects), tuple(test_subjects)

    def load_splits(self):
        """Generate the training set and the ``synthetic`` and ``synthetic_wild`` test sets."""
        s, f = self.seed, self.frames
        train = generate(self.train_sequences, f, self.train_subjects, "h36m", s, "train")
        tests = {}  # a set of 0 sequences is left out
        if self.test_sequences > 0:
            tests["synthetic"] = generate(
                self.test_sequences, f, self.test_subjects, "h36m", s + 1, "synthetic"
            )
        if self.wild_sequences > 0:
            subjects = self.train_subjects + self.test_subjects
            tests["synthetic_wild"] = generate(
                self.wild_sequences, f, subjects, "wild", s + 2, "synthetic_wild"
            )
        return train, tests


class H36MDataModule(PoseDataModule):
    """Human3.6M in the VideoPose3D layout (`poseaug_pl.data.h36m.load_h36m`).

    The test set is named ``h36m`` (the test subjects, all frames of the selection). With
    ``wild_sequences > 0`` the generated ``synthetic_wild`` set (a shifted domain: other poses,
    views, focal lengths and proportions) is added as a cross-domain test set, for runs without
    MPI-INF-3DHP or 3DPW at hand.

    Args:
        root: folder holding ``data_3d_h36m.npz`` (and ``data_2d_h36m_<keypoints>.npz``).
        keypoints: ``gt`` (projected ground truth) or a 2D source name such as ``sh_pt_mpii``.
        stride: frame stride applied to the training and test subjects.
        train_subjects, test_subjects, actions: the selection.
        cache_dir: preprocessed-cache folder (default ``$POSEAUG_CACHE`` or
            ``~/.cache/poseaug_pl``; ``false`` disables it).
        wild_sequences: sequences of the ``synthetic_wild`` test set (0: none).
        **kwargs: `PoseDataModule` arguments.
    """

    def __init__(
        self,
        root: str,
        keypoints: str = "gt",
        stride: int = 1,
        train_subjects=TRAIN_SUBJECTS,
        test_subjects=TEST_SUBJECTS,
        actions=None,
        cache_dir=None,
        wild_sequences: int = 40,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.wild_sequences = int(wild_sequences)
        self.root, self.keypoints, self.stride = root, keypoints, int(stride)
        self.train_subjects, self.test_subjects = tuple(train_subjects), tuple(test_subjects)
        self.actions = list(actions) if actions else None
        self.cache_dir = cache_dir

    def check(self) -> None:
        """Check that the Human3.6M files exist (DataError naming where it looked)."""
        super().check()
        if problem := missing_h36m(self.root, self.keypoints):
            raise DataError(problem)
        self._splits = self.load_splits()  # read (and checked) now, before training starts

    def load_splits(self):
        """Load the training subjects and the ``h36m`` test set."""
        common = dict(
            keypoints=self.keypoints,
            actions=self.actions,
            stride=self.stride,
            cache_dir=self.cache_dir,
        )
        train = load_h36m(self.root, subjects=self.train_subjects, name="train", **common)
        test = load_h36m(self.root, subjects=self.test_subjects, name="h36m", **common)
        tests = {"h36m": test}
        if self.wild_sequences > 0:
            subjects = self.train_subjects + self.test_subjects
            wild = generate(
                self.wild_sequences, 200, subjects, "wild", self.seed + 2, "synthetic_wild"
            )
            tests["synthetic_wild"] = wild
        return train, tests


#: The datamodules a data config may name, by the ``_target_`` path its YAML uses.
DATAMODULES: dict[str, type[PoseDataModule]] = {
    f"{mod}.{cls.__name__}": cls
    for cls in (SyntheticDataModule, H36MDataModule)
    for mod in ("poseaug_pl.data", __name__)
}


def build_datamodule(cfg: dict, source) -> PoseDataModule:
    """The datamodule a plain data config describes, built from the package's own classes.

    What `evaluate` uses on a run folder's saved config: its ``_target_`` may only name one of
    `DATAMODULES`, and every other key must be an argument of that class with plain data.

    Args:
        cfg: ``{"_target_": ..., **arguments}`` as plain Python data.
        source: the file the config came from (for the message).

    Raises:
        DataError: an unknown datamodule, an unknown argument or a value that is not plain
            data (one line naming ``source``); the constructor's own ``ValueError``.
    """
    from poseaug_pl.models.registry import SpecError, checked_arguments

    target = cfg.get("_target_")
    cls = DATAMODULES.get(target) if isinstance(target, str) else None
    if cls is None:
        known = ", ".join(sorted({c.__name__ for c in DATAMODULES.values()}))
        raise DataError(f"{source}: unknown datamodule {target!r} (known: {known})")
    args = {k: v for k, v in cfg.items() if k != "_target_"}
    try:
        checked_arguments(args, PoseDataModule, cls, owner=cls.__name__)
    except SpecError as e:
        raise DataError(f"{source}: {e}") from None
    sets = args.get("cross_sets") or {}
    if not isinstance(sets, dict) or not all(isinstance(v, str) for v in sets.values()):
        raise DataError(f"{source}: data.cross_sets must map names to file paths")
    return cls(**args)
