"""Checkpoints and run folders from others are data: networks are built by name, nothing they
hold is imported or called, and every refusal is one line naming the file.

Each payload would create a marker folder if the loader ran it; the tests check that the marker
never appears, the command exits non-zero with one ``error:`` line and writes nothing.
"""

import textwrap

import pytest
import torch
import yaml

from helpers import TINY, cli
from poseaug_pl import Lifter
from poseaug_pl.data import DataError, build_datamodule
from poseaug_pl.evaluate import run_experiment
from poseaug_pl.inference.lifter import load_estimator
from poseaug_pl.models.ckpt import load_module
from poseaug_pl.models.registry import SpecError, build, canonical_spec
from poseaug_pl.training.module import PoseAugModule


def crafted(src, dst, **hyper_parameters):
    """A copy of checkpoint ``src`` at ``dst`` with some hyper-parameters replaced."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"] = {**ckpt["hyper_parameters"], **hyper_parameters}
    torch.save(ckpt, dst)
    return dst


def one_error_line(r) -> str:
    """The single ``error:`` line of a failed command (and that it is the only stderr line)."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0, r.stdout[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    return lines[0]


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PAYLOAD_RAN"


@pytest.fixture
def callable_ckpt(tiny_ckpt, tmp_path, marker):
    """A checkpoint (plain strings only, so torch's safe loader reads it) whose estimator
    names ``os.makedirs`` with the marker as its argument, as a Hydra ``_target_``."""
    payload = {"_target_": "os.makedirs", "name": str(marker)}
    return crafted(tiny_ckpt, tmp_path / "evil.ckpt", estimator=payload)


def test_the_payload_is_live(marker):
    """What the loaders below refuse would run: Hydra calls a ``_target_`` (the marker appears)."""
    import hydra

    hydra.utils.instantiate({"_target_": "os.makedirs", "name": str(marker)})
    assert marker.exists()


# --- the registry -----------------------------------------------------------------------------


def test_networks_are_built_by_name_with_checked_plain_arguments():
    net = build("estimator", {"name": "videopose", "channels": 8, "blocks": 1})
    assert type(net).__name__ == "VideoPose" and net.expand[0].out_features == 8
    assert canonical_spec("augmentor", None) == {"name": "poseaug"}
    with pytest.raises(SpecError, match="unknown estimator 'resnet'.*known: videopose"):
        build("estimator", {"name": "resnet"})
    with pytest.raises(SpecError, match="takes no argument 'command'"):
        build("estimator", {"name": "videopose", "command": "rm -rf /"})
    with pytest.raises(SpecError, match="takes no argument 'self'"):
        build("estimator", {"name": "videopose", "self": 1})
    with pytest.raises(SpecError, match="must be plain data"):
        build("estimator", {"name": "videopose", "channels": object()})


def test_a_known_target_of_an_earlier_version_still_builds_any_other_is_refused(marker):
    old = {"_target_": "poseaug_pl.models.VideoPose", "channels": 8}
    assert canonical_spec("estimator", old) == {"name": "videopose", "channels": 8}
    with pytest.raises(SpecError, match="unknown estimator 'os.makedirs'"):
        build("estimator", {"_target_": "os.makedirs", "name": str(marker)})
    with pytest.raises(SpecError, match="unknown d3d 'poseaug_pl.models.VideoPose'"):
        build("d3d", old)  # a known class in the wrong role
    assert not marker.exists()


def test_checkpoints_store_names_not_import_paths(tiny_ckpt):
    hp = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    for role in ("estimator", "augmentor", "d3d", "d2d"):
        assert "name" in hp[role] and "_target_" not in hp[role]


def test_an_earlier_versions_checkpoint_still_loads(tiny_ckpt, tmp_path):
    hp = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]

    def old(role, target):  # the spec as versions before names wrote it
        return {"_target_": target, **{k: v for k, v in hp[role].items() if k != "name"}}

    path = crafted(tiny_ckpt, tmp_path / "old.ckpt",
                   estimator=old("estimator", "poseaug_pl.models.VideoPose"),
                   augmentor=old("augmentor", "poseaug_pl.models.Augmentor"))  # fmt: skip
    x = torch.randn(5, 16, 2) * 0.3
    torch.testing.assert_close(load_estimator(path)(x), load_estimator(tiny_ckpt)(x))
    assert load_module(path).hparams.estimator["name"] == "videopose"


