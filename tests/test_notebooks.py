"""The notebooks run top to bottom on the outputs of a (tiny) baseline, Variant A and PoseAug."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import tiny_cfg
from poseaug_pl.train import train

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: The runs `make demo` writes under outputs/demo, with their experiment switches.
DEMO_RUNS = {"baseline": ["augment=false"], "variant_a": ["feedback=false"], "poseaug": []}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A folder laid out like ``outputs/demo`` after ``make demo``, from tiny trainings."""
    root = tmp_path_factory.mktemp("demo")
    for name, switches in DEMO_RUNS.items():
        train(tiny_cfg(root / name, "logger=csv", "trainer.log_every_n_steps=1", *switches))
    return root


def execute(name: str) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel from the notebooks folder; return it with outputs."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})  # fmt: skip
    client.execute()
    return nb


def images(nb) -> int:
    """Number of PNG images among the notebook's outputs."""
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    return sum("image/png" in o.get("data", {}) for o in outputs)


def text(nb) -> str:
    """All stream output of the notebook."""
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


def test_augmentations_notebook(demo_dir, monkeypatch):
    monkeypatch.setenv("POSEAUG_DEMO_DIR", str(demo_dir))
    nb = execute("01_augmentations.ipynb")
    assert images(nb) >= 3  # Fig. S2, parameter histograms, depth / image position
    out = text(nb)
    assert "max |project(X') - x'|" in out and "angle_change_deg" in out


def test_compare_runs_notebook(demo_dir, monkeypatch):
    monkeypatch.setenv("POSEAUG_DEMO_DIR", str(demo_dir))
    nb = execute("02_compare_runs.ipynb")
    assert images(nb) >= 3  # bars per test set, per-joint errors, training curves
    out = text(nb)
    assert all(run in out for run in ("baseline", "Variant A", "PoseAug"))
    assert "%)" in out  # change against the baseline


def test_compare_runs_notebook_takes_relative_run_folders_from_the_repository(
    demo_dir, monkeypatch
):
    import os

    rel = {name: os.path.relpath(demo_dir / folder, NOTEBOOKS.parent)
           for name, folder in (("base", "baseline"), ("va", "variant_a"))}  # fmt: skip
    assert not Path(rel["base"]).is_absolute()
    monkeypatch.setenv("POSEAUG_RUNS", ",".join(f"{n}={p}" for n, p in rel.items()))
    out = text(execute("02_compare_runs.ipynb"))  # the kernel starts in notebooks/
    assert "base" in out and "va" in out


def test_augmentations_notebook_takes_a_relative_run_folder_from_the_repository(
    demo_dir, monkeypatch
):
    import os

    rel = os.path.relpath(demo_dir / "poseaug", NOTEBOOKS.parent)
    monkeypatch.delenv("POSEAUG_DEMO_DIR", raising=False)
    monkeypatch.setenv("POSEAUG_RUN", rel)
    out = text(execute("01_augmentations.ipynb"))  # the kernel starts in notebooks/
    assert f"run: {demo_dir / 'poseaug'}" in out


def test_epoch_offset_places_a_continuation_after_its_baseline(tiny_ckpt, tmp_path):
    from poseaug_pl.compare import epoch_offset

    run = tmp_path / "continuation"
    run.mkdir()
    (run / "config_resolved.yaml").write_text(f"model:\n  estimator_ckpt: {tiny_ckpt}\n")
    assert epoch_offset(run, tiny_ckpt.parents[2]) == 1  # the tiny baseline trained one epoch
    assert epoch_offset(run, run) == 0  # a checkpoint outside the named folder is not opened
    assert epoch_offset(tmp_path) == 0  # no config: a run from scratch
    (run / "config_resolved.yaml").write_text("model:\n  estimator_ckpt: ${oc.env:HOME}/x\n")
    with pytest.raises(ValueError, match="interpolation"):  # a run's config is data
        epoch_offset(run, "/")
    rel = tiny_ckpt.relative_to(tiny_ckpt.parents[2])  # a relative path: from the run's start
    (run / "config_resolved.yaml").write_text(f"model:\n  estimator_ckpt: {rel}\n")
    assert epoch_offset(run, tiny_ckpt.parents[2]) == 1


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
