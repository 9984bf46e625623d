"""PoseAug's discriminators: part-wise kinematic-chain-space (KCS) 3D, and 2D."""

from __future__ import annotations

import math

import torch
from torch import nn

from poseaug_pl.geometry import skeleton

#: Bones of the five body parts the 3D discriminator judges separately.
KCS_PARTS: dict[str, tuple[int, ...]] = {
    "torso": (0, 3, 6, 7, 8, 9, 12),
    "right_leg": (0, 3, 4, 5, 6),
    "left_leg": (0, 1, 2, 3, 6),
    "left_arm": (7, 9, 10, 11),
    "right_arm": (7, 12, 13, 14),
}


#: Weight initialisations of the discriminators' linear layers.
DISCRIMINATOR_INITS = ("kaiming", "default")


def init_linear_weights(module: nn.Module, init: str) -> None:
    """Re-initialise the weights of every linear layer of ``module``.

    ``kaiming``: Kaiming-normal (std ``sqrt(2 / fan_in)``, the released PoseAug code, about 2.4x
    PyTorch's default std), biases kept; ``default``: PyTorch's own initialisation, unchanged.
    """
    if init not in DISCRIMINATOR_INITS:
        raise ValueError(f"init must be one of {DISCRIMINATOR_INITS}, got {init!r}")
    if init == "default":
        return
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, PartwiseLinear):  # (P, in, out): fan_in = in
            with torch.no_grad():
                m.weight.normal_(0.0, math.sqrt(2.0 / m.weight.shape[1]))


class PartwiseLinear(nn.Module):
    """``P`` independent Linear layers applied to ``P`` parts in one batched matmul.

    Args:
        parts: P; in_features, out_features: per part. Initialised like `nn.Linear`.
    """

    def __init__(self, parts: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(parts, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(parts, out_features))
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P, in) -> (B, P, out)."""
        return torch.baddbmm(self.bias.unsqueeze(1), x.transpose(0, 1), self.weight).transpose(0, 1)


class KCSDiscriminator(nn.Module):
    """3D discriminator on bone angles only.

    The pose's unit bone vectors U (15, 3) give the KCS matrix ``U U^T`` (15 x 15); for each of
    the 5 parts (`KCS_PARTS`) the entries of bones outside the part are zeroed, and the 225
    numbers go through that part's residual MLP: L(225, c) -> L(c, c) -> L(c, c) + skip ->
    L(c, mid) -> L(mid, 1), LeakyReLU between. Output: (B, 5) scores, one per part.

    Args:
        channels: c (256); mid: 100; init: ``kaiming`` or ``default`` (`init_linear_weights`).
    """

    def __init__(self, channels: int = 256, mid: int = 100, init: str = "kaiming"):
        super().__init__()
        p, b = len(KCS_PARTS), skeleton.NUM_BONES
        mask = torch.zeros(p, b)
        for i, bones in enumerate(KCS_PARTS.values()):
            mask[i, list(bones)] = 1.0
        self.register_buffer(
            "part_mask", (mask[:, :, None] * mask[:, None, :]).view(p, b * b), persistent=False
        )  # noqa: E501
        self.l1 = PartwiseLinear(p, b * b, channels)
        self.l2 = PartwiseLinear(p, channels, channels)
        self.l3 = PartwiseLinear(p, channels, channels)
        self.l4 = PartwiseLinear(p, channels, mid)
        self.out = PartwiseLinear(p, mid, 1)
        self.act = nn.LeakyReLU()
        init_linear_weights(self, init)

    def forward(self, pose3d: torch.Tensor) -> torch.Tensor:
        """(B, 16, 3) poses -> (B, 5) realism scores."""
        u = skeleton.bone_directions(pose3d)
        kcs = (u @ u.transpose(1, 2)).flatten(1)  # (B, 225)
        x = kcs.unsqueeze(1) * self.part_mask  # (B, 5, 225)
        h1 = self.act(self.l1(x))
        h = self.l3(self.act(self.l2(h1))) + h1
        return self.out(self.act(self.l4(h))).squeeze(-1)


class Pose2DDiscriminator(nn.Module):
    """2D discriminator: L(32, w) -> L(w, w) -> L(w, w) + skip -> L(w, w) -> L(w, w) -> L(w, 1).

    Args:
        width: 100; init: ``kaiming`` or ``default`` (`init_linear_weights`).
    """

    def __init__(self, width: int = 100, init: str = "kaiming"):
        super().__init__()
        self.l1 = nn.Linear(2 * skeleton.NUM_JOINTS, width)
        self.l2 = nn.Linear(width, width)
        self.l3 = nn.Linear(width, width)
        self.l4 = nn.Linear(width, width)
        self.l5 = nn.Linear(width, width)
        self.out = nn.Linear(width, 1)
        self.act = nn.LeakyReLU()
        init_linear_weights(self, init)

    def forward(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(B, 16, 2) normalised 2D poses -> (B, 1) realism scores."""
        d1 = self.act(self.l1(pose2d.flatten(1)))
        d3 = self.act(self.l3(self.act(self.l2(d1))) + d1)
        return self.out(self.act(self.l5(self.l4(d3))))
