"""PoseAug's losses as pure functions. Poses in metres; every loss is a scalar (batch mean).

Two recipes exist (see ``docs/METHOD.md`` of the project's shared docs):

* **paper**: rectified-L2 regularisers (threshold 0.1) and the feedback loss
  ``|1 - exp(L_P(x') - beta * L_P(x))|``.
* **released** (the authors' code): a band regulariser on the mean bone-angle change, the same
  rectified L2 on bone-length ratios, and a band loss on the per-joint-group error ratio.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from poseaug_pl.geometry.skeleton import NUM_JOINTS, root_relative

#: Per-joint weights of the released feedback error (limb ends and knees/elbows count more).
FEEDBACK_JOINT_WEIGHTS = (1, 5, 2, 1, 5, 2, 1, 1, 1, 1, 5, 2, 1, 5, 2, 1)
#: Joint groups the released feedback error averages over: hips/shoulders, knees/elbows/head,
#: feet/wrists.
FEEDBACK_JOINT_GROUPS = ((1, 4, 10, 13), (2, 5, 9, 11, 14), (3, 6, 12, 15))


def _group_matrix() -> torch.Tensor:
    """(16, 3) matrix: weighted per-joint error @ M = per-group mean of weighted error."""
    m = torch.zeros(NUM_JOINTS, len(FEEDBACK_JOINT_GROUPS))
    for g, joints in enumerate(FEEDBACK_JOINT_GROUPS):
        for j in joints:
            m[j, g] = FEEDBACK_JOINT_WEIGHTS[j] / len(joints)
    return m


@lru_cache(maxsize=16)
def _groups(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`_group_matrix` on ``device``, built once per (device, dtype)."""
    return _group_matrix().to(device, dtype)


def lsgan_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN loss of a discriminator: ``0.5 * (mean((D(real)-1)^2) + mean(D(fake)^2))``.

    Args:
        real, fake: discriminator scores of real and augmented samples, any shape.
    """
    return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())


def lsgan_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN loss of the augmentor: ``0.5 * mean((D(fake) - 1)^2)``.

    (The released code adds ``0.5 * mean(D(real)^2)``, which has no gradient for the augmentor.)
    """
    return 0.5 * (fake - 1).pow(2).mean()


#: Degrees between two noise draws' rotations beyond which `view_diversity_loss` rewards
#: nothing more (the augmentor's spread of views per pose settles near it).
VIEW_DIVERSITY_CAP_DEG = 90.0


def view_diversity_loss(rot_a: torch.Tensor, rot_b: torch.Tensor,
                        cap_deg: float = VIEW_DIVERSITY_CAP_DEG) -> torch.Tensor:  # fmt: skip
    """Minus the mean distance between two rotations drawn for the same poses (mode seeking).

    ``-mean(min(||R_a - R_b||_F, c))`` with ``c`` the Frobenius (chordal) distance of two
    rotations ``cap_deg`` apart, ``2 * sqrt(2) * sin(angle / 2)``: lowest when the augmentor's
    noise turns the same pose into views up to ``cap_deg`` apart, with no reward beyond.

    Args:
        rot_a, rot_b: (B, 3, 3) rotation matrices from two noise draws for the same B poses.
    """
    cap = 2 * math.sqrt(2) * math.sin(math.radians(cap_deg) / 2)
    return -torch.linalg.matrix_norm(rot_a - rot_b).clamp(max=cap).mean()


def band_loss(x: torch.Tensor, centre, half_width) -> torch.Tensor:
    """``mean((x - centre)^2 * [|x - centre| > half_width])``: zero inside the band.

    Args:
        x: any shape; centre, half_width: scalars or tensors broadcastable to ``x``.
    """
    d2 = (x - centre).pow(2)
    return (d2 * (d2 > half_width * half_width)).mean()


