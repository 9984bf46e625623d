"""``python -m poseaug_pl.export ckpt_path=CKPT format=onnx|torchscript output=PATH``.

Exports the checkpoint's estimator alone, in eval mode, with a dynamic batch dimension:
input ``pose2d`` (B, 16, 2) float32 in normalised screen coordinates (``x / w * 2 - [1, h / w]``,
PoseAug's 16-joint order), output ``pose3d`` (B, 16, 3) float32 root-relative camera-frame
metres. Flip test-time augmentation is not part of the exported graph (README, "Use a trained
model", shows it in a few lines of NumPy). ONNX needs the ``export`` extra
(``pip install poseaug-pl[export]``: onnx, onnxscript; onnxruntime to run it).
"""

from __future__ import annotations

import logging
import warnings

import torch
from omegaconf import DictConfig

from poseaug_pl.cli import entry_point
from poseaug_pl.geometry.skeleton import NUM_JOINTS
from poseaug_pl.inference.lifter import load_estimator
from poseaug_pl.training.config import ConfigError
from poseaug_pl.utils import atomic_output, check_writable

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
#: The oldest ONNX opset the exporter writes a PoseAug estimator in.
MIN_OPSET = 13


def export_onnx(estimator: torch.nn.Module, path, opset: int = 18) -> None:
    """Write ``estimator`` as ONNX (``torch.export``-based exporter, dynamic batch)."""
    try:
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ConfigError("format=onnx needs the onnx and onnxscript packages: "
                          "pip install 'poseaug-pl[export]'") from None  # fmt: skip
    example = torch.zeros(2, NUM_JOINTS, 2)
    for name in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import onnx

    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise ConfigError(f"config: opset must be an integer from {MIN_OPSET} to {latest} (the "
                          f"installed onnx's newest), got {opset!r}")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(estimator, (example,), str(path), input_names=["pose2d"],
                          output_names=["pose3d"], opset_version=opset, dynamo=True,
                          dynamic_shapes={"pose2d": {0: torch.export.Dim("batch")}},
                          verbose=False, external_data=False)  # fmt: skip
    written = {o.domain: o.version for o in onnx.load(str(path)).opset_import}.get("")
    if written != opset:
        raise ConfigError(f"config: the exporter wrote opset {written}, not the opset={opset} "
                          f"asked for; choose another opset (18 is the tested one)")  # fmt: skip


def export_torchscript(estimator: torch.nn.Module, path) -> None:
    """Write ``estimator`` as a traced TorchScript module (``torch.jit.load`` runs it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(estimator, torch.zeros(2, NUM_JOINTS, 2))
    with open(path, "wb") as f:  # a file object: a full disk surfaces as an OSError
        torch.jit.save(traced, f)


def export(cfg: DictConfig) -> str:
    """Run the command; returns the written path."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"config: format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    output = str(cfg.output) if cfg.output else None
    if not output:
        raise ConfigError("config: output=PATH is required")
    check_writable(output)  # before the export's work: a read-only folder fails at once
    estimator = load_estimator(cfg.ckpt_path, "cpu")
    with atomic_output(output) as tmp:
        if cfg.format == "onnx":
            export_onnx(estimator, tmp, cfg.opset)
        else:
            export_torchscript(estimator, tmp)
    params = sum(p.numel() for p in estimator.parameters())
    print(f"exported {type(estimator).__name__} ({params:,} parameters) as {cfg.format}: {output}")
    print("input 'pose2d' (B, 16, 2) float32, normalised x / w * 2 - [1, h / w]; "
          "output 'pose3d' (B, 16, 3) float32, root-relative metres")  # fmt: skip
    return output


main = entry_point("export", export)


if __name__ == "__main__":
    main()
