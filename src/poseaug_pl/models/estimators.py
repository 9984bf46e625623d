"""2D-to-3D pose estimators: (B, 16, 2) normalised 2D -> (B, 16, 3) root-relative metres.

The four networks PoseAug evaluates, re-implemented with Linear layers on channels-last
tensors (a 1x1 convolution is the same arithmetic, and slower on CPU). Every estimator returns
the root joint exactly at zero: VideoPose and SimpleBaseline predict only the 15 other joints;
SemGCN and ST-GCN predict all 16 and subtract the predicted root (the originals leave the root to
the loss; evaluation subtracts it there too).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from poseaug_pl.geometry import skeleton


class Estimator(nn.Module):
    """Base class: subclasses implement `predict` ((B, 16, 2) -> (B, 16, 3))."""

    def predict(self, pose2d: torch.Tensor) -> torch.Tensor:
        """Raw 3D prediction of every joint."""
        raise NotImplementedError

    def forward(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(B, 16, 2) normalised 2D -> (B, 16, 3) root-relative 3D (root exactly zero)."""
        return skeleton.root_relative(self.predict(pose2d))


def _with_zero_root(joints15: torch.Tensor) -> torch.Tensor:
    """(B, 45) -> (B, 16, 3) with a zero root prepended."""
    out = joints15.view(-1, skeleton.NUM_JOINTS - 1, 3)
    return torch.cat([out.new_zeros(out.shape[0], 1, 3), out], dim=1)


def _bn_act_drop(width: int, dropout: float) -> list[nn.Module]:
    return [nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]


class VideoPose(Estimator):
    """VideoPose3D single-frame (Pavllo et al. 2019): 8,485,933 parameters at 1024 channels.

    Expand Linear(32, c, no bias) -> BN -> ReLU -> Dropout; ``blocks`` residual blocks of
    2 x [Linear(c, c, no bias) -> BN -> ReLU -> Dropout]; Linear(c, 45).

    Args:
        channels: c (1024); blocks: 4; dropout: 0.25; bn_momentum: 0.1.
    """

    def __init__(self, channels: int = 1024, blocks: int = 4, dropout: float = 0.25,
                 bn_momentum: float = 0.1):  # fmt: skip
        super().__init__()
        c = channels
        self.expand = nn.Sequential(nn.Linear(32, c, bias=False), *_bn_act_drop(c, dropout))
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Linear(c, c, bias=False),
                *_bn_act_drop(c, dropout),
                nn.Linear(c, c, bias=False),
                *_bn_act_drop(c, dropout),
            )  # fmt: skip
            for _ in range(blocks)
        )
        self.shrink = nn.Linear(c, 3 * (skeleton.NUM_JOINTS - 1))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.momentum = bn_momentum

    def predict(self, pose2d):
        """(B, 16, 2) -> (B, 16, 3), root zero."""
        x = self.expand(pose2d.flatten(1))
        for block in self.blocks:
            x = x + block(x)
        return _with_zero_root(self.shrink(x))