def rectified_l2(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """``mean(x^2 * [|x| > threshold])``: the rectified L2 regulariser (zero for small x)."""
    return band_loss(x, 0.0, threshold)


#: The loss form of each recipe (``conf/recipe/<name>.yaml``): ``capped`` is the released form
#: with narrower feedback bands, which the recipe's config sets.


def ba_regulariser(ba_diff: torch.Tensor, ba_residual: torch.Tensor, recipe: str = "released",
                   centre: float = 0.205, half_width: float = 0.165,
                   threshold: float = 0.1) -> torch.Tensor:  # fmt: skip
    """Keep the bone-angle changes in range.

    * released: ``band_loss(mean_bones(1 - cos), centre, half_width)``: the mean angle change
      per pose stays within ``1 - cos`` in [0.04, 0.37] (about 16 to 78 degrees);
    * paper: ``rectified_l2(gamma_ba, threshold)`` on the predicted direction residuals.

    Args:
        ba_diff: (B, 15) ``1 - cos`` per bone; ba_residual: (B, 15, 3); recipe: paper|released.
    """
    if recipe == "released":
        return band_loss(ba_diff.mean(-1), centre, half_width)
    if recipe == "paper":
        return rectified_l2(ba_residual, threshold)
    raise ValueError(f"recipe must be 'paper' or 'released', got {recipe!r}")


def bl_regulariser(bl_ratio: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """``rectified_l2(gamma_bl, threshold)`` on the (B, 9) bone-length ratios (both recipes)."""
    return rectified_l2(bl_ratio, threshold)


def mpjpe_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-joint Euclidean distance of root-relative (B, 16, 3) poses (the estimator loss)."""
    return (pred - target).norm(dim=-1).mean()


def pose_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean joint error, (B, 16, 3) x 2 -> (B,) (the paper's ``L_P``)."""
    return (pred - target).norm(dim=-1).mean(-1)


def grouped_pose_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Released feedback error: weighted per-joint L2, averaged per joint group -> (B, 3).

    Weights `FEEDBACK_JOINT_WEIGHTS`; groups `FEEDBACK_JOINT_GROUPS`.
    """
    return (pred - target).norm(dim=-1) @ _groups(pred.device, pred.dtype)


def feedback_loss_paper(err_aug: torch.Tensor, err_src: torch.Tensor, beta) -> torch.Tensor:
    """``mean(|1 - exp(L_P(x') - beta * L_P(x))|)``: the paper's feedback loss (Eq. 10).

    Args:
        err_aug: (B,) estimator error on augmented pairs; err_src: (B,) on the source pairs;
        beta: the hard ratio.
    """
    return (1 - torch.exp(err_aug - beta * err_src)).abs().mean()


def feedback_loss_released(err_aug: torch.Tensor, err_src: torch.Tensor, centre,
                           half_width) -> torch.Tensor:  # fmt: skip
    """Released feedback loss: ``band_loss(err_aug / err_src, centre, half_width)``.

    Args:
        err_aug, err_src: (B, 3) `grouped_pose_error` of augmented and source pairs.
        centre: the target error ratio m (BA: 3 -> 5 over training; RT: 17).
        half_width: s (BA: 2; RT: 15).
    """
    return band_loss(err_aug / err_src, centre, half_width)


def released_feedback(est, src2d, src3d, out: dict, hard_ratio: dict, ratio: float,
                      weights: dict):  # fmt: skip
    """The released code's feedback: band losses on the per-group error ratios of the BA and
    RT steps' pairs against the source pairs, weighted ``feedback_ba`` / ``feedback_rt``.

    Args:
        est: the (frozen) estimator; src2d, src3d: source pairs (3D in the camera frame);
        out: the augmentor's output; hard_ratio: ``{ba_half_width, rt_centre,
        rt_half_width, ...}``; ratio: the BA band's current centre; weights: loss weights.

    Returns:
        ``(loss, ratio_ba, ratio_rt)``: the weighted loss and the detached mean error ratios.
    """
    err_src = grouped_pose_error(est(src2d), root_relative(src3d)).detach()
    err_ba = grouped_pose_error(est(out["ba_2d"]), root_relative(out["ba"]))
    err_rt = grouped_pose_error(est(out["rt_2d"]), root_relative(out["rt"]))
    ba = feedback_loss_released(err_ba, err_src, ratio, hard_ratio["ba_half_width"])
    rt = feedback_loss_released(err_rt, err_src, hard_ratio["rt_centre"],
                                hard_ratio["rt_half_width"])  # fmt: skip
    loss = weights["feedback_ba"] * ba + weights["feedback_rt"] * rt
    return loss, (err_ba.detach() / err_src).mean(), (err_rt.detach() / err_src).mean()


def paper_feedback(est, src2d, src3d, out: dict, hard_ratio: dict, ratio: float, weights: dict):
    """The paper's feedback (Eq. 10) on the final (RT) pairs with beta = ``ratio``, weighted
    ``feedback``; arguments and returns as `released_feedback` (both ratios are the RT one)."""
    err_src = pose_error(est(src2d), root_relative(src3d)).detach()
    err_rt = pose_error(est(out["rt_2d"]), root_relative(out["rt"]))
    loss = weights["feedback"] * feedback_loss_paper(err_rt, err_src, ratio)
    r = err_rt.detach().mean() / err_src.mean()
    return loss, r, r


#: The feedback loss of each loss form (`poseaug_pl.training.config.LOSS_FORM`), chosen once by
#: the module.
FEEDBACK = {"released": released_feedback, "paper": paper_feedback}
