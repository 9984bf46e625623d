"""Specification of the recipe's details (warm-up by steps, augmentor checkpoints, the feedback's
estimator, in-frame re-batching, discriminator init, bone swap, joint-definition jitter,
real-data finish, view diversity) and of the augmentation plausibility statistics."""

import math
import re

import lightning as L
import pytest
import torch
from torch import nn

from helpers import tiny_cfg
from poseaug_pl.evaluation.report import plausibility_table
from poseaug_pl.geometry import plausibility as pl
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.geometry.camera import project_to_2d
from poseaug_pl.geometry.rotation import axis_angle_to_matrix
from poseaug_pl.models import KCSDiscriminator, Pose2DDiscriminator
from poseaug_pl.train import build_model, train
from poseaug_pl.training.config import ConfigError, validate
from poseaug_pl.training.module import PoseAugModule
from poseaug_pl.training.pairs import PairTransforms
from test_training import Spy, run_with_spy


def _module(tmp_path, *overrides):
    """The tiny config's module, attached to a trainer of the config's epochs (its schedule
    reads them) that never runs."""
    cfg = tiny_cfg(tmp_path, *overrides)
    model = build_model(cfg)
    model.trainer = L.Trainer(max_epochs=cfg.trainer.max_epochs, logger=False,
                              enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
    return model


def _upright_pose() -> torch.Tensor:
    """(1, 16, 3) a standing person 4 m in front of a level camera (y down)."""
    p = torch.zeros(1, 16, 3)
    p[0, :, 2] = 4.0
    ys = {1: 0, 2: 0.45, 3: 0.9, 4: 0, 5: 0.45, 6: 0.9, 7: -0.25, 8: -0.5, 9: -0.7,
          10: -0.5, 11: -0.2, 12: 0.05, 13: -0.5, 14: -0.2, 15: 0.05}  # fmt: skip
    xs = {1: -0.13, 2: -0.13, 3: -0.13, 4: 0.13, 5: 0.13, 6: 0.13, 10: 0.18, 11: 0.2,
          12: 0.2, 13: -0.18, 14: -0.2, 15: -0.2}  # fmt: skip
    for j, y in ys.items():
        p[0, j, 1] = y
    for j, x in xs.items():
        p[0, j, 0] = x
    return p


def _project(p3):
    return p3[..., :2] / p3[..., 2:] * 2.0


# --- plausibility statistics ------------------------------------------------------------------


def test_an_upright_pose_is_upright_and_the_same_pose_upside_down_is_not():
    p3 = _upright_pose()
    assert pl.upright_share(_project(p3)) == 1.0
    root = p3[:, :1]
    flipped = (p3 - root) @ axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi]])).mT + root
    assert pl.spine_tilt_2d_deg(_project(flipped)).item() == pytest.approx(180.0, abs=1e-3)
    assert pl.upright_share(_project(flipped)) == 0.0
    lying = (p3 - root) @ axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]])).mT + root
    assert pl.upright_share(_project(lying)) == 0.0  # 90 degrees: on its side


def test_camera_elevation_sign_and_value():
    p3 = _upright_pose()
    assert pl.camera_elevation_deg(p3).item() == pytest.approx(0.0, abs=1e-4)
    root = p3[:, :1]
    # the camera looks down 20 degrees: the thorax comes nearer to it than the pelvis
    tilt = axis_angle_to_matrix(torch.tensor([[math.radians(20), 0.0, 0.0]]))
    seen = (p3 - root) @ tilt.mT + root
    assert seen[0, 8, 2] < seen[0, 0, 2]
    assert pl.camera_elevation_deg(seen).item() == pytest.approx(20.0, abs=1e-3)
    assert pl.pose_statistics(_project(seen), seen)["high_view"] == 0.0  # 20 < 30 degrees
    steep = axis_angle_to_matrix(torch.tensor([[math.radians(40), 0.0, 0.0]]))
    high = torch.cat([seen, (p3 - root) @ steep.mT + root])
    assert pl.pose_statistics(_project(high), high)["high_view"] == 0.5  # one of two from above


