"""Specification of the estimators, the augmentor and the discriminators."""

import pytest
import torch

from poseaug_pl.data import generate
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.models import (
    ESTIMATORS,
    Augmentor,
    KCSDiscriminator,
    Pose2DDiscriminator,
    SemGCN,
)
from poseaug_pl.training.losses import mpjpe_loss

#: Trainable parameters of the original implementations (counted from their layer shapes).
ORIGINAL_PARAMS = {"videopose": 8_485_933, "simplebaseline": 4_288_557, "semgcn": 434_703,
                   "stgcn": 3_627_847}  # fmt: skip


def n_params(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    d = generate(sequences=8, frames=16, seed=1)
    idx = torch.randperm(len(d))[:64]
    return d.pose3d[idx], d.pose2d[idx], d.cam[idx]


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_maps_2d_to_root_relative_3d(name, batch):
    model = ESTIMATORS[name]()
    out = model(batch[1])
    assert out.shape == (64, 16, 3) and torch.isfinite(out).all()
    assert torch.equal(out[:, 0], torch.zeros(64, 3))
    mpjpe_loss(out, sk.root_relative(batch[0])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_parameter_count_matches_the_original(name):
    assert n_params(ESTIMATORS[name]()) == ORIGINAL_PARAMS[name]


def test_semgcn_without_non_local_is_poseaugs_variant():
    assert n_params(SemGCN(non_local=False)) == 267_343


def test_estimators_in_eval_mode_are_deterministic(batch):
    for cls in ESTIMATORS.values():
        m = cls().eval()
        torch.testing.assert_close(m(batch[1]), m(batch[1]))


def test_estimator_hidden_width_is_configurable():
    assert n_params(ESTIMATORS["videopose"](channels=256)) < ORIGINAL_PARAMS["videopose"] / 10


# --- augmentor -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def augmented(batch):
    torch.manual_seed(0)
    aug = Augmentor().train()
    return aug, aug(batch[0], batch[2])


def test_augmentor_returns_every_intermediate(augmented, batch):
    _, out = augmented
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "ba": (64, 16, 3), "bl": (64, 16, 3), "rt": (64, 16, 3), "ba_2d": (64, 16, 2),
        "rt_2d": (64, 16, 2), "ba_residual": (64, 15, 3), "ba_diff": (64, 15),
        "bl_ratio": (64, 9), "bl_ratio_bones": (64, 15), "rotation": (64, 3),
        "rotation_matrix": (64, 3, 3), "translation": (64, 3),
    }  # fmt: skip


def test_ba_keeps_bone_lengths_and_torso_directions(augmented, batch):
    _, out = augmented
    src = batch[0]
    torch.testing.assert_close(sk.bone_lengths(out["ba"]), sk.bone_lengths(src), atol=1e-5, rtol=0)
    torso = list(sk.TORSO_BONES)
    torch.testing.assert_close(sk.bone_directions(out["ba"])[:, torso],
                               sk.bone_directions(src)[:, torso], atol=1e-5, rtol=0)  # fmt: skip
    assert out["ba_diff"][:, torso].abs().max() < 1e-6
    assert out["ba_diff"].amax() > 1e-3  # the other bones do move
    torch.testing.assert_close(out["ba"][:, 0], src[:, 0])  # root kept


def test_bl_changes_lengths_within_20_percent_symmetrically(augmented):
    _, out = augmented
    ratio = sk.bone_lengths(out["bl"]) / sk.bone_lengths(out["ba"])
    assert ratio.min() >= 0.8 - 1e-5 and ratio.max() <= 1.2 + 1e-5
    torch.testing.assert_close(ratio[:, list(sk.LEFT_BONES)], ratio[:, list(sk.RIGHT_BONES)])
    torch.testing.assert_close(ratio[:, 7], torch.ones(64))  # spine-thorax fixed
    torch.testing.assert_close(sk.bone_directions(out["bl"]), sk.bone_directions(out["ba"]),
                               atol=1e-5, rtol=0)  # fmt: skip


def test_rt_is_rigid_and_in_front_of_the_camera(augmented):
    _, out = augmented
    before, after = out["bl"], out["rt"]
    torch.testing.assert_close(torch.cdist(after, after), torch.cdist(before, before),
                               atol=1e-5, rtol=0)  # fmt: skip
    assert (after[..., 2] > 0).all()
    torch.testing.assert_close(after[:, 0], out["translation"])
    assert out["rotation"].abs().max() <= torch.pi


def test_augmentor_projects_through_each_samples_camera(augmented, batch):
    from poseaug_pl.geometry.camera import project_to_2d

    _, out = augmented
    torch.testing.assert_close(out["rt_2d"], project_to_2d(out["rt"], batch[2]))


def test_feedback_gradient_reaches_every_augmentor_parameter(batch):
    torch.manual_seed(1)
    aug, est = Augmentor().train(), ESTIMATORS["videopose"]().eval()
    est.requires_grad_(False)  # frozen estimator, as in the augmentor step
    out = aug(batch[0], batch[2])
    loss = mpjpe_loss(est(out["rt_2d"]), sk.root_relative(out["rt"]))
    loss = loss + mpjpe_loss(est(out["ba_2d"]), sk.root_relative(out["ba"]))
    loss.backward()
    for name, p in aug.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in est.parameters())


