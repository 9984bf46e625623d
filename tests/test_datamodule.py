"""Specification of the tensor loader and the datamodules."""

import lightning as L
import numpy as np
import pytest
import torch

from poseaug_pl.data import (
    DataError,
    EpochSampler,
    H36MDataModule,
    SyntheticDataModule,
    TensorBatches,
)
from poseaug_pl.geometry import camera


def small_synthetic(**kw):
    args = dict(
        train_sequences=20,
        test_sequences=4,
        wild_sequences=4,
        frames=10,
        batch_size=64,
        eval_batch_size=100,
        val_fraction=0.1,
    )
    args.update(kw)
    return SyntheticDataModule(**args)


@pytest.fixture(scope="module")
def dm():
    d = small_synthetic()
    d.setup("fit")
    return d


def test_splits_and_validation_holds_out_whole_sequences(dm):
    assert len(dm.train_set) == 18 * 40 and len(dm.val_set) == 2 * 40
    assert not set(dm.val_set.sequence.tolist()) & set(dm.train_set.sequence.tolist())
    assert dm.test_names == ["synthetic", "synthetic_wild"]


def test_train_batches(dm):
    loader = dm.train_dataloader()
    assert loader is dm.train_dataloader()  # built once, not per epoch
    batches = list(loader)
    assert len(batches) == len(loader) == 720 // 64  # last incomplete batch dropped
    b = batches[0]
    assert b["pose3d"].shape == (64, 16, 3) and b["pose2d"].shape == (64, 16, 2)
    assert b["cam"].shape == (64, 9) and b["subject"].shape == (64,)
    torch.testing.assert_close(b["pose3d"], dm.train_set.pose3d[b["index"]])


def test_shuffle_changes_per_epoch_and_is_reproducible(dm):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    e0 = torch.cat([b["index"] for b in loader])
    loader.sampler.set_epoch(1)
    e1 = torch.cat([b["index"] for b in loader])
    loader.sampler.set_epoch(0)
    again = torch.cat([b["index"] for b in loader])
    assert not torch.equal(e0, e1) and torch.equal(e0, again)
    assert len(set(e0.tolist())) == len(e0)  # no repeats within an epoch


def test_eval_loaders_cover_every_row_in_order(dm):
    for loader, name in zip(dm.test_dataloader(), dm.test_names):
        idx = torch.cat([b["index"] for b in loader])
        assert torch.equal(idx, torch.arange(len(dm.test_sets[name])))