def test_inside_share_and_relative_scale():
    p2 = _project(_upright_pose()).repeat(4, 1, 1)
    p2[0, 3, 0] = 1.5  # one foot out of the image
    assert pl.inside_share(p2).item() == pytest.approx(0.75)
    stats = pl.pose_statistics(2 * p2, torch.cat([_upright_pose()] * 4),
                               reference_size=pl.size_2d(p2).median())  # fmt: skip
    assert stats["scale_2d"] == pytest.approx(2.0, rel=1e-5)
    assert pl.pose_statistics(p2, torch.cat([_upright_pose()] * 4))["scale_2d"] == 1.0


def test_augmentation_statistics_name_every_statistic(tmp_path):
    m = _module(tmp_path)
    x3 = _upright_pose().repeat(8, 1, 1) + 0.01 * torch.randn(8, 16, 3)
    cam = torch.tensor([[2.0, 2.0, 0, 0, 0, 0, 0, 0, 0]]).repeat(8, 1)
    with torch.no_grad():
        out = m.augmentor(x3, cam)
        stats = pl.augmentation_statistics(out, _project(x3), x3, m.d3d, m.d2d)
    assert set(stats["real"]) == set(pl.POSE_STATS)
    assert set(stats["augmented"]) == set(pl.POSE_STATS) | set(pl.AUGMENTATION_STATS)
    assert stats["real"]["upright"] == 1.0
    assert all(math.isfinite(v) for v in stats["augmented"].values())
    table = plausibility_table(stats)
    assert "upright" in table and "augmented" in table


def test_plausibility_report_is_written_every_epoch(tmp_path):
    train(tiny_cfg(tmp_path, "test=false", "trainer.max_epochs=2", "model.warmup_epochs=0"))
    import json

    lines = (tmp_path / "plausibility.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert [r["epoch"] for r in recs] == [0, 1]
    assert set(recs[0]) == {"epoch", "step", "real", "augmented"}
    assert 0 <= recs[1]["augmented"]["upright"] <= 1 and recs[1]["real"]["scale_2d"] == 1.0


# --- warm-up by steps and augmentor checkpoints --------------------------------------------


def test_warmup_in_steps_counts_augmentor_steps_across_epochs(tmp_path):
    spy = run_with_spy(tmp_path, "model.warmup_epochs=0", "model.warmup_steps=3")
    order = sorted(spy.steps)
    stepped = ["estimator" in spy.steps[k] for k in order]
    assert stepped == [False] * 3 + [True] * (len(order) - 3)


def test_train_estimator_false_never_updates_the_estimator(tmp_path):
    spy = run_with_spy(tmp_path, "model.warmup_epochs=0", "model.train_estimator=false")
    assert all("estimator" not in s for s in spy.steps.values())
    assert all(s[0] == "augmentor" for s in spy.steps.values())


def test_augmentor_ckpt_loads_augmentor_discriminators_and_pools(tmp_path):
    pre = tmp_path / "pre"
    train(tiny_cfg(pre, "test=false", "trainer.max_epochs=1", "model.train_estimator=false"))
    ckpt = pre / "checkpoints/last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    torch.manual_seed(0)
    m = _module(tmp_path / "m", f"model.augmentor_ckpt={ckpt}")
    mine = m.state_dict()
    for prefix in ("augmentor.", "d3d.", "d2d.", "pool3d.", "pool2d."):
        keys = [k for k in state if k.startswith(prefix)]
        assert keys, prefix
        for k in keys:
            torch.testing.assert_close(mine[k], state[k], msg=k)
    assert int(mine["pool3d.count"]) > 0
    torch.manual_seed(0)
    fresh = _module(tmp_path / "f")
    est = [k for k in mine if k.startswith("estimator.") and "weight" in k]
    assert all(torch.equal(mine[k], fresh.state_dict()[k]) for k in est)  # untouched


def test_augmentor_ckpt_without_augmentor_weights_is_refused(tmp_path):
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"estimator.w": torch.zeros(1)}}, bad)
    with pytest.raises(Exception, match="no augmentor weights"):
        _module(tmp_path, f"model.augmentor_ckpt={bad}")


