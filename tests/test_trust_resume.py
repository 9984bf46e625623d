"""Specification: a checkpoint is data, a resume reads nothing outside the run, an exploding run
is a diverged run, and settings that cannot work are refused at start-up in one line."""

import hashlib
import os
import re
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers import TINY, cli, tiny_cfg
from poseaug_pl.data import DataError
from poseaug_pl.train import build_model, check_checkpoints, train
from poseaug_pl.training.config import (
    ConfigError,
    TrainingDiverged,
    check_devices,
    check_warmup_steps,
)

#: A tiny baseline (the fastest real run); its checkpoints are what the tests start from.
BASE = [*TINY, "augment=false", "test=false"]


def _run(folder, *overrides):
    """``python -m poseaug_pl.train`` of `BASE` into ``folder``; the completed process."""
    return cli("train", *BASE, f"hydra.run.dir={folder}", *overrides)


def _fingerprint(path):
    """What must not change about a file: its bytes and its modification time."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _error_lines(r):
    lines = r.stderr.strip().splitlines()
    return [line for line in lines if line.startswith(("error", "Traceback"))]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A real tiny run of one epoch: ``{dir, last, best}``."""
    run = tmp_path_factory.mktemp("source")
    r = _run(run, "trainer.max_epochs=1")
    assert r.returncode == 0, r.stderr[-2000:]
    return {
        "dir": run,
        "last": run / "checkpoints/last.ckpt",
        "best": run / "checkpoints/best.ckpt",
    }


def _copy_run(src, dst):
    """A copy of a run's checkpoint folder (every test gets its own, untouched source)."""
    (dst / "checkpoints").mkdir(parents=True)
    for f in ("last.ckpt", "best.ckpt"):
        (dst / "checkpoints" / f).write_bytes((src["dir"] / "checkpoints" / f).read_bytes())
    return dst


@pytest.fixture
def outside(tmp_path, source):
    """Files outside any run that a crafted checkpoint names: ``{name: path}``."""
    out = tmp_path / "elsewhere"
    out.mkdir()
    files = {
        "secret": out / "secret.txt",
        "ckpt": out / "outside.ckpt",  # a real checkpoint file, just not in the run
        "victim": out / "victim.ckpt",  # reached by ".." from inside the run folder
        "linked": out / "linked.ckpt",  # the target of a symlink inside the run folder
    }
    files["secret"].write_text("do not copy me\n")
    for key in ("ckpt", "victim", "linked"):
        files[key].write_bytes(source["best"].read_bytes())
    return files


def _craft(run, outside, keep_best: bool):
    """``run/checkpoints/crafted.ckpt``: the run's ``last.ckpt`` whose checkpoint callbacks'
    state names the ``outside`` files: directly, by ``..`` from inside the run (``climb``) and
    through a symlink ``run/checkpoints/link.ckpt`` pointing out. Lightning would delete
    ``climb`` as the best callback's k-th best once a better epoch comes, and as the last
    callback's previous file at its first save. ``keep_best``: the best callback's
    ``best_model_path`` stays the run's own ``best.ckpt`` (a legitimate file to carry over)."""
    ckpts = run / "checkpoints"
    os.symlink(outside["linked"], ckpts / "link.ckpt")
    ckpt = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    climb = str(ckpts / ".." / ".." / "elsewhere" / "victim.ckpt")  # inside by its parents
    names = [str(outside["secret"]), str(outside["ckpt"]), str(ckpts / "link.ckpt")]
    for key, state in ckpt["callbacks"].items():
        if not key.startswith("ModelCheckpoint"):
            continue
        state["dirpath"] = str(ckpts)  # as if written here (Lightning then trusts every path)
        state["last_model_path"] = str(outside["ckpt"])
        if state["monitor"] is None:  # the last.ckpt callback deletes its previous "best" file
            state["best_model_path"] = climb
            state["best_k_models"] = {n: torch.tensor(1.0) for n in names}
        elif keep_best:
            own = str(ckpts / "best.ckpt")
            state["best_k_models"] = {**{n: torch.tensor(1.0) for n in names},
                                      own: state["best_model_score"]}  # fmt: skip
            state["best_model_path"] = state["kth_best_model_path"] = own
        else:
            state["best_k_models"] = {climb: torch.tensor(1e9)}  # any epoch displaces it
            state["kth_best_model_path"], state["kth_value"] = climb, torch.tensor(1e9)
            state["best_model_path"] = str(outside["secret"])
            state["best_model_score"] = torch.tensor(1e9)
    torch.save(ckpt, ckpts / "crafted.ckpt")
    return ckpts / "crafted.ckpt"


