"""The command-line entry points, run the way a user runs them."""

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from poseaug_pl.data import H36MDataModule, SyntheticDataModule
from poseaug_pl.utils import CONFIG_DIR

TINY = [
    "data.train_sequences=10",
    "data.test_sequences=2",
    "data.wild_sequences=2",
    "data.frames=10",
]


def run(*args, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "poseaug_pl.prepare_data",
        *args,
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_prepare_data_prints_every_split_and_draws_figures(tmp_path):
    r = run(*TINY, f"figures={tmp_path / 'fig'}", "num_figure_poses=4", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("train", "val", "synthetic", "synthetic_wild"):
        assert f"\n{name} " in r.stdout
    pngs = sorted(p.name for p in (tmp_path / "fig").glob("*.png"))
    assert pngs == ["synthetic.png", "synthetic_wild.png", "train.png"]
    assert all((tmp_path / "fig" / p).stat().st_size > 10_000 for p in pngs)


def test_misspelt_override_fails_with_a_clear_message(tmp_path):
    r = run("data.batch_sise=3", tmp_path=tmp_path)
    assert r.returncode != 0 and "batch_sise" in r.stderr


def test_data_configs_compose_and_instantiate():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("prepare_data", overrides=TINY)
        assert isinstance(instantiate(cfg.data), SyntheticDataModule)
        cfg = compose(
            "prepare_data",
            overrides=[
                "data=h36m",
                "data.root=/x",
                "data.stride=10",
                "data.keypoints=sh_pt_mpii",
                "+data.cross_sets.a=/a.npz",
            ],
        )
        dm = instantiate(cfg.data)
        assert isinstance(dm, H36MDataModule)
        assert (dm.root, dm.stride, dm.keypoints, dm.cross_sets) == (
            "/x",
            10,
            "sh_pt_mpii",
            {"a": "/a.npz"},
        )


EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment):
    from poseaug_pl.training.config import validate

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "paths.output_dir=/tmp/x"])
    validate(cfg)
    assert cfg.experiment_name == experiment
    if "h36m" in experiment:
        assert cfg.data._target_.endswith("H36MDataModule")
    if experiment.startswith("variant_a"):
        assert cfg.feedback is False and cfg.augment is True
    if experiment.startswith("baseline"):
        assert cfg.augment is False
    # joint-definition jitter: on for the Human3.6M estimator's augmented pairs, never for the
    # real pairs of any experiment (a baseline or control stays plain training)
    pairs = cfg.model.definition_jitter.pairs
    if cfg.augment and cfg.model.train_estimator and "h36m" in experiment:
        assert pairs == "augmented"
    elif not cfg.augment or "synthetic" in experiment:
        assert pairs == "none"
    assert pairs != "all"
    # re-filming: the same pairs (the control stays plain training: its real pairs are as given)
    refilm = cfg.model.refilm.pairs
    assert refilm == ("augmented" if pairs == "augmented" else "none")


def _estimator_passes(experiment: str) -> int:
    """Passes over the training pairs the estimator makes in ``experiment``: one per epoch of
    plain training or real-data finish, two (augmented and real) per augmented epoch."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "paths.output_dir=/tmp/x"])
    epochs, finish = cfg.trainer.max_epochs, cfg.model.real_finish_epochs
    if not cfg.augment:
        return epochs
    return 2 * (epochs - finish - cfg.model.warmup_epochs) + finish


@pytest.mark.parametrize("run", ["variant_a_h36m_cpu", "poseaug_h36m_cpu"])
def test_cpu_protocol_continuations_have_the_controls_estimator_budget(run):
    assert _estimator_passes(run) == _estimator_passes("control_h36m_cpu") == 12


def test_cpu_protocol_drops_dropout_after_the_baseline_and_only_there():
    """Early dropout: the baseline learns with VideoPose's 0.25, the three equal-budget
    continuations without it; the paper-sized experiments keep 0.25 throughout."""

    def dropout(experiment):
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=[f"experiment={experiment}"]).model.estimator.dropout

    assert dropout("baseline_h36m_cpu") == 0.25
    for run in ("control_h36m_cpu", "variant_a_h36m_cpu", "poseaug_h36m_cpu"):
        assert dropout(run) == 0.0, run
    for run in ("baseline_h36m", "poseaug_h36m"):
        assert dropout(run) == 0.25, run


@pytest.mark.parametrize(
    "experiment", ["poseaug_synthetic", "poseaug_h36m_cpu", "variant_a_h36m_cpu"]
)
def test_cpu_sized_experiments_cap_the_feedback_bands_unless_a_recipe_is_named(experiment):
    def bands(*overrides):
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={experiment}", *overrides])
        m = cfg.model
        h = m.hard_ratio
        return cfg.recipe, h.start, h.end, h.ba_half_width, h.rt_centre

    assert bands() == ("capped", 1.5, 2.5, 0.5, 2.0)
    assert bands("recipe=released") == ("released", 3.0, 5.0, 2.0, 17.0)
    assert bands("recipe=paper")[:3] == ("paper", 2.0, 20.0)
    assert bands("recipe=capped", "model.hard_ratio.end=3") == ("capped", 1.5, 3.0, 0.5, 2.0)


def test_recipe_capped_caps_an_experiment_that_has_the_released_bands():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        released = compose("train", overrides=["experiment=poseaug_h36m"])
        capped = compose("train", overrides=["experiment=poseaug_h36m", "recipe=capped"])
    assert (
        released.recipe,
        released.model.hard_ratio.end,
        released.model.hard_ratio.rt_centre,
    ) == (
        "released",
        5.0,
        17.0,
    )
    assert (capped.recipe, capped.model.hard_ratio.end, capped.model.hard_ratio.rt_centre) == (
        "capped",
        2.5,
        2.0,
    )


OPTIONS = [("trainer", "cpu"), ("trainer", "gpu"), ("trainer", "ddp"), ("logger", "csv"),
           ("logger", "wandb"), ("logger", "tensorboard"), ("logger", "none"),
           ("recipe", "paper"), ("recipe", "released"), ("recipe", "capped")]  # fmt: skip


@pytest.mark.parametrize("group,option", OPTIONS)
def test_config_group_options_compose(group, option):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"{group}={option}", "paths.output_dir=/tmp/x"])
    if group == "recipe":
        assert cfg.recipe == option
        assert cfg.model.hard_ratio.end == {"paper": 20.0, "released": 5.0, "capped": 2.5}[option]
    if option == "ddp":
        assert cfg.trainer.strategy.find_unused_parameters is True


def test_compare_leaves_out_an_unfinished_run_with_a_warning(tmp_path, capsys):
    import json

    from poseaug_pl.compare import main

    m = {"synthetic": {"mpjpe": 50.0, "pa_mpjpe": 40.0, "pck": 90.0, "auc": 50.0, "frames": 10}}
    for name, mpjpe in (("control", 50.0), ("poseaug", 45.0)):
        (tmp_path / name).mkdir()
        m["synthetic"]["mpjpe"] = mpjpe
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    (tmp_path / "unfinished").mkdir()
    main([str(tmp_path / n) for n in ("control", "poseaug", "unfinished")]
         + ["--reference", str(tmp_path / "control")])  # fmt: skip
    out, err = capsys.readouterr()
    assert "unfinished" in err and "left out" in err
    assert "poseaug" in out and "-5.0, -10%" in out and "unfinished" not in out
    with pytest.raises(SystemExit, match="none of the runs has a metrics.json"):
        main([str(tmp_path / "unfinished")])