# --- how the estimator sees augmented data -------------------------------------------------


def _bn_modes(module):
    return [m.training for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


def test_feedback_runs_the_estimator_as_the_released_code_with_frozen_running_statistics(
    tmp_path,
):
    m = _module(tmp_path, "model.warmup_epochs=0")
    m.eval()  # whatever mode the estimator is in, the feedback sees it training (dropout, BN
    seen = []  # batch statistics) and leaves its running statistics and its mode as they were
    m.estimator.register_forward_pre_hook(lambda mod, args: seen.append(mod.training))
    before = {k: v.clone() for k, v in m.estimator.state_dict().items() if "running" in k}
    x3 = _upright_pose().repeat(16, 1, 1) + 0.05 * torch.randn(16, 16, 3)
    cam = torch.tensor([[2.0, 2.0, 0, 0, 0, 0, 0, 0, 0]]).repeat(16, 1)
    _, _, logged = m.augmentor_loss(x3, _project(x3), cam)
    assert "train/aug/error_ratio_ba" in logged
    assert len(seen) == 3 and all(seen)  # source, BA and RT pairs
    after = m.estimator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched
    assert not m.estimator.training  # mode restored


def _aug_batch():
    torch.manual_seed(0)
    aug3d = _upright_pose().repeat(8, 1, 1) + 0.05 * torch.randn(8, 16, 3)
    aug2d = _project(aug3d)
    aug2d[[1, 4, 6]] += 3.0  # out of frame
    inside = (aug2d.abs() <= 1).flatten(1).all(1)
    assert inside.sum() == 5
    return aug2d, aug3d, inside


def test_rebatch_feeds_only_in_frame_samples_to_the_estimator(tmp_path):
    m = _module(tmp_path)
    inputs = []
    m.estimator.register_forward_pre_hook(lambda mod, args: inputs.append(args[0]))
    aug2d, aug3d, inside = _aug_batch()
    m.train()
    loss = m.augmented_estimator_loss(aug2d, aug3d, inside)
    x = inputs[-1]
    assert x.shape[0] == 8 and bool((x.abs() <= 1).all())  # a full batch, in-frame only
    m.eval()  # deterministic: the loss is the mean over the in-frame samples
    loss = m.augmented_estimator_loss(aug2d, aug3d, inside)
    err = (m.estimator(aug2d[inside]) - sk.root_relative(aug3d[inside])).pow(2).mean()
    torch.testing.assert_close(loss, err, rtol=0.15, atol=0)  # repeats weigh a few samples more


def test_no_in_frame_sample_gives_zero_loss(tmp_path):
    m = _module(tmp_path).train()
    aug2d, aug3d, _ = _aug_batch()
    loss = m.augmented_estimator_loss(aug2d, aug3d, torch.zeros(8, dtype=torch.bool))
    assert loss.item() == 0.0


def test_retired_options_are_unknown_settings(tmp_path):
    retired = (
        "feedback_mode",
        "aug_batch",
        "aug_norm",
        "aug_bn_stats",
        "estimator_update",
        "bone_jitter",
        "d2d_real_views",
        "view_diversity_of",
        "view_diversity_cap",
    )
    for key in retired:
        with pytest.raises(Exception, match=key):
            tiny_cfg(tmp_path, f"model.{key}=x")


# --- discriminator initialisation ----------------------------------------------------------


@pytest.mark.parametrize("cls", [KCSDiscriminator, Pose2DDiscriminator])
def test_discriminator_kaiming_init_has_he_std(cls):
    torch.manual_seed(0)
    kaiming, default = cls(init="kaiming"), cls(init="default")
    for (name, wk), (_, wd) in zip(kaiming.named_parameters(), default.named_parameters()):
        if wk.dim() < 2 or wk.numel() < 2000:
            continue
        fan_in = wk.shape[1] if wk.dim() == 3 else wk.shape[1]
        assert wk.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1), name
        assert wd.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.1), name
    with pytest.raises(ValueError, match="init"):
        cls(init="xavier")