def _assert_untouched(outside, before, *runs):
    for key, path in outside.items():
        assert path.is_file() and _fingerprint(path) == before[key], key  # not deleted, not written
    secret = outside["secret"].read_bytes()
    for run in runs:
        for f in run.rglob("*"):
            assert f.name not in ("secret.txt", "outside.ckpt", "victim.ckpt", "linked.ckpt"), f
            assert not f.is_file() or f.read_bytes() != secret, f


# --- resume reads nothing outside the run -------------------------------------------------------


@pytest.mark.parametrize("keep_best", [False, True], ids=["outside-best", "own-best"])
def test_a_crafted_checkpoint_copies_and_deletes_nothing_outside_the_run(
    tmp_path, source, outside, keep_best
):
    run = _copy_run(source, tmp_path / "run")
    crafted = _craft(run, outside, keep_best)
    before = {k: _fingerprint(p) for k, p in outside.items()}
    new = tmp_path / "new"
    r = _run(new, "trainer.max_epochs=2", f"ckpt_path={crafted}")  # into another folder
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_untouched(outside, before, new)
    assert not (new / "checkpoints" / "link.ckpt").exists()  # the link out is not followed
    inside = {p: _fingerprint(p) for p in run.rglob("*") if p.is_file() and not p.is_symlink()}
    r = _run(run, "trainer.max_epochs=2", f"ckpt_path={crafted}")  # into its own folder
    assert r.returncode == 2 and _error_lines(r) == [_error_lines(r)[0]], r.stderr[-3000:]
    assert "holds symbolic links (checkpoints/link.ckpt)" in r.stderr  # refused, not followed
    _assert_untouched(outside, before, new, run)
    assert os.path.islink(run / "checkpoints" / "link.ckpt")  # left alone, like its target
    assert {p: _fingerprint(p) for p in run.rglob("*")
            if p.is_file() and not p.is_symlink()} == inside  # nothing written in the run


class RestoredState(L.Callback):
    """Records the checkpoint callbacks' restored state when training starts."""

    def on_train_start(self, trainer, pl_module):
        self.states = [dict(c.state_dict()) for c in trainer.checkpoint_callbacks]
        self.dirpath = trainer.checkpoint_callback.dirpath
        self.files = {f.name: f.read_bytes() for f in Path(self.dirpath).iterdir()}


def test_the_runs_own_best_checkpoint_still_carries_over(tmp_path, source, outside):
    """Of the crafted paths, only the run's own ``best.ckpt`` survives: copied into the new
    folder with its score, every restored path inside the new folder."""
    run = _copy_run(source, tmp_path / "run")
    crafted = _craft(run, outside, keep_best=True)
    before = {k: _fingerprint(p) for k, p in outside.items()}
    new, spy = tmp_path / "new", RestoredState()
    train(tiny_cfg(new, *BASE[len(TINY):], "trainer.max_epochs=2", f"ckpt_path={crafted}"),
          extra_callbacks=[spy])  # fmt: skip
    best_state, last_state = spy.states
    here = str(new / "checkpoints" / "best.ckpt")
    assert best_state["best_model_path"] == here
    assert list(best_state["best_k_models"]) == [here] == [best_state["kth_best_model_path"]]
    src_score = torch.load(source["last"], weights_only=True)["callbacks"]
    src_score = next(v["best_model_score"] for v in src_score.values() if v["monitor"])
    assert float(best_state["best_model_score"]) == float(src_score)
    assert best_state["last_model_path"] == last_state["last_model_path"] == ""
    assert last_state["best_model_path"] == "" and last_state["best_k_models"] == {}
    assert spy.dirpath == str(new / "checkpoints")
    assert spy.files == {"best.ckpt": source["best"].read_bytes()}  # carried, nothing else
    _assert_untouched(outside, before, new)


