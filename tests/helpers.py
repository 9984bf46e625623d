"""Shared test helpers: the tiny training configuration, composed through Hydra."""

import importlib.util
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from poseaug_pl.utils import CONFIG_DIR

#: Overrides that make a PoseAug training take a few seconds on a CPU.
TINY = [
    "data.train_sequences=6", "data.test_sequences=2", "data.wild_sequences=2", "data.frames=20",
    "data.batch_size=64", "data.val_fraction=0.2", "model.estimator.channels=32",
    "model.augmentor.hidden=32", "model.d3d.channels=32", "model.pool_size=128",
    "trainer.max_epochs=2", "model.warmup_epochs=1", "logger=none",
    "callbacks.progress_bar.refresh_rate=0", "trainer.enable_model_summary=false",
]  # fmt: skip


def tiny_cfg(out_dir, *overrides, name="train"):
    """The ``name`` config with `TINY`, writing into ``out_dir``, plus ``overrides``."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=[*TINY, f"paths.output_dir={out_dir}", *overrides])


#: `TINY` with the CSV log written at every step (for tests that read the log).
TINY_CSV = [*(a for a in TINY if a != "logger=none"), "trainer.log_every_n_steps=1"]


def cli(module, *args, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m poseaug_pl.<module> *args`` the way a user does; capture its output."""
    return subprocess.run([sys.executable, "-m", f"poseaug_pl.{module}", *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd)  # fmt: skip


#: The repository's ``scripts/`` folder.
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    """Import ``scripts/<name>.py`` (not a package module) and return it as a module."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