def test_augmentation_is_stochastic(batch):
    aug = Augmentor().eval()
    a, b = aug(batch[0], batch[2])["rt"], aug(batch[0], batch[2])["rt"]
    assert not torch.allclose(a, b)


# --- discriminators ----------------------------------------------------------------------------


def test_kcs_discriminator_judges_bone_angles_only(batch):
    d = KCSDiscriminator()
    pose = batch[0]
    scores = d(pose)
    assert scores.shape == (64, 5)
    moved = sk.set_bone_lengths(pose, sk.bone_lengths(pose) * 1.3) + torch.tensor([1.0, -2.0, 3.0])
    torch.testing.assert_close(d(moved), scores, atol=1e-5, rtol=1e-5)


def test_kcs_parts_see_only_their_bones(batch):
    d = KCSDiscriminator()
    pose = batch[0].clone()
    base = d(pose)
    bent = pose.clone()
    bent[:, 12] = bent[:, 11] + (bent[:, 11] - bent[:, 10])  # straighten the left forearm
    diff = (d(bent) - base).abs().amax(0)
    assert diff[3] > 0  # left arm part
    torch.testing.assert_close(diff[[0, 1, 2, 4]], torch.zeros(4))  # no other part sees it


def test_2d_discriminator_shapes_and_size():
    d = Pose2DDiscriminator()
    assert d(torch.randn(7, 16, 2)).shape == (7, 1)
    assert n_params(d) == 32 * 100 + 100 + 4 * (100 * 100 + 100) + 101
    assert n_params(KCSDiscriminator()) == 5 * (
        225 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 100 + 100 + 101
    )  # noqa: E501


def test_augmentor_size_equals_the_released_code():
    # per branch: input Linear + BN, 2 stages x 2 (Linear + BN), head; BA 45, BL 9, R 3, T 3 outs
    def branch(inp, out):
        return (inp + 48) * 256 + 256 + 512 + 4 * (256 * 256 + 256 + 512) + 256 * out + out

    assert n_params(Augmentor()) == branch(48, 45) + branch(63, 9) + 2 * branch(48, 3) == 1_181_500


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_each_estimator_is_selectable_by_hydra_config(name):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from poseaug_pl.models.registry import build
    from poseaug_pl.utils import CONFIG_DIR

    def instantiate(node):
        return build("estimator", OmegaConf.to_container(node))

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("prepare_data", overrides=[f"+model/estimator={name}"])
        model = instantiate(cfg.model.estimator)
        assert isinstance(model, ESTIMATORS[name])
        assert n_params(model) == ORIGINAL_PARAMS[name]
        small = instantiate(
            compose(
                "prepare_data",
                overrides=[f"+model/estimator={name}", "model.estimator.channels=64"],
            ).model.estimator
        )  # noqa: E501
        assert n_params(small) < n_params(model)


def test_augmentor_initialisation_options(batch):
    torch.manual_seed(0)
    out = Augmentor().train()(batch[0], batch[2])  # default: translation head near 5 m
    assert (out["rt_2d"].abs() <= 1).all(-1).all(-1).float().mean() > 0.9
    assert torch.rad2deg(out["rotation"].norm(dim=-1)).mean() > 120  # released: saturated tanh*pi
    near = Augmentor(identity_rotation_init=True).train()(batch[0], batch[2])
    assert torch.rad2deg(near["rotation"].norm(dim=-1)).mean() < 60
    plain = Augmentor(init_depth=None).train()(batch[0], batch[2])  # released translation init
    assert (plain["rt_2d"].abs() <= 1).all(-1).all(-1).float().mean() < 0.5
