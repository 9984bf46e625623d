"""Data: Human3.6M and cross-dataset readers, the synthetic generator, and datamodules."""

from .cross import load_cross_set
from .datamodule import H36MDataModule, PoseDataModule, SyntheticDataModule, split_by_sequence
from .h36m import TEST_SUBJECTS, TRAIN_SUBJECTS, load_h36m
from .loader import EpochSampler, TensorBatches
from .poseset import DataError, PoseSet
from .synthetic import generate

__all__ = [
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