# --- rotation parametrisation --------------------------------------------------------------


def test_quaternion_rotation_matches_axis_angle_and_round_trips():
    from poseaug_pl.geometry.rotation import quaternion_to_axis_angle, quaternion_to_matrix

    torch.manual_seed(0)
    r = torch.nn.functional.normalize(torch.randn(64, 3, dtype=torch.float64), dim=-1)
    r = r * torch.rand(64, 1, dtype=torch.float64) * math.pi
    half = r.norm(dim=-1, keepdim=True) / 2
    q = torch.cat([half.cos(), r / (2 * half) * half.sin()], -1) * 3.0  # any scale
    torch.testing.assert_close(quaternion_to_matrix(q), axis_angle_to_matrix(r))
    torch.testing.assert_close(quaternion_to_axis_angle(q), r)
    torch.testing.assert_close(quaternion_to_axis_angle(-q), r)  # double cover
    rot = quaternion_to_matrix(torch.randn(16, 4, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64).expand(16, 3, 3)
    torch.testing.assert_close(rot @ rot.mT, eye)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(16, dtype=torch.float64))


def test_quaternion_augmentor_starts_near_identity_and_keeps_a_gradient():
    from poseaug_pl.models import Augmentor

    torch.manual_seed(0)
    aug = Augmentor(hidden=32, rotation="quaternion")
    x3 = _upright_pose().repeat(32, 1, 1) + 0.05 * torch.randn(32, 16, 3)
    cam = torch.tensor([[2.0, 2.0, 0, 0, 0, 0, 0, 0, 0]]).repeat(32, 1)
    out = aug(x3, cam)
    angle = torch.rad2deg(out["rotation"].norm(dim=-1))
    assert angle.median() < 45
    out["rt_2d"].sum().backward()
    g = aug.rot.head.weight.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with pytest.raises(ValueError, match="rotation"):
        Augmentor(rotation="euler")


def test_augmentor_ckpt_of_another_rotation_head_is_refused_clearly(tmp_path):
    pre = tmp_path / "pre"
    train(tiny_cfg(pre, "test=false", "trainer.max_epochs=1", "model.train_estimator=false",
                   "model.augmentor.rotation=axis_angle"))  # fmt: skip
    ckpt = pre / "checkpoints/last.ckpt"
    with pytest.raises(Exception, match="does not fit this model"):
        build_model(tiny_cfg(tmp_path / "m", f"model.augmentor_ckpt={ckpt}",
                             "model.augmentor.rotation=quaternion"))  # fmt: skip


# --- bone swap and joint-definition jitter ---------------------------------------------------


def _batch_of(pose3d: torch.Tensor) -> dict:
    cam = torch.tensor([[2.0, 2.0, 0, 0, 0, 0, 0, 0, 0]]).expand(len(pose3d), 9)
    return {"pose3d": pose3d, "pose2d": _project(pose3d), "cam": cam}


def test_bone_swap_gives_source_poses_a_training_subjects_bone_lengths(tmp_path):
    model = _module(tmp_path).train()
    short = sk.bone_lengths(_upright_pose()) * 0.8
    model.pairs.set_bone_templates(torch.stack([short[0], short[0] * 1.2]))
    pose = _upright_pose().expand(256, 16, 3).clone()
    x3, x2, cam = model.pairs.source(_batch_of(pose))
    ratio = sk.bone_lengths(x3) / sk.bone_lengths(pose)
    picked = ratio[:, 0]
    assert sorted(set(picked.round(decimals=3).tolist())) == pytest.approx([0.8, 0.96])
    assert torch.allclose(ratio, picked[:, None].expand_as(ratio), atol=1e-5)
    assert torch.allclose(x3[:, 0], pose[:, 0])  # root kept
    assert torch.allclose(sk.bone_directions(x3), sk.bone_directions(pose), atol=1e-5)
    assert torch.allclose(x2, project_to_2d(x3, cam), atol=1e-6)  # re-projected
    off = PairTransforms(bone_swap=False, definition_jitter=None)
    off.set_bone_templates(torch.stack([short[0]]))
    assert torch.equal(off.source(_batch_of(pose))[0], pose)  # model.bone_swap=false


