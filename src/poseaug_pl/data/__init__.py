"""Data: Human3.6M and cross-dataset readers, the synthetic generator, and datamodules.

The datamodules (which import Lightning) load on first use, so that commands that only read
keypoints (`poseaug_pl.predict`, `poseaug_pl.export`) start quickly.
"""

from importlib import import_module

from poseaug_pl.data.cross import load_cross_set
from poseaug_pl.data.h36m import TEST_SUBJECTS, TRAIN_SUBJECTS, load_h36m
from poseaug_pl.data.poseset import DataError, PoseSet
from poseaug_pl.data.synthetic import generate

_LAZY = {
    "DATAMODULES": "datamodule",
    "build_datamodule": "datamodule",
    "H36MDataModule": "datamodule",
    "PoseDataModule": "datamodule",
    "SyntheticDataModule": "datamodule",
    "split_by_sequence": "datamodule",
    "EpochSampler": "loader",
    "TensorBatches": "loader",
}

__all__ = [
    "DATAMODULES",
    "build_datamodule",
    "DataError",
    "EpochSampler",
    "H36MDataModule",
    "PoseDataModule",
    "PoseSet",
    "SyntheticDataModule",
    "TensorBatches",
    "TEST_SUBJECTS",
    "TRAIN_SUBJECTS",
    "generate",
    "load_cross_set",
    "load_h36m",
    "split_by_sequence",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
