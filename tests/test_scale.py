"""Specification of scale-out: DDP on two CPU processes, multirun sweeps, Optuna, SLURM."""

import csv
import json

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import TINY_CSV, cli
from poseaug_pl.compare import read_log
from poseaug_pl.sweep import objective
from poseaug_pl.training.module import PoseAugModule
from poseaug_pl.utils import CONFIG_DIR

NETWORKS = ("augmentor", "d3d", "d2d", "estimator")


def test_ddp_on_two_cpu_processes_keeps_ranks_identical(tmp_path):
    run = tmp_path / "ddp"
    r = cli("train", *TINY_CSV, "trainer=ddp_cpu", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    check = json.loads((run / "ddp_check.json").read_text())
    assert check["world_size"] == 2
    assert {n: check[n] for n in NETWORKS} == dict.fromkeys(NETWORKS, 0.0)
    assert (run / "metrics.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()

    # the logged validation MPJPE (reduced over both ranks' shards) equals one process
    # evaluating the same weights on the whole validation set
    logged = read_log(run, "val/mpjpe")[-1][2]
    model = PoseAugModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt",
                                               map_location="cpu")  # fmt: skip
    dm = instantiate(OmegaConf.load(run / "config_resolved.yaml").data)
    dm.setup("fit")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (single,) = trainer.validate(model, dataloaders=dm.val_dataloader(), verbose=False)
    assert single["val/mpjpe"] == pytest.approx(logged, rel=1e-5)


def test_multirun_over_the_hard_ratio_gives_each_job_its_folder_and_a_summary(tmp_path):
    sweep = tmp_path / "sweep"
    r = cli("train", "-m", *TINY_CSV, "model.hard_ratio.end=4.0,8.0", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert set(metrics) == {"synthetic", "synthetic_wild"}
    with (sweep / "sweep_summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["overrides"] for row in rows] == [
        "model.hard_ratio.end=4.0", "model.hard_ratio.end=8.0"
    ]  # fmt: skip
    assert all(float(row["synthetic_wild/mpjpe"]) > 0 for row in rows)
    assert rows[0]["cross_mpjpe"] == rows[0]["synthetic_wild/mpjpe"]
    assert "sweep summary (2 jobs" in r.stdout


def test_objective_is_the_cross_dataset_mean():
    metrics = {"h36m": {"mpjpe": 50.0}, "mpi_inf_3dhp": {"mpjpe": 80.0},
               "3dpw": {"mpjpe": 100.0}}  # fmt: skip
    assert objective(metrics, "cross_mpjpe") == 90.0
    assert objective(metrics, "h36m/mpjpe") == 50.0
    with pytest.raises(ValueError, match="optimized_metric"):
        objective(metrics, "mpjpe")


def test_optuna_sweep_runs_two_trials(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "optuna"
    r = cli("train", "-m", "hparams_search=hard_ratio_optuna", *TINY_CSV, "test_ckpt=last",
            "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
            f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    result = OmegaConf.load(sweep / "optimization_results.yaml")
    assert result.name == "optuna" and 2.0 <= result.best_params["model.hard_ratio.end"] <= 20.0
    best = min(json.loads((sweep / j / "metrics.json").read_text())["synthetic_wild"]["mpjpe"]
               for j in ("0", "1"))  # fmt: skip
    assert result.best_value == pytest.approx(best, rel=1e-6)


def test_slurm_launcher_config_ties_gpus_to_trainer_devices():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp",
                                          "trainer.devices=4", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == launcher.tasks_per_node == 4
    assert launcher.nodes == 1 and launcher.partition == "gpu"


def test_slurm_launcher_config_through_the_cli(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    r = cli("train", "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=2",
            "--cfg", "all", "--resolve", "-p", "hydra.launcher")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    launcher = OmegaConf.create(r.stdout)
    assert launcher.gpus_per_node == launcher.tasks_per_node == 2
    assert launcher.submitit_folder.endswith("/.submitit/%j") and launcher.nodes == 1