def test_nothing_is_carried_without_knowing_the_resumed_checkpoint(tmp_path):
    from poseaug_pl.training.resume import RunCheckpoint

    old = tmp_path / "old"
    old.mkdir()
    (old / "best.ckpt").write_bytes(b"weights")
    best = str(old / "best.ckpt")
    ours = RunCheckpoint(dirpath=tmp_path / "new", monitor="val/mpjpe")
    ours.load_state_dict({"monitor": "val/mpjpe", "best_model_score": torch.tensor(1.0),
                          "dirpath": str(old), "best_model_path": best,
                          "best_k_models": {best: torch.tensor(1.0)},
                          "kth_best_model_path": best, "kth_value": torch.tensor(1.0),
                          "last_model_path": best})  # fmt: skip
    assert ours.best_model_path == ours.kth_best_model_path == ours.last_model_path == ""
    assert ours.best_k_models == {} and ours.best_model_score is None
    assert not (tmp_path / "new").exists()


# --- explosion is divergence ---------------------------------------------------------------------


def _sane(path):
    """The checkpoint loads and its weights are finite and below 1e3 in size."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    for name, w in state.items():
        if w.is_floating_point():
            assert torch.isfinite(w).all() and w.abs().max() < 1e3, name


def test_an_exploding_run_stops_with_one_line_and_saves_nothing_of_it(tmp_path):
    r = _run(tmp_path, "model.lr.estimator=1e3")
    errors = _error_lines(r)
    assert r.returncode == 1, r.stderr[-2000:]
    assert len(errors) == 1 and errors == r.stderr.strip().splitlines()[-1:], r.stderr[-2000:]
    assert re.match(r"error: training diverged: the estimator loss became [0-9.e+]+ at step \d+ "
                    r"\(a stepped loss above 1e6 or NaN/inf, or a validation MPJPE above 10 m, "
                    r"is divergence\)", errors[0]), errors[0]  # fmt: skip
    for ckpt in tmp_path.rglob("*.ckpt"):
        _sane(ckpt)


def test_an_explosion_after_a_good_epoch_keeps_that_epochs_checkpoints(tmp_path, source):
    """Epoch 0 trains well; epoch 1 (resumed at lr 1e3) explodes: exit 1, and ``best.ckpt`` and
    ``last.ckpt`` are still epoch 0's, byte for byte."""
    from omegaconf import OmegaConf

    run = _copy_run(source, tmp_path / "run")
    config = OmegaConf.load(source["dir"] / "config_resolved.yaml")
    config.model.lr.estimator = 1e3  # a resume trains as its run's config says
    OmegaConf.save(config, run / "config_resolved.yaml")
    before = {f: _fingerprint(run / "checkpoints" / f) for f in ("best.ckpt", "last.ckpt")}
    r = _run(run, "trainer.max_epochs=2", f"ckpt_path={run / 'checkpoints/last.ckpt'}")
    assert r.returncode == 1, r.stderr[-2000:]
    assert len(_error_lines(r)) == 1 and "training diverged" in r.stderr, r.stderr[-2000:]
    for f, fingerprint in before.items():
        assert _fingerprint(run / "checkpoints" / f) == fingerprint, f
        _sane(run / "checkpoints" / f)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


class BlowUpBeforeValidation(L.Callback):
    """At the last batch of epoch ``epoch``, after its losses were computed, scale the
    estimator's output layer by 1e5: finite weights, finite losses, an absurd validation."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx + 1 == trainer.num_training_batches:
            last = [m for m in pl_module.estimator.modules() if hasattr(m, "weight")][-1]
            with torch.no_grad():
                for p in last.parameters():
                    p.mul_(1e5)


def test_an_absurd_validation_blocks_that_epochs_checkpoints(tmp_path):
    """A validation MPJPE above 10 m stops the run before ``best.ckpt`` or ``last.ckpt`` of
    that epoch is written; epoch 0's stay."""
    with pytest.raises(TrainingDiverged, match=r"the validation MPJPE became [0-9.e+]+ mm"):
        train(tiny_cfg(tmp_path, *BASE[len(TINY) :]), extra_callbacks=[BlowUpBeforeValidation(1)])
    for f in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(tmp_path / "checkpoints" / f, map_location="cpu", weights_only=True)
        assert ckpt["epoch"] == 0, f
        _sane(tmp_path / "checkpoints" / f)