def test_a_checkpoint_with_retired_and_moved_arguments_loads_as_todays_design(
    tiny_ckpt, tmp_path, caplog
):
    """Checkpoints written before 2026-12-05 carry arguments that were retired or moved
    (docs/experiments/2026-12-05-retired-options.md); they load, the moved ones in their new
    place, a retired one at another value than today's with a warning."""
    hp = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    old = {k: v for k, v in hp.items() if k != "hard_ratio"}
    old |= {"hard_ratio": {"start": 1.5, "end": 2.5}, "ba_half_width": 0.5,
            "rt_ratio": {"centre": 2.0, "half_width": 1.0}, "feedback_mode": "train",
            "aug_norm": "running", "aug_batch": "rebatch", "bone_jitter": 0.0,
            "view_diversity_cap": 90.0, "estimator_ckpt": "/nowhere/base.ckpt",
            "augmentor_ckpt": None, "on_collapse": "warn", "max_epochs": 7}  # fmt: skip
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"] = old
    torch.save(ckpt, tmp_path / "old.ckpt")
    model = load_module(tmp_path / "old.ckpt")
    assert model.hparams.hard_ratio == {"start": 1.5, "end": 2.5, "ba_half_width": 0.5,
                                        "rt_centre": 2.0, "rt_half_width": 1.0}  # fmt: skip
    assert "aug_norm" not in model.hparams and "max_epochs" not in model.hparams
    assert "retired option aug_norm" in caplog.text  # another value than today's
    assert "feedback_mode" not in caplog.text  # today's value: nothing to say
    x = torch.randn(5, 16, 2) * 0.3
    torch.testing.assert_close(load_estimator(tmp_path / "old.ckpt")(x),
                               load_estimator(tiny_ckpt)(x))  # fmt: skip


# --- checkpoints naming code --------------------------------------------------------------------


def test_every_loader_refuses_a_checkpoint_that_names_a_callable(callable_ckpt, marker):
    for load in (load_estimator, Lifter.from_checkpoint, load_module,
                 PoseAugModule.load_from_checkpoint):  # fmt: skip
        with pytest.raises(DataError, match=r"evil\.ckpt: unknown estimator 'os\.makedirs'"):
            load(callable_ckpt)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["predict", "export", "evaluate"])
def test_commands_refuse_a_checkpoint_that_names_a_callable(command, callable_ckpt, marker,
                                                            tmp_path):  # fmt: skip
    keypoints = tmp_path / "kp.npy"
    keypoints.write_bytes(b"")  # never read: the checkpoint is refused first or the file is
    out = tmp_path / "out"
    args = {
        "predict": ["input=" + str(keypoints), f"output={out}.npz", "image_width=100",
                    "image_height=100"],
        "export": ["format=torchscript", f"output={out}.pt"],
        "evaluate": ["data=synthetic", *TINY[:4], f"hydra.run.dir={out}"],
    }[command]  # fmt: skip
    line = one_error_line(cli(command, f"ckpt_path={callable_ckpt}", *args))
    if command != "predict":  # (predict reads its input first: an empty file is refused)
        assert "evil.ckpt" in line and "os.makedirs" in line
    assert not marker.exists()
    assert not list(tmp_path.glob("out*")) or not any((tmp_path / "out").rglob("metrics.json"))