@pytest.mark.parametrize("pairs", ["augmented", "all"])
def test_definition_jitter_moves_the_redefinable_joints_of_the_chosen_pairs(tmp_path, pairs):
    model = _module(tmp_path, f"model.definition_jitter.pairs={pairs}").train()
    batch = _batch_of(_upright_pose().expand(512, 16, 3).clone())
    moved = [1, 4, 9, 10, 13]
    kept = [j for j in range(16) if j not in moved]
    assert model.pairs.jitters("augmented") and model.pairs.jitters("real") == (pairs == "all")
    for _ in range(2):
        x2, x3 = model.pairs.redefine(batch["pose3d"], batch["pose2d"], batch["cam"])
        assert torch.equal(x3[:, kept], batch["pose3d"][:, kept])  # limbs never move
        assert torch.allclose(x2, project_to_2d(x3, batch["cam"]), atol=1e-6)  # re-projected
        pelvis = batch["pose3d"][:, :1]
        width = (x3[:, 4, 0] - x3[:, 1, 0]) / (batch["pose3d"][:, 4, 0] - pelvis[:, 0, 0]) / 2
        assert 0.3 - 1e-5 <= width.min() and width.max() <= 1.1 + 1e-5  # the default range
        assert width.max() - width.min() > 0.6  # drawn per pose
        head = (x3[:, 9] - x3[:, 8]).norm(dim=-1) / (batch["pose3d"][:, 9] - x3[:, 8]).norm(dim=-1)
        assert 0.8 - 1e-5 <= head.min() and head.max() <= 2.0 + 1e-5
    noisy = batch["pose2d"] + 0.01 * torch.randn_like(batch["pose2d"])  # e.g. detections
    x2, x3 = model.pairs.redefine(batch["pose3d"], noisy, batch["cam"])
    assert torch.allclose(x2[:, kept], noisy[:, kept], atol=1e-6)  # unmoved joints keep their 2D
    shift = project_to_2d(x3, batch["cam"]) - project_to_2d(batch["pose3d"], batch["cam"])
    assert torch.allclose(x2 - noisy, shift, atol=1e-6)


@pytest.mark.parametrize("schedule", ["interleaved", "epoch_phases"])
def test_definition_jitter_reaches_the_estimators_training_pairs(tmp_path, monkeypatch, schedule):
    seen = []
    real_pairs, augmented = PoseAugModule.real_pairs, PoseAugModule._augmented_pairs

    def spy_real(self, batch):
        x2, x3 = real_pairs(self, batch)
        seen.append(("real", not torch.equal(x3, sk.root_relative(batch["pose3d"]))))
        return x2, x3

    def spy_augmented(self, out, cam):
        x2, x3, inside = augmented(self, out, cam)
        seen.append(("augmented", not torch.equal(x3, out["rt"])))
        return x2, x3, inside

    monkeypatch.setattr(PoseAugModule, "real_pairs", spy_real)
    monkeypatch.setattr(PoseAugModule, "_augmented_pairs", spy_augmented)
    run_with_spy(tmp_path, "model.warmup_epochs=0", f"schedule={schedule}",
                 "model.definition_jitter.pairs=augmented")  # fmt: skip
    assert {kind for kind, changed in seen if changed} == {"augmented"}
    seen.clear()
    run_with_spy(tmp_path / "all", "model.warmup_epochs=0", f"schedule={schedule}",
                 "model.definition_jitter.pairs=all")  # fmt: skip
    assert {kind for kind, changed in seen if changed} == {"augmented", "real"}


