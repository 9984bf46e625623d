"""Exporting the estimator: ONNX (run in onnxruntime) and TorchScript agree with PyTorch."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from helpers import cli
from poseaug_pl.export import export_onnx
from poseaug_pl.inference.lifter import load_estimator
from poseaug_pl.models.registry import build
from poseaug_pl.utils import CONFIG_DIR

ort = pytest.importorskip("onnxruntime")

ATOL_M = 1e-4  # metres


@pytest.fixture(scope="module")
def onnx_file(tiny_ckpt, tmp_path_factory):
    """The tiny checkpoint's estimator exported by the command, as a user runs it."""
    path = tmp_path_factory.mktemp("onnx") / "estimator.onnx"
    r = cli("export", f"ckpt_path={tiny_ckpt}", "format=onnx", f"output={path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "input 'pose2d' (B, 16, 2)" in r.stdout
    return path


def test_onnx_export_runs_in_onnxruntime_with_any_batch_size(tiny_ckpt, onnx_file):
    path = onnx_file
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["pose2d"]
    assert [o.name for o in session.get_outputs()] == ["pose3d"]
    estimator = load_estimator(tiny_ckpt)
    for batch in (1, 33):
        x = torch.randn(batch, 16, 2) * 0.3
        (got,) = session.run(None, {"pose2d": x.numpy()})
        assert got.shape == (batch, 16, 3)
        np.testing.assert_allclose(got, estimator(x).detach().numpy(), atol=ATOL_M, rtol=0)


def test_torchscript_export_loads_without_the_package(tiny_ckpt, tmp_path):
    path = tmp_path / "estimator.pt"
    r = cli("export", f"ckpt_path={tiny_ckpt}", "format=torchscript", f"output={path}")
    assert r.returncode == 0, r.stderr[-2000:]
    x = torch.randn(5, 16, 2) * 0.3
    torch.testing.assert_close(torch.jit.load(str(path))(x), load_estimator(tiny_ckpt)(x))


@pytest.mark.parametrize("kind", ["simplebaseline", "semgcn", "stgcn"])
def test_the_other_estimators_export_to_onnx(kind, tmp_path):
    cfg = OmegaConf.load(CONFIG_DIR / "model" / "estimator" / f"{kind}.yaml")
    for key in ("channels", "hidden"):
        if key in cfg:
            cfg[key] = 32
    estimator = build("estimator", OmegaConf.to_container(cfg)).eval()
    export_onnx(estimator, tmp_path / "e.onnx")
    x = torch.randn(4, 16, 2) * 0.3
    (got,) = ort.InferenceSession(str(tmp_path / "e.onnx")).run(None, {"pose2d": x.numpy()})
    np.testing.assert_allclose(got, estimator(x).detach().numpy(), atol=ATOL_M, rtol=0)


def test_export_refuses_bad_requests_in_one_line(tiny_ckpt, tmp_path):
    for args, message in (
        ([f"ckpt_path={tiny_ckpt}", "format=tflite", f"output={tmp_path / 'x'}"],
         "format must be one of onnx, torchscript"),
        (["ckpt_path=nothere.ckpt", f"output={tmp_path / 'x.onnx'}"], "checkpoint not found"),
    ):  # fmt: skip
        r = cli("export", *args)
        assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and message in r.stderr
    assert not list(tmp_path.iterdir())


def test_the_readmes_onnx_recipe_matches_the_lifter(tiny_ckpt, onnx_file, monkeypatch):
    """The user guide's 'without this package' snippet gives the Lifter's flip-averaged output."""
    from poseaug_pl import Lifter
    from poseaug_pl.utils import CONFIG_DIR

    readme = (CONFIG_DIR.parent / "docs" / "guide.md").read_text()
    block = next(b for b in readme.split("```python")[1:] if "onnxruntime as ort" in b)
    code = block.split("```")[0]
    monkeypatch.chdir(onnx_file.parent)
    pixels = np.random.default_rng(0).uniform(600, 1300, (6, 16, 2))
    scope = {"pose16_pixels": pixels}
    exec(code, scope)
    expect = Lifter.from_checkpoint(tiny_ckpt).lift(pixels, (1920, 1080), layout="poseaug16",
                                                    upright=False)  # (random poses)
    np.testing.assert_allclose(scope["pose3d"], expect, atol=ATOL_M, rtol=0)