def test_lightnings_instantiator_hook_is_never_imported(tiny_ckpt, tmp_path, monkeypatch):
    """Lightning's own ``load_from_checkpoint`` would import and call a ``_instantiator`` path
    stored in the checkpoint (2.6 checks it against an allowlist first); ours refuses every
    ``_``-prefixed hyper-parameter before anything is imported."""
    marker = tmp_path / "IMPORTED"
    (tmp_path / "payload_mod.py").write_text(f"import os\nos.makedirs({str(marker)!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = crafted(tiny_ckpt, tmp_path / "inst.ckpt", _instantiator="payload_mod.build")
    for load in (load_module, PoseAugModule.load_from_checkpoint):
        with pytest.raises(DataError, match=r"inst\.ckpt: refused hyper-parameter '_instantiator'"):
            load(path)
    assert not marker.exists()
    r = cli("evaluate", f"ckpt_path={path}", "data=synthetic", *TINY[:4],
            f"hydra.run.dir={tmp_path / 'ev'}", cwd=tmp_path)  # fmt: skip
    assert "_instantiator" in one_error_line(r)
    assert not marker.exists()


# --- run folders ----------------------------------------------------------------------------------


def run_folder(tmp_path, tiny_ckpt, data: dict, **top) -> str:
    """A run folder holding ``tiny_ckpt`` and a saved config with ``data`` (and ``top``)."""
    run = tmp_path / "shared_run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    (run / "config_resolved.yaml").write_text(yaml.safe_dump({**top, "data": data}))
    return str(ckpt)


def test_evaluate_builds_a_run_folders_data_only_from_the_packages_datamodules(
    tiny_ckpt, tmp_path, marker
):
    ckpt = run_folder(tmp_path, tiny_ckpt, {"_target_": "os.makedirs", "name": str(marker)})
    line = one_error_line(cli("evaluate", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'e'}"))
    assert "config_resolved.yaml: unknown datamodule 'os.makedirs'" in line
    assert not marker.exists() and not (tmp_path / "e" / "metrics.json").exists()


def test_a_run_folders_config_may_hold_no_interpolation(tiny_ckpt, tmp_path):
    data = {"_target_": "poseaug_pl.data.SyntheticDataModule", "frames": "${oc.env:HOME}"}
    ckpt = run_folder(tmp_path, tiny_ckpt, data)
    line = one_error_line(cli("evaluate", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'e'}"))
    assert "interpolation" in line


def test_a_run_folders_unknown_data_argument_is_refused(tiny_ckpt, tmp_path):
    data = {"_target_": "poseaug_pl.data.SyntheticDataModule", "_recursive_": True}
    with pytest.raises(DataError, match=r"run\.yaml: SyntheticDataModule takes no argument"):
        build_datamodule(data, "run.yaml")


def test_a_run_folders_experiment_name_cannot_steer_outputs_elsewhere(tiny_ckpt, tmp_path):
    data = {"_target_": "poseaug_pl.data.SyntheticDataModule"}
    for name, folder in (("../../escaped", "default"), ("/etc", "default"),
                         ("poseaug_h36m", "poseaug_h36m")):  # fmt: skip
        ckpt = run_folder(tmp_path / name.replace("/", "_"), tiny_ckpt, data, experiment_name=name)
        assert run_experiment(ckpt) == folder


def test_evaluate_ignores_a_run_folders_cache_dir(tiny_ckpt, tmp_path):
    """A run folder does not say where evaluate writes: its data.cache_dir is dropped."""
    from poseaug_pl.evaluate import data_config

    data = {"_target_": "poseaug_pl.data.H36MDataModule", "root": "h36m",
            "cache_dir": str(tmp_path / "elsewhere")}  # fmt: skip
    ckpt = run_folder(tmp_path, tiny_ckpt, data)
    cfg = yaml.safe_load(textwrap.dedent(f"ckpt_path: {ckpt}\ndata_from_run: true\n"))
    from omegaconf import OmegaConf

    assert data_config(OmegaConf.create(cfg)).cache_dir is None


# --- checkpoints that do not fit ----------------------------------------------------------------


def test_an_estimator_ckpt_of_another_width_names_both_widths(tiny_ckpt, tmp_path):
    r = cli("train", *TINY, "augment=false", "test=false", "model.estimator.channels=48",
            f"model.estimator_ckpt={tiny_ckpt}", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    line = one_error_line(r)
    assert "channels=32" in line and "channels=48" in line
    assert "add model.estimator.channels=32" in line  # the override that fits
    assert str(tiny_ckpt) in line
    assert not (tmp_path / "run" / "config_resolved.yaml").exists()  # refused before any output


def test_missing_weights_are_named_in_one_line(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    gone = [k for k in ckpt["state_dict"] if k.startswith("estimator.")][:4]
    for k in gone:
        del ckpt["state_dict"][k]
    torch.save(ckpt, tmp_path / "holes.ckpt")
    with pytest.raises(DataError, match=r"holes\.ckpt: .*lacks 4 of this model's weights, e\.g\."):
        load_estimator(tmp_path / "holes.ckpt")
    r = cli("export", f"ckpt_path={tmp_path / 'holes.ckpt'}", "format=torchscript",
            f"output={tmp_path / 'e.pt'}")  # fmt: skip
    assert "lacks 4" in one_error_line(r) and not (tmp_path / "e.pt").exists()
    r = cli("evaluate", f"ckpt_path={tmp_path / 'holes.ckpt'}", "data=synthetic", *TINY[:4],
            f"hydra.run.dir={tmp_path / 'ev'}")  # fmt: skip
    assert "lacks 4" in one_error_line(r)
    r = cli(
        "train",
        *TINY,
        "augment=false",
        "test=false",
        "trainer.max_epochs=3",
        f"ckpt_path={tmp_path / 'holes.ckpt'}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
    )
    assert "lacks 4" in one_error_line(r)


# --- files that would cost memory or time --------------------------------------------------------


def test_a_checkpoints_sizes_allocate_nothing_before_its_weights_match(tiny_ckpt, tmp_path):
    """Networks are first built on the meta device and checked against the file's weights, so
    a checkpoint cannot make loading allocate more than it holds; counts are capped."""
    import time

    hp = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    for args, message in (({"channels": 4096}, r"\(32, 32\) there and \(4096, 32\) here"),
                          ({"blocks": 10**9}, "'blocks' is 1000000000, above 8192")):  # fmt: skip
        path = crafted(tiny_ckpt, tmp_path / "big.ckpt", estimator={**hp["estimator"], **args})
        for load in (load_estimator, load_module):
            t0 = time.perf_counter()
            with pytest.raises(DataError, match=message):
                load(path)
            assert time.perf_counter() - t0 < 10
    huge_pools = crafted(tiny_ckpt, tmp_path / "pools.ckpt", pool_size=10**10)
    assert load_module(huge_pools).pool3d.items.shape[0] == hp["pool_size"]  # what it holds


def test_a_run_config_with_yaml_aliases_or_of_any_size_is_refused_at_once(tiny_ckpt, tmp_path):
    import time

    from poseaug_pl.evaluate import run_config
    from poseaug_pl.training.config import ConfigError

    ckpt = run_folder(tmp_path, tiny_ckpt, {"_target_": "poseaug_pl.data.SyntheticDataModule"})
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    config = tmp_path / "shared_run" / "config_resolved.yaml"
    config.write_text("\n".join(bomb) + "\ndata: {frames: *a8}\n")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors or aliases"):
        run_config(ckpt)
    assert time.perf_counter() - t0 < 5
    assert run_experiment(ckpt) == "default"
    config.write_text("data: {}\n" + "#" * (2 << 20))
    with pytest.raises(ConfigError, match="not a run config"):
        run_config(ckpt)


def test_a_run_folders_cross_sets_must_be_paths():
    data = {"_target_": "poseaug_pl.data.SyntheticDataModule",
            "cross_sets": {"x": {"_target_": "os.makedirs"}}}  # fmt: skip
    with pytest.raises(DataError, match=r"run\.yaml: data\.cross_sets must map names to file"):
        build_datamodule(data, "run.yaml")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_predict_on_cuda_without_a_gpu_is_one_line(tiny_ckpt, tmp_path):
    from poseaug_pl.inference.lifter import resolve_device

    with pytest.raises(DataError, match="device=cuda but no GPU is visible.*device=cpu"):
        resolve_device("cuda")
    with pytest.raises(DataError, match="is not a device"):
        resolve_device("gpu7")


def test_a_checkpoint_with_non_finite_weights_is_refused(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.startswith("estimator.") and "weight" in k)
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    torch.save(ckpt, tmp_path / "nan.ckpt")
    with pytest.raises(DataError, match=r"nan\.ckpt: .*holds NaN or inf"):
        load_estimator(tmp_path / "nan.ckpt")


def test_a_resume_state_of_the_wrong_kind_is_refused(tiny_ckpt):
    from poseaug_pl.train import check_resumable

    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    check_resumable(ckpt, tiny_ckpt)
    for key, value in (("loops", "garbage"), ("augmentor_steps", "abc"), ("rng_cpu", [1])):
        with pytest.raises(DataError, match=f"its {key} is not of the right kind"):
            check_resumable({**ckpt, key: value}, "x.ckpt")