def test_definition_jitter_is_off_by_default_and_bad_settings_are_refused(tmp_path):
    model = _module(tmp_path).train()
    assert not model.pairs.jitters("augmented") and not model.pairs.jitters("real")
    for override, message in (
        ("model.definition_jitter.pairs=real", "'none', 'augmented' or 'all'"),
        ("model.definition_jitter.head=[2,1]", "[low, high] numbers with low <= high"),
        ("model.definition_jitter.hip_width=[0,1]", "and low > 0"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate(tiny_cfg(tmp_path, override))


@pytest.mark.parametrize("pairs", ["augmented", "all"])
def test_refilm_films_the_same_pose_through_a_drawn_lens_from_a_drawn_distance(tmp_path, pairs):
    model = _module(tmp_path, f"model.refilm.pairs={pairs}", "model.refilm.focal=[1.2,2.0]",
                    "model.refilm.depth=[2.5,6.0]").train()  # fmt: skip
    assert model.pairs.refilms("augmented") and model.pairs.refilms("real") == (pairs == "all")
    batch = _batch_of(_upright_pose().expand(512, 16, 3).clone())
    x2, x3, lens = model.pairs.refilm(batch["pose3d"], batch["cam"])
    rel = batch["pose3d"] - batch["pose3d"][:, :1]
    assert torch.allclose(x3 - x3[:, :1], rel, atol=1e-6)  # the pose itself stays
    ray = torch.nn.functional.normalize(batch["pose3d"][:, 0], dim=-1)
    assert torch.allclose(torch.nn.functional.normalize(x3[:, 0], dim=-1), ray, atol=1e-6)
    depth, focal = x3[:, 0, 2], lens[:, 0]
    assert 2.5 - 1e-5 <= depth.min() and depth.max() <= 6.0 + 1e-5 and depth.std() > 0.5
    assert 1.2 - 1e-6 <= focal.min() and focal.max() <= 2.0 + 1e-6 and focal.std() > 0.1
    assert torch.equal(lens[:, 2:4], batch["cam"][:, 2:4]) and not lens[:, 4:].any()  # pinhole
    pinhole = x3[..., :2] / x3[..., 2:] * lens[:, None, :2] + lens[:, None, 2:4]
    assert torch.allclose(x2, pinhole, atol=1e-5)


def test_refilm_is_off_by_default_reaches_only_its_pairs_and_refuses_bad_ranges(tmp_path,
                                                                                 monkeypatch):
    model = _module(tmp_path).train()
    assert not model.pairs.refilms("augmented") and not model.pairs.refilms("real")
    seen = []
    augmented = PoseAugModule._augmented_pairs

    def spy_augmented(self, out, cam):
        x2, x3, inside = augmented(self, out, cam)
        seen.append(not torch.equal(x3, out["rt"]))
        return x2, x3, inside

    monkeypatch.setattr(PoseAugModule, "_augmented_pairs", spy_augmented)
    run_with_spy(tmp_path / "on", "model.warmup_epochs=0", "model.refilm.pairs=augmented")
    assert seen and all(seen)
    for override, message in (
        ("model.refilm.pairs=real", "'none', 'augmented' or 'all'"),
        ("model.refilm.focal=[2,1]", "[low, high] numbers with low <= high"),
        ("model.refilm.depth=[0,5]", "and low > 0"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate(tiny_cfg(tmp_path, override))


# --- real-data finish --------------------------------------------------------------------------


class _FinishSpy(L.Callback):
    """Training batches per epoch and the estimator's weights at the end of the fit."""

    def __init__(self):
        self.batches, self.final = {}, None

    def on_train_epoch_end(self, trainer, pl_module):
        self.batches[trainer.current_epoch] = trainer.num_training_batches

    def on_train_end(self, trainer, pl_module):
        self.final = {k: v.clone() for k, v in pl_module.estimator.state_dict().items()}


@pytest.mark.parametrize("schedule", ["interleaved", "epoch_phases"])
def test_real_finish_epochs_train_the_estimator_alone_on_real_pairs_as_given(
    tmp_path, monkeypatch, schedule
):
    jittered = []
    original = PoseAugModule.real_pairs

    def spy_real(self, batch):
        x2, x3 = original(self, batch)
        changed = not torch.equal(x3, sk.root_relative(batch["pose3d"]))
        jittered.append((self.current_epoch, "real", changed))
        return x2, x3

    monkeypatch.setattr(PoseAugModule, "real_pairs", spy_real)
    spy, finish = Spy(), _FinishSpy()
    cfg = tiny_cfg(tmp_path, "test=false", "trainer.max_epochs=3", "model.warmup_epochs=0",
                   "model.real_finish_epochs=1", f"schedule={schedule}",
                   "model.hard_ratio.start=2", "model.hard_ratio.end=4",
                   "model.definition_jitter.pairs=all")  # fmt: skip
    train(cfg, extra_callbacks=[spy, finish])
    by_epoch = {e: [n for (ep, _), s in spy.steps.items() if ep == e for n in s] for e in range(3)}
    assert "augmentor" in by_epoch[1] and "estimator" in by_epoch[1]
    # the finish: one estimator update per batch, nothing else
    passes = 2 if schedule == "epoch_phases" else 1  # (the finish makes one of the two)
    assert by_epoch[2] == ["estimator"] * (finish.batches[2] // passes)
    assert any(changed for e, _, changed in jittered if e < 2)
    finish_calls = [(pairs, changed) for e, pairs, changed in jittered if e == 2]
    assert finish_calls and all(p == "real" and not c for p, c in finish_calls)  # as given
    # the hard ratio spans the augmented epochs only
    assert [r for r, _ in spy.epoch_values] == pytest.approx([2.0, 4.0, 4.0])
    before_finish = spy.snapshots[2]
    assert not all(torch.equal(before_finish[k], finish.final[k]) for k in finish.final)


def test_real_finish_is_off_by_default_and_never_in_an_augmentor_pretraining(tmp_path):
    assert not _module(tmp_path).schedule.in_real_finish()
    pretraining = _module(tmp_path, "model.train_estimator=false", "model.real_finish_epochs=1")
    assert not pretraining.schedule.in_real_finish() and pretraining.uses_augmentor()
    with pytest.raises(ConfigError, match="no estimator to finish"):
        validate(tiny_cfg(tmp_path, "model.train_estimator=false", "model.real_finish_epochs=1"))


def test_real_finish_that_leaves_no_augmented_epoch_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no epoch would train the estimator on augmented"):
        validate(tiny_cfg(tmp_path, "model.real_finish_epochs=1", "model.warmup_epochs=1"))
    for overrides in (("model.real_finish_epochs=2",),
                      ("augment=false", "model.real_finish_epochs=2")):  # fmt: skip
        with pytest.raises(ConfigError, match="the whole run would be the finish"):
            validate(tiny_cfg(tmp_path, *overrides))
    with pytest.raises(ConfigError, match="real_finish_epochs"):
        validate(tiny_cfg(tmp_path, "model.real_finish_epochs=-1"))
    validate(tiny_cfg(tmp_path, "model.real_finish_epochs=1", "model.warmup_epochs=0"))
    validate(tiny_cfg(tmp_path, "augment=false", "model.real_finish_epochs=1"))


# --- view diversity (mode seeking on the RT rotation) --------------------------------------------


def test_view_diversity_loss_rewards_rotations_apart_up_to_its_cap():
    from poseaug_pl.training.losses import view_diversity_loss

    def about_y(deg):
        return axis_angle_to_matrix(torch.tensor([[0.0, math.radians(deg), 0.0]]))

    same = about_y(30)
    assert view_diversity_loss(same, same).item() == pytest.approx(0.0, abs=1e-6)
    chord = [2 * math.sqrt(2) * math.sin(math.radians(d) / 2) for d in (20, 60, 90)]
    assert view_diversity_loss(about_y(0), about_y(20)).item() == pytest.approx(-chord[0], 1e-5)
    assert view_diversity_loss(about_y(10), about_y(70)).item() == pytest.approx(-chord[1], 1e-5)
    capped = view_diversity_loss(about_y(0), about_y(150))  # beyond 90 degrees: no more reward
    assert capped.item() == pytest.approx(-chord[2], 1e-5)
    assert view_diversity_loss(about_y(0), about_y(150), cap_deg=180).item() < capped.item()


def _diversity_alone(tmp_path, *overrides):
    """A module whose augmentor loss is the view-diversity term alone (the other weights 0)."""
    torch.manual_seed(0)
    model = _module(tmp_path, "feedback=false", *overrides).train()
    for name in ("adv2d", "adv3d", "reg"):
        model.hparams.weights[name] = 0.0
    pose = _upright_pose().expand(64, 16, 3) + 0.02 * torch.randn(64, 16, 3)
    x3, x2, cam = model.pairs.source(_batch_of(pose))
    loss, _, logged = model.augmentor_loss(x3, x2, cam)
    loss.backward()
    return model, logged


def test_view_diversity_sends_a_gradient_to_the_rotation_head_only_when_on(tmp_path):
    off, logged = _diversity_alone(tmp_path, "model.weights.view_diversity=0")
    assert "train/aug/view_diversity" not in logged
    grad = off.augmentor.rot.head.weight.grad
    assert grad is None or not grad.any()
    on, logged = _diversity_alone(tmp_path, "model.weights.view_diversity=1")
    assert -2 * math.sqrt(2) < logged["train/aug/view_diversity"] < 0
    grad = on.augmentor.rot.head.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="model.weights.view_diversity"):
        validate(tiny_cfg(tmp_path, "model.weights.view_diversity=-1"))
    with pytest.raises(ConfigError, match="needs noise"):
        validate(
            tiny_cfg(tmp_path, "model.weights.view_diversity=1", "model.augmentor.noise_dim=0")
        )


@pytest.mark.parametrize("rotation", ["quaternion", "axis_angle"])
def test_draw_rotation_is_the_forward_pass_rotation_without_the_other_branches(rotation):
    from poseaug_pl.models import Augmentor

    torch.manual_seed(0)
    aug = Augmentor(hidden=32, noise_dim=0, rotation=rotation)  # no noise: deterministic
    x3 = _upright_pose().repeat(16, 1, 1) + 0.05 * torch.randn(16, 16, 3)
    cam = torch.tensor([[2.0, 2.0, 0, 0, 0, 0, 0, 0, 0]]).repeat(16, 1)
    torch.testing.assert_close(aug.draw_rotation(x3), aug(x3, cam)["rotation_matrix"])


def test_capped_recipe_is_the_released_loss_with_the_capped_bands(tmp_path):
    capped_bands = ["model.hard_ratio.start=1.5", "model.hard_ratio.end=2.5",
                    "model.hard_ratio.ba_half_width=0.5", "model.hard_ratio.rt_centre=2",
                    "model.hard_ratio.rt_half_width=1"]  # fmt: skip

    def augmentor_loss(*overrides):
        torch.manual_seed(0)
        # no regulariser: the two forms differ there too, and the feedback is what is compared
        model = _module(tmp_path, "model.warmup_epochs=0", "model.weights.reg=0", *overrides)
        model.train()
        torch.manual_seed(1)
        pose = _upright_pose().expand(64, 16, 3) + 0.05 * torch.randn(64, 16, 3)
        x3, x2, cam = model.pairs.source(_batch_of(pose))
        loss, _, _ = model.augmentor_loss(x3, x2, cam)
        return loss

    capped = augmentor_loss("recipe=capped")
    assert torch.isfinite(capped)
    torch.testing.assert_close(capped, augmentor_loss("recipe=released", *capped_bands))
    assert not torch.allclose(capped, augmentor_loss("recipe=released"))  # other bands
    assert not torch.allclose(capped, augmentor_loss("recipe=paper", *capped_bands))  # other form