def test_the_rule_large_losses_and_validation_errors(tmp_path):
    model = build_model(tiny_cfg(tmp_path))
    model._watch("estimator", torch.tensor(9.9e5))  # large, but within the rule
    model._watch("augmentor", torch.tensor(-9.9e5))
    model._watch_validation(torch.tensor(9999.0, dtype=torch.float64))  # mm: under 10 m
    model.check_health()
    model._watch("d2d", torch.tensor(1.5e6))
    with pytest.raises(TrainingDiverged, match=r"the d2d loss became 1\.5e\+06 at step 0 \(a "
                       r"stepped loss above 1e6"):  # fmt: skip
        model.check_health()
    with pytest.raises(TrainingDiverged):
        model.on_save_checkpoint({})  # never a checkpoint of that state

    model = build_model(tiny_cfg(tmp_path))
    with pytest.raises(TrainingDiverged, match=r"the validation MPJPE became 1\.2e\+04 mm"):
        model._watch_validation(torch.tensor(12000.0, dtype=torch.float64))
    model = build_model(tiny_cfg(tmp_path))
    with pytest.raises(TrainingDiverged, match=r"the validation MPJPE became nan mm"):
        model._watch_validation(torch.tensor(float("nan")))


# --- start-up refusals ---------------------------------------------------------------------------


def test_a_warmup_longer_than_the_augmented_epochs_is_refused(tmp_path):
    r = cli("train", *TINY, "test=false", "model.warmup_steps=12", f"hydra.run.dir={tmp_path}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and _error_lines(r) == lines[-1:], r.stderr[-2000:]
    assert "model.warmup_steps=12 >= the 12 augmented training batches of this run " in lines[-1]
    assert not list(tmp_path.rglob("*.ckpt"))
    check_warmup_steps(11, 2, 6)  # the estimator trains at the last batch: allowed
    with pytest.raises(ConfigError, match="2 epochs x 6 batches before any real-data finish"):
        check_warmup_steps(12, 2, 6)
    check_warmup_steps(10**9, 2, float("inf"))  # an endless epoch: nothing to compare


def test_a_checkpoint_without_training_state_is_refused_before_training(tmp_path, source):
    ckpt = torch.load(source["last"], map_location="cpu", weights_only=True)
    weights = {k: v for k, v in ckpt.items() if k not in ("optimizer_states", "loops")}
    torch.save(weights, tmp_path / "weights.ckpt")
    torch.save({**ckpt, "optimizer_states": ckpt["optimizer_states"][:1]}, tmp_path / "one.ckpt")
    with pytest.raises(DataError, match="no optimizer states and no training-loop state"):
        check_checkpoints(tiny_cfg(tmp_path, f"ckpt_path={tmp_path / 'weights.ckpt'}"))
    with pytest.raises(DataError, match="holds 1 optimizer states, not the 4"):
        check_checkpoints(tiny_cfg(tmp_path, f"ckpt_path={tmp_path / 'one.ckpt'}"))
    check_checkpoints(tiny_cfg(tmp_path, f"model.estimator_ckpt={tmp_path / 'weights.ckpt'}"))
    r = _run(tmp_path / "run", f"ckpt_path={tmp_path / 'weights.ckpt'}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "ckpt_path cannot resume from this checkpoint" in lines[0]
    assert "model.estimator_ckpt=" in lines[0]  # how to use the weights instead


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_trainer_without_a_gpu_is_one_line(tmp_path):
    r = cli("train", *TINY, "trainer=gpu", f"hydra.run.dir={tmp_path}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "no GPU is visible" in lines[0] and "use trainer=cpu" in lines[0]
    for trainer in ("gpu", "ddp"):
        with pytest.raises(ConfigError, match="no GPU is visible"):
            check_devices(tiny_cfg(tmp_path, f"trainer={trainer}"))
    for trainer in ("cpu", "ddp_cpu"):
        check_devices(tiny_cfg(tmp_path, f"trainer={trainer}"))