def test_ranks_get_disjoint_equal_shards():
    shards = [EpochSampler(103, True, seed=1, rank=r, world_size=2).indices() for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 51
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_evaluation_shards_cover_every_sample_once():
    shards = [EpochSampler(103, False, rank=r, world_size=2) for r in (0, 1)]
    assert [len(s) for s in shards] == [52, 51]
    idx = torch.cat([s.indices() for s in shards])
    assert sorted(idx.tolist()) == list(range(103))


def test_loader_refuses_ragged_tensors():
    with pytest.raises(ValueError, match="equal lengths"):
        TensorBatches({"a": torch.zeros(3), "b": torch.zeros(4)}, 2)


def test_cross_sets_join_the_test_sets(tmp_path):
    path, rng = tmp_path / "mini.npz", np.random.default_rng(0)
    np.savez(path, pose3d=rng.random((7, 16, 3)) + [0, 0, 4], pose2d=rng.random((7, 16, 2)))
    d = small_synthetic(cross_sets={"mini": str(path)})
    d.setup("test")
    assert d.test_names == ["synthetic", "synthetic_wild", "mini"]
    assert "cam" not in next(iter(d.test_dataloader()[2]))
    clash = small_synthetic(cross_sets={"synthetic": str(path)})
    with pytest.raises(DataError, match="clashes"):
        clash.setup("test")


def test_bone_templates_recover_the_subjects(dm):
    from poseaug_pl.data.synthetic import BONE_TEMPLATES

    expected = torch.tensor([BONE_TEMPLATES[s] for s in dm.train_set.subjects])
    torch.testing.assert_close(dm.train_bone_templates(), expected, atol=1e-5, rtol=0)


class _Recorder(L.LightningModule):
    """Records what Lightning feeds a module from the datamodule."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(32, 48)
        self.first_index, self.sizes = [], []

    def training_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.first_index.append(batch["index"][:8].clone())
        self.sizes.append(len(batch["pose2d"]))
        pred = self.layer(batch["pose2d"].flatten(1))
        return (pred - batch["pose3d"].flatten(1)).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_trains_from_the_datamodule_and_reshuffles_each_epoch(tmp_path):
    d = small_synthetic()
    model = _Recorder()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=d)
    assert len(model.sizes) == 2 * (720 // 64) and set(model.sizes) == {64}
    assert not torch.equal(model.first_index[0], model.first_index[1])


@pytest.mark.realdata
def test_h36m_datamodule_on_real_data(h36m, h36m_cache):
    d = H36MDataModule(root=str(h36m), stride=50, cache_dir=str(h36m_cache), batch_size=256)
    d.setup("fit")
    assert d.test_names == ["h36m", "synthetic_wild"]
    assert set(d.train_set.subjects[i] for i in d.train_set.subject.unique().tolist()) <= {
        "S1",
        "S5",
        "S6",
        "S7",
        "S8",
    }
    assert set(d.test_sets["h36m"].subject.unique().tolist()) == {5, 6}  # S9, S11
    assert len(d.val_set) > 0
    b = next(iter(d.train_dataloader()))
    assert b["pose2d"].shape == (256, 16, 2)


def test_raised_camera_adds_refilmed_copies_of_the_test_sets(tmp_path):
    from poseaug_pl.geometry.plausibility import camera_elevation_deg

    path = tmp_path / "mini.npz"  # a cross set without calibration: a pinhole is fitted
    x = torch.as_tensor(small_synthetic().load_splits()[1]["synthetic"].pose3d[:200])
    intr = torch.tensor([2.2, 2.2, 0.0, -0.2, 0, 0, 0, 0, 0])
    np.savez(path, pose3d=x.numpy(), pose2d=camera.project_to_2d(x, intr).numpy())
    d = small_synthetic(cross_sets={"mini": str(path)}, raised_camera=[20, 40])
    d.setup("test")
    assert d.test_names == [
        "synthetic", "synthetic_wild", "mini", "synthetic_raised", "mini_raised"
    ]  # fmt: skip
    for name in ("synthetic", "mini"):
        real, raised = d.test_sets[name], d.test_sets[name + "_raised"]
        a = real.pose3d[:, 8, 1:] - real.pose3d[:, 0, 1:]  # thorax - root in the y-z plane
        b = raised.pose3d[:, 8, 1:] - raised.pose3d[:, 0, 1:]
        turn = torch.rad2deg(torch.atan2(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], (a * b).sum(-1)))
        assert 20 - 1e-3 <= turn.min() and turn.max() <= 40 + 1e-3  # every row raised in range
        gain = camera_elevation_deg(raised.pose3d) - camera_elevation_deg(real.pose3d)
        assert 20 < gain.median() < 40  # seen from higher up
        torch.testing.assert_close(  # the same poses: root-relative shapes kept
            torch.cdist(raised.pose3d, raised.pose3d), torch.cdist(real.pose3d, real.pose3d)
        )
        assert torch.equal(raised.sequence, real.sequence)
    mini = d.test_sets["mini_raised"]  # projected with the fitted pinhole
    torch.testing.assert_close(
        mini.pose2d, camera.project_to_2d(mini.pose3d, intr), atol=1e-4, rtol=0
    )
    again = small_synthetic(cross_sets={"mini": str(path)}, raised_camera=[20, 40], seed=5)
    again.setup("test")  # the same raised cameras whatever the run's seed
    assert torch.equal(again.test_sets["mini_raised"].pose2d, mini.pose2d)


def test_sideways_footage_of_a_cross_set_is_turned_upright(tmp_path, caplog):
    """A sequence filmed with the camera rolled by 90 degrees is turned back (2D about the
    principal point, 3D about the optical axis); upright sequences are left as they are."""
    import logging

    x = torch.as_tensor(small_synthetic().load_splits()[1]["synthetic"].pose3d[:200])
    intr = torch.tensor([2.2, 2.2, 0.05, -0.2, 0, 0, 0, 0, 0])
    rolled = torch.stack([-x[..., 1], x[..., 0], x[..., 2]], -1)  # camera rolled: 90 degrees
    pose3d = torch.cat([x, rolled])
    path = tmp_path / "mix.npz"
    np.savez(path, pose3d=pose3d.numpy(), pose2d=camera.project_to_2d(pose3d, intr).numpy(),
             cam=intr.expand(2 * len(x), 9).numpy(), subject=np.array(["A", "B"]).repeat(len(x)))
    with caplog.at_level(logging.INFO):
        d = small_synthetic(cross_sets={"mix": str(path)})
        d.setup("test")
    mix = d.test_sets["mix"]
    assert "mix: B is filmed sideways or upside down: turned upright (-90 degrees" in caplog.text
    assert "mix: A" not in caplog.text
    torch.testing.assert_close(mix.pose3d, torch.cat([x, x]), atol=1e-5, rtol=0)
    torch.testing.assert_close(mix.pose2d, camera.project_to_2d(torch.cat([x, x]), intr),
                               atol=1e-5, rtol=0)  # fmt: skip
    given = small_synthetic(cross_sets={"mix": str(path)}, upright=False)
    given.setup("test")
    assert torch.equal(given.test_sets["mix"].pose3d, pose3d)


def test_a_root_centred_cross_set_gets_no_raised_copy(tmp_path, caplog):
    """SPIN's 3DHP file holds root-centred 3D: the camera's position is unknown, so it cannot be
    re-filmed; the other sets still are."""
    x = small_synthetic().load_splits()[1]["synthetic"].pose3d[:50]
    np.savez(tmp_path / "centred.npz", pose3d=(x - x[:, :1]).numpy(), pose2d=np.zeros((50, 16, 2)))
    d = small_synthetic(cross_sets={"centred": str(tmp_path / "centred.npz")},
                        raised_camera=[20, 40])  # fmt: skip
    d.setup("test")
    assert "synthetic_raised" in d.test_names and "centred_raised" not in d.test_names
    assert "centred: root-centred 3D" in caplog.text


@pytest.mark.parametrize("bad", [[40, 20], [0, 90], [10]])
def test_raised_camera_refuses_a_bad_range(bad):
    with pytest.raises(ValueError, match="raised_camera"):
        small_synthetic(raised_camera=bad)