class SimpleBaseline(Estimator):
    """SimpleBaseline (Martinez et al. 2017): 4,288,557 parameters at 1024 wide, 2 stages.

    Linear(32, c) -> BN -> ReLU -> Dropout; ``stages`` residual stages of
    2 x [Linear(c, c) -> BN -> ReLU -> Dropout]; Linear(c, 45). Kaiming-normal weights.

    Args:
        channels: c (1024); stages: 2; dropout: 0.25.
    """

    def __init__(self, channels: int = 1024, stages: int = 2, dropout: float = 0.25):
        super().__init__()
        c = channels
        self.inp = nn.Sequential(nn.Linear(32, c), *_bn_act_drop(c, dropout))
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Linear(c, c),
                *_bn_act_drop(c, dropout),
                nn.Linear(c, c),
                *_bn_act_drop(c, dropout),
            )  # fmt: skip
            for _ in range(stages)
        )
        self.out = nn.Linear(c, 3 * (skeleton.NUM_JOINTS - 1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def predict(self, pose2d):
        """(B, 16, 2) -> (B, 16, 3), root zero."""
        x = self.inp(pose2d.flatten(1))
        for stage in self.stages:
            x = x + stage(x)
        return _with_zero_root(self.out(x))


# --- SemGCN --------------------------------------------------------------------------------


def _skeleton_adjacency() -> torch.Tensor:
    """(16, 16) 0/1 adjacency of the bones plus self loops."""
    a = torch.eye(skeleton.NUM_JOINTS)
    for p, c in skeleton.BONES:
        a[p, c] = a[c, p] = 1.0
    return a


class SemGraphConv(nn.Module):
    """Semantic graph convolution (Zhao et al. 2019) on a fixed graph.

    Learnable weights ``e`` on the graph's edges (self loops included) are soft-maxed over each
    node's neighbours into A; ``out = diag(A) * (X W0) + offdiag(A) @ (X W1) + b``.

    Args:
        in_features, out_features; adjacency: (J, J) 0/1 mask with self loops.
    """

    def __init__(self, in_features: int, out_features: int, adjacency: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2, in_features, out_features))
        nn.init.xavier_uniform_(self.weight, gain=1.414)
        mask = adjacency > 0
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("fill", torch.full(mask.shape, -9e15), persistent=False)
        self.register_buffer("eye", torch.eye(len(adjacency)), persistent=False)
        self.e = nn.Parameter(torch.ones(int(mask.sum())))
        self.bias = nn.Parameter(
            torch.empty(out_features).uniform_(-1, 1) / math.sqrt(out_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, J, in) -> (B, J, out)."""
        logits = self.fill.to(x.dtype).masked_scatter(self.mask, self.e.to(x.dtype))
        adj = torch.softmax(logits, dim=1)
        h0, h1 = (x @ torch.cat(self.weight.unbind(0), dim=1)).chunk(2, dim=-1)
        return adj.diagonal().unsqueeze(-1) * h0 + (adj * (1 - self.eye)) @ h1 + self.bias


class _GraphBlock(nn.Module):
    """SemGraphConv -> BN over features -> ReLU -> Dropout."""

    def __init__(self, cin: int, cout: int, adjacency: torch.Tensor, dropout: float):
        super().__init__()
        self.conv = SemGraphConv(cin, cout, adjacency)
        self.bn = nn.BatchNorm1d(cout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        """(B, J, cin) -> (B, J, cout)."""
        y = self.conv(x)
        y = self.bn(y.flatten(0, 1)).view_as(y)
        return self.drop(torch.relu(y))


class GraphNonLocal(nn.Module):
    """Non-local block on graph nodes (concatenation form), as SemGCN uses it.

    Nodes are permuted so that each group of ``sub_sample`` joints is adjacent, phi and g are
    max-pooled over each group, ``f_ij = ReLU(w . [theta_i; phi_j]) / N``, ``y = f g``, and
    ``x + BN(W y)`` is returned (BN starts at zero, so the block starts as the identity).

    Args:
        channels: c; order: node permutation grouping joints; sub_sample: group size.
    """

    def __init__(self, channels: int, order: tuple[int, ...], sub_sample: int = 2):
        super().__init__()
        inter = channels // 2
        self.theta, self.phi, self.g = (nn.Linear(channels, inter) for _ in range(3))
        self.concat = nn.Linear(2 * inter, 1, bias=False)
        self.w = nn.Linear(inter, channels)
        self.bn = nn.BatchNorm1d(channels)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.sub_sample, self.inter = sub_sample, inter
        order_t = torch.tensor(order)
        self.register_buffer("order", order_t, persistent=False)
        self.register_buffer("restore", torch.argsort(order_t), persistent=False)

    def _pool(self, x):  # (B, J, C) -> (B, J / s, C), max over each group
        return x.unflatten(1, (-1, self.sub_sample)).amax(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, J, C) -> (B, J, C)."""
        xg = x.index_select(1, self.order)
        theta, phi, g = self.theta(xg), self._pool(self.phi(xg)), self._pool(self.g(xg))
        a, b = self.concat.weight[0, : self.inter], self.concat.weight[0, self.inter :]
        f = torch.relu((theta @ a).unsqueeze(2) + (phi @ b).unsqueeze(1)) / phi.shape[1]
        y = self.w(f @ g)
        y = self.bn(y.flatten(0, 1)).view_as(y)
        return (xg + y).index_select(1, self.restore)


#: SemGCN's joint groups for the non-local block (pairs of neighbouring joints).
SEMGCN_GROUPS = ((2, 3), (5, 6), (1, 4), (0, 7), (8, 9), (14, 15), (11, 12), (10, 13))


class SemGCN(Estimator):
    """SemGCN (Zhao et al. 2019): 434,703 parameters with non-local, 267,343 without.

    GraphBlock(2, c) [+ non-local]; ``layers`` residual blocks of 2 x GraphBlock(c, c)
    [+ non-local after each]; SemGraphConv(c, 3). PoseAug's released code disables the
    non-local blocks; the paper's SemGCN has them (``non_local=True``, the default here).

    Args:
        channels: c (128); layers: 4; dropout: 0.0 (PoseAug trains SemGCN without dropout);
        non_local: insert the non-local blocks.
    """

    def __init__(self, channels: int = 128, layers: int = 4, dropout: float = 0.0,
                 non_local: bool = True):  # fmt: skip
        super().__init__()
        adj, c = _skeleton_adjacency(), channels
        order = tuple(j for group in SEMGCN_GROUPS for j in group)

        def nl():
            return GraphNonLocal(c, order) if non_local else nn.Identity()

        self.inp = nn.Sequential(_GraphBlock(2, c, adj, dropout), nl())
        self.blocks = nn.ModuleList(
            nn.Sequential(_GraphBlock(c, c, adj, dropout), _GraphBlock(c, c, adj, dropout))
            for _ in range(layers)
        )
        self.non_locals = nn.ModuleList(nl() for _ in range(layers))
        self.out = SemGraphConv(c, 3, adj)

    def predict(self, pose2d):
        """(B, 16, 2) -> (B, 16, 3)."""
        x = self.inp(pose2d)
        for block, non_local in zip(self.blocks, self.non_locals):
            x = non_local(x + block(x))
        return self.out(x)


# --- ST-GCN (single frame) ---------------------------------------------------------------------

# The 17-joint Human3.6M graph ST-GCN runs on: PoseAug's 16 joints plus a neck/nose joint (9)
# halfway between thorax and head.
_ST_BONES = ((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10),
             (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16))  # fmt: skip
_ST_SYMMETRY = ((3, 6), (2, 5), (1, 4), (11, 14), (12, 15), (13, 16))
_ST_CENTRE = 7
#: Pooled body parts of the 17-joint graph: left arm, right arm, left leg, right leg, trunk.
_ST_PARTS = ((11, 12, 13), (14, 15, 16), (4, 5, 6), (1, 2, 3), (0, 7, 8, 9, 10))
_ST_PART_EDGES = ((0, 4), (1, 4), (2, 4), (3, 4))
_ST_PART_SYMMETRY = ((0, 1), (2, 3))


def _hops(n: int, edges) -> torch.Tensor:
    """(n, n) hop distance on a graph (inf where unreachable)."""
    d = torch.full((n, n), math.inf)
    d.fill_diagonal_(0)
    for a, b in edges:
        d[a, b] = d[b, a] = 1
    for k in range(n):  # Floyd-Warshall; n <= 17
        d = torch.minimum(d, d[:, k : k + 1] + d[k : k + 1, :])
    return d


def spatial_partitions(n: int, edges, symmetry, centre: int) -> torch.Tensor:
    """ST-GCN's spatial partitioning plus a symmetry partition: (4, n, n).

    The adjacency of bones, symmetry links and self loops is normalised by column degree; entry
    (j, i) goes to partition 0 if j == i, 1 if j is farther from ``centre`` than i, 2 if it is
    nearer, 3 if (i, j) is a symmetry link.
    """
    adj = torch.eye(n)
    for a, b in (*edges, *symmetry):
        adj[a, b] = adj[b, a] = 1.0
    norm = adj / adj.sum(0, keepdim=True)
    dist = _hops(n, edges)[centre]
    parts = torch.zeros(4, n, n)
    sym = torch.zeros(n, n, dtype=torch.bool)
    for a, b in symmetry:
        sym[a, b] = sym[b, a] = True
    for j in range(n):
        for i in range(n):
            if adj[j, i] == 0:
                continue
            k = 0 if i == j else 3 if sym[j, i] else 1 if dist[j] > dist[i] else 2
            parts[k, j, i] = norm[j, i]
    return parts


def _bn_tokens(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over (B, V, C) tokens per channel (as BatchNorm2d over (B, C, 1, V))."""
    return bn(x.flatten(0, 1)).view_as(x)


class STGCNBlock(nn.Module):
    """One spatial graph-convolution block of ST-GCN for a single frame.

    gcn: Linear(cin, K * cout) then sum_k A_k; tcn: BN -> ReLU -> Dropout -> Linear(cout, cout)
    -> BN -> Dropout; residual: none, identity, or Linear + BN; output ReLU(tcn + residual).
    """

    def __init__(self, cin: int, cout: int, parts: torch.Tensor, dropout: float,
                 residual: bool = True):  # fmt: skip
        super().__init__()
        self.k = parts.shape[0]
        self.register_buffer("parts", parts, persistent=False)
        self.gcn = nn.Linear(cin, cout * self.k)
        self.bn1, self.bn2 = nn.BatchNorm1d(cout), nn.BatchNorm1d(cout)
        self.tcn = nn.Linear(cout, cout)
        self.drop = nn.Dropout(dropout)
        self.residual = residual and cin != cout
        self.identity = residual and cin == cout
        if self.residual:
            self.res = nn.Linear(cin, cout)
            self.res_bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, V, cin) -> (B, V, cout)."""
        h = self.gcn(x).unflatten(-1, (self.k, -1))  # (B, V, K, C)
        h = torch.einsum("bvkc,kvw->bwc", h, self.parts)
        h = self.drop(torch.relu(_bn_tokens(self.bn1, h)))
        h = self.drop(_bn_tokens(self.bn2, self.tcn(h)))
        if self.residual:
            h = h + _bn_tokens(self.res_bn, self.res(x))
        elif self.identity:
            h = h + x
        return torch.relu(h)


class STGCN(Estimator):
    """ST-GCN for single frames as PoseAug uses it: 3,627,847 parameters at 128 channels.

    16 -> 17 joints (neck = mean of thorax and head); BN over the 34 inputs; blocks
    2 -> c -> c -> 2c on the 17-joint graph; max-pool into 5 parts; blocks 2c -> 4c -> 4c on the
    part graph; a global feature (max over parts, Linear 4c -> 4c) joined to every part and
    reduced (Linear 8c -> 2c); parts broadcast back to their joints and joined with the joint
    features (4c); an embedded-Gaussian non-local block; Linear(4c, 3); the neck is dropped.

    Args:
        channels: c (128).
        dropout: one rate everywhere, or None for PoseAug's pretraining default (0.05 in the
            blocks, 0.25 global, 0.1 reduction, 0.1 head).
    """

    def __init__(self, channels: int = 128, dropout: float | None = None):
        super().__init__()
        c = channels
        d_blk, d_glob, d_red, d_head = (0.05, 0.25, 0.1, 0.1) if dropout is None else (dropout,) * 4
        to17 = torch.zeros(17, skeleton.NUM_JOINTS)
        for j17, j16 in enumerate((*range(9), None, *range(9, 16))):
            if j16 is None:
                to17[j17, 8] = to17[j17, 9] = 0.5
            else:
                to17[j17, j16] = 1.0
        self.register_buffer("to17", to17, persistent=False)
        part_of = torch.zeros(17, dtype=torch.long)
        for p, joints in enumerate(_ST_PARTS):
            part_of[list(joints)] = p
        self.register_buffer("part_of", part_of, persistent=False)
        joint_graph = spatial_partitions(17, _ST_BONES, _ST_SYMMETRY, _ST_CENTRE)
        part_graph = spatial_partitions(5, _ST_PART_EDGES, _ST_PART_SYMMETRY, 4)
        self.data_bn = nn.BatchNorm1d(34, eps=0.1)
        self.joint_blocks = nn.ModuleList([
            STGCNBlock(2, c, joint_graph, d_blk, residual=False),
            STGCNBlock(c, c, joint_graph, d_blk),
            STGCNBlock(c, 2 * c, joint_graph, d_blk),
        ])  # fmt: skip
        self.part_blocks = nn.ModuleList([
            STGCNBlock(2 * c, 4 * c, part_graph, d_blk),
            STGCNBlock(4 * c, 4 * c, part_graph, d_blk),
        ])  # fmt: skip
        self.glob = nn.Linear(4 * c, 4 * c)
        self.glob_bn, self.glob_drop = nn.BatchNorm1d(4 * c), nn.Dropout(d_glob)
        self.reduce = nn.Linear(8 * c, 2 * c)
        self.reduce_bn, self.reduce_drop = nn.BatchNorm1d(2 * c), nn.Dropout(d_red)
        self.nl_theta, self.nl_phi, self.nl_g = (nn.Linear(4 * c, 2 * c) for _ in range(3))
        self.nl_w, self.nl_bn = nn.Linear(2 * c, 4 * c), nn.BatchNorm1d(4 * c)
        nn.init.zeros_(self.nl_bn.weight)
        nn.init.zeros_(self.nl_bn.bias)
        self.head_drop, self.head = nn.Dropout(d_head), nn.Linear(4 * c, 3)

    def predict(self, pose2d):
        """(B, 16, 2) -> (B, 16, 3)."""
        x = self.to17 @ pose2d  # (B, 17, 2)
        x = self.data_bn(x.flatten(1)).view_as(x)
        for block in self.joint_blocks:
            x = block(x)  # (B, 17, 2c)
        parts = torch.stack([x[:, list(j)].amax(1) for j in _ST_PARTS], 1)  # (B, 5, 2c)
        for block in self.part_blocks:
            parts = block(parts)  # (B, 5, 4c)
        g = torch.relu(self.glob_bn(self.glob(parts.amax(1))))
        g = self.glob_drop(g).unsqueeze(1).expand(-1, parts.shape[1], -1)
        parts = self.reduce(torch.cat([parts, g], -1))
        parts = self.reduce_drop(torch.relu(_bn_tokens(self.reduce_bn, parts)))  # (B, 5, 2c)
        x = torch.cat([x, parts.index_select(1, self.part_of)], -1)  # (B, 17, 4c)
        theta, phi, val = self.nl_theta(x), self.nl_phi(x), self.nl_g(x)
        attn = torch.softmax(theta @ phi.transpose(1, 2), dim=-1)
        x = x + _bn_tokens(self.nl_bn, self.nl_w(attn @ val))
        out = self.head(self.head_drop(x))  # (B, 17, 3)
        return torch.cat([out[:, :9], out[:, 10:]], 1)


ESTIMATORS = {"videopose": VideoPose, "simplebaseline": SimpleBaseline, "semgcn": SemGCN,
              "stgcn": STGCN}  # fmt: skip
