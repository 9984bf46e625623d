"""Evaluation metrics of the published protocol, in torch (batched, on any device).

Poses are root-relative (N, 16, 3) in metres; reported numbers are in millimetres and percent.

* MPJPE (protocol 1), PA-MPJPE (protocol 2: per-frame similarity Procrustes), N-MPJPE (scale
  only), 3D PCK at 150 mm and AUC over 0..150 mm in 5 mm steps (MPI-INF-3DHP's protocol, over
  all 16 joints as PoseAug computes it).
* Per-bone diagnostics: the angle between each predicted and true bone (degrees) and the
  predicted / true bone length. They separate a skeleton that another dataset defines
  differently (its hips or shoulders, say) from pose errors.
* `PoseMetrics` accumulates sums as a torchmetrics `Metric`, so values reduce across processes;
  `TestSetMetrics` holds one per test set, with per-action sums and the saved predictions.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric

from poseaug_pl.geometry.skeleton import (
    NUM_BONES,
    NUM_JOINTS,
    bone_directions,
    bone_lengths,
    set_bone_lengths,
)

PCK_THRESHOLD = 0.150
AUC_THRESHOLDS = tuple(round(i * 0.005, 3) for i in range(31))  # 0, 5, ..., 150 mm


def joint_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Euclidean error per joint, (..., 16, 3) x 2 -> (..., 16)."""
    return (pred - target).norm(dim=-1)


def bone_angle_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angle between each predicted and true bone, degrees. (..., 16, 3) x 2 -> (..., 15)."""
    cos = (bone_directions(pred) * bone_directions(target)).sum(-1)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


def bone_length_ratios(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Predicted / true length of each bone. (..., 16, 3) x 2 -> (..., 15)."""
    return bone_lengths(pred) / bone_lengths(target).clamp_min(1e-6)


def joint_errors_at_true_lengths(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-joint error after giving each predicted bone its true length, from the root out
    (MuPoTS-3D's official 3DPCK does this, ``mpii_map_to_gt_bone_lengths``), (..., 16) ."""
    return joint_errors(set_bone_lengths(pred, bone_lengths(target)), target)


def mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Protocol 1: mean per-joint position error per sample, (N, 16, 3) x 2 -> (N,)."""
    return joint_errors(pred, target).mean(-1)


def procrustes_align(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Best similarity transform (rotation, scale, translation) of ``pred`` onto ``target``.

    Per sample, via an SVD of the 3x3 cross-covariance; reflections are excluded by flipping the
    sign of the last singular direction when ``det(R) < 0``.

    Args:
        pred, target: (N, J, 3).

    Returns:
        (N, J, 3) the aligned prediction.
    """
    mu_x, mu_y = target.mean(-2, keepdim=True), pred.mean(-2, keepdim=True)
    x0, y0 = target - mu_x, pred - mu_y
    norm_x = x0.pow(2).sum((-2, -1), keepdim=True).sqrt().clamp_min(eps)
    norm_y = y0.pow(2).sum((-2, -1), keepdim=True).sqrt().clamp_min(eps)
    x0, y0 = x0 / norm_x, y0 / norm_y
    u, s, vt = torch.linalg.svd(x0.transpose(-1, -2) @ y0)
    v = vt.transpose(-1, -2)
    sign = torch.sign(torch.linalg.det(v @ u.transpose(-1, -2)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    flip = torch.ones_like(s)
    flip[..., -1] = sign
    rot = (v * flip.unsqueeze(-2)) @ u.transpose(-1, -2)
    scale = (s * flip).sum(-1).view(-1, 1, 1) * norm_x / norm_y
    return scale * (pred - mu_y) @ rot + mu_x


def pa_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Protocol 2: MPJPE after per-sample similarity Procrustes alignment, (N,)."""
    return mpjpe(procrustes_align(pred, target), target)


def n_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MPJPE after the least-squares scale ``<pred, target> / <pred, pred>`` per sample, (N,)."""
    scale = (pred * target).sum((-2, -1)) / pred.pow(2).sum((-2, -1)).clamp_min(1e-12)
    return mpjpe(scale.view(-1, 1, 1) * pred, target)


def pck(pred: torch.Tensor, target: torch.Tensor, threshold: float = PCK_THRESHOLD) -> torch.Tensor:
    """Share of joints (in %) whose error is below ``threshold`` metres, over all samples."""
    return (joint_errors(pred, target) < threshold).float().mean() * 100


def auc(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of `pck` over thresholds 0, 5, ..., 150 mm (in %)."""
    err = joint_errors(pred, target).flatten()
    th = torch.tensor(AUC_THRESHOLDS, device=err.device, dtype=err.dtype)
    return (err.unsqueeze(0) < th.unsqueeze(1)).float().mean() * 100


class PoseMetrics(Metric):
    """Accumulates MPJPE, PA-MPJPE, N-MPJPE, PCK, AUC and per-joint MPJPE over batches.

    ``update(pred, target)`` takes root-relative (B, 16, 3) poses in metres; ``compute()``
    returns a dict: ``mpjpe``, ``pa_mpjpe``, ``n_mpjpe`` (mm), ``pck``, ``auc`` (%), ``frames``,
    ``per_joint`` (16,) mm, ``per_bone_angle`` (15,) degrees (`bone_angle_errors`) and
    ``per_bone_length`` (15,) predicted / true length (`bone_length_ratios`), each a mean
    over frames. States are sums, reduced across processes by summation.
    """

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("mpjpe", "pa_mpjpe", "n_mpjpe", "frames"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "per_joint", torch.zeros(NUM_JOINTS, dtype=torch.float64), dist_reduce_fx="sum"
        )  # noqa: E501
        for name in ("per_bone_angle", "per_bone_length"):
            self.add_state(name, torch.zeros(NUM_BONES, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "below", torch.zeros(len(AUC_THRESHOLDS), dtype=torch.float64), dist_reduce_fx="sum"
        )  # noqa: E501
        self.register_buffer("thresholds", torch.tensor(AUC_THRESHOLDS), persistent=False)

    def update(self, pred: torch.Tensor, target: torch.Tensor, err=None, pa=None) -> None:
        """Add a batch of (B, 16, 3) predictions and targets (root-relative, metres); ``err``
        (`joint_errors`) and ``pa`` (`pa_mpjpe`) when the caller has them already."""
        err = joint_errors(pred, target) if err is None else err
        pa = pa_mpjpe(pred, target) if pa is None else pa
        self.mpjpe += err.mean(-1).sum().double()
        self.pa_mpjpe += pa.sum().double()
        self.n_mpjpe += n_mpjpe(pred, target).sum().double()
        self.per_joint += err.sum(0).double()
        self.per_bone_angle += bone_angle_errors(pred, target).sum(0).double()
        self.per_bone_length += bone_length_ratios(pred, target).sum(0).double()
        th = self.thresholds.to(err.dtype)
        self.below += (err.reshape(-1, 1) < th).sum(0).double()
        self.frames += pred.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        """The metrics over everything seen since the last reset."""
        n = self.frames.clamp_min(1)
        share = self.below / (n * NUM_JOINTS) * 100
        return {
            "mpjpe": self.mpjpe / n * 1000,
            "pa_mpjpe": self.pa_mpjpe / n * 1000,
            "n_mpjpe": self.n_mpjpe / n * 1000,
            "pck": share[-1],
            "auc": share.mean(),
            "frames": self.frames,
            "per_joint": self.per_joint / n * 1000,
            "per_bone_angle": self.per_bone_angle / n,
            "per_bone_length": self.per_bone_length / n,
        }


#: The metrics a test set logs as ``test/<set>/<metric>``.
LOGGED = ("mpjpe", "pa_mpjpe", "n_mpjpe", "pck", "auc")


#: MPI-INF-3DHP's 14 joints of the joint groups most later papers' PCK and AUC use, in PoseAug's
#: order: every joint but the pelvis (the root, error 0 by construction) and the spine, i.e. the
#: test joints head top, neck, shoulders, elbows, wrists, hips, knees and ankles (PoseAug's head
#: is 3DHP's head top, its thorax 3DHP's neck). Whether the official script's groups cover 14 or
#: all 17 joints is unconfirmed (docs/experiments/2026-12-05-cross-dataset-formats.md). MuPoTS-3D's
#: official script scores exactly these 14 (its joints 1-14; docs/experiments/2026-12-07-mupots3d.md).
PCK_JOINTS_14 = (1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15)
#: The columns of a test set's per-cell sums: MPJPE and PA-MPJPE (metres), frames, then the
#: (joint, frame) counts of `PCK_JOINTS_14` below each of `AUC_THRESHOLDS`.
CELL_COLUMNS = 3 + len(AUC_THRESHOLDS)


def cell_rows(err: torch.Tensor, pa: torch.Tensor, thresholds: torch.Tensor,
              pck_err: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Per frame, the sums `TestSetMetrics` keeps per (subject, action) cell, (B, 3 + 31), from
    the frames' `joint_errors` (B, 16), `pa_mpjpe` (B,) and `AUC_THRESHOLDS` as a tensor; the
    PCK counts from ``pck_err`` (B, 16) where a benchmark defines them on other errors."""
    pck_err = err if pck_err is None else pck_err
    below = (pck_err[:, PCK_JOINTS_14, None] < thresholds.to(err.dtype)).sum(1).to(err.dtype)
    return torch.cat([err.mean(-1, keepdim=True), pa.unsqueeze(1), torch.ones_like(err[:, :1]),
                      below], 1)  # fmt: skip


def cell_summary(sums) -> dict:
    """Plain numbers of summed `cell_rows`: ``mpjpe``, ``pa_mpjpe`` (mm), ``pck_14``, ``auc_14``
    (%, over `PCK_JOINTS_14`) and ``frames``."""
    e, pa, n, *below = [float(v) for v in sums]
    share = [b / max(n * len(PCK_JOINTS_14), 1) * 100 for b in below]
    return {"mpjpe": e / max(n, 1) * 1000, "pa_mpjpe": pa / max(n, 1) * 1000,
            "pck_14": share[-1], "auc_14": sum(share) / len(share), "frames": int(n)}  # fmt: skip


#: At most this many (subject, action) cells per test set: past it a set's cells are per action
#: only (and past it in actions alone, one cell), so labels unique per row stay cheap.
MAX_CELLS = 1 << 16


class TestSetMetrics(nn.Module):
    """`PoseMetrics` of every test set of a datamodule, sums per (subject, action) cell (the
    per-action table where a set has several actions, and its benchmark's tables,
    `evaluation.protocols`) and, optionally, the predictions.

    Args:
        sets: ``{name: PoseSet}`` in the test loaders' order; save_predictions: keep
            ``(stack([pred, target]), index)`` per batch on the CPU in `predictions`.
    """

    def __init__(self, sets: dict, save_predictions: bool = False):
        super().__init__()
        self.names, self.save = list(sets), save_predictions
        self.sets, self.strides = {}, {}
        for n, s in sets.items():
            subjects, actions = s.subjects or ("all",), s.actions or ("all",)
            if len(subjects) * len(actions) > MAX_CELLS:  # (labels unique per row, say)
                subjects = ("all",)
            actions = actions if len(actions) <= MAX_CELLS else ("all",)
            self.sets[n] = (subjects, actions, s.protocol)
            self.strides[n] = (len(actions) if len(subjects) > 1 else 0, int(len(actions) > 1))
            cells = torch.zeros(len(subjects) * len(actions), CELL_COLUMNS, dtype=torch.float64)
            self.register_buffer(f"cells_{n}", cells, persistent=False)
        self.register_buffer("thresholds", torch.tensor(AUC_THRESHOLDS), persistent=False)
        self.metrics = nn.ModuleDict({n: PoseMetrics() for n in self.names})
        self.predictions: dict[str, list] = {n: [] for n in self.names}

    def update(self, name: str, pred: torch.Tensor, target: torch.Tensor, batch: dict) -> None:
        """Add a batch of root-relative predictions of set ``name``."""
        err, pa = joint_errors(pred, target), pa_mpjpe(pred, target)  # (once for both)
        self.metrics[name].update(pred, target, err, pa)
        by_subject, by_action = self.strides[name]
        cell = batch["subject"] * by_subject + batch["action"] * by_action
        pck_err = None
        if self.sets[name][2] == "mupots3d":  # (its official PCK: bones at their true lengths)
            pck_err = joint_errors_at_true_lengths(pred, target)
        rows = cell_rows(err, pa, self.thresholds, pck_err).double()
        getattr(self, f"cells_{name}").index_add_(0, cell, rows)
        if self.save:
            self.predictions[name].append((torch.stack([pred, target]).cpu(), batch["index"].cpu()))

    def compute(self, reduce_sum=lambda t: t) -> tuple[dict, dict]:
        """``(results, logged)``: plain numbers per set (``per_action`` in mm where a set has
        several actions; its benchmark's numbers, `protocols.protocol_metrics`; summed over
        processes by ``reduce_sum``) and the tensors to log."""
        from poseaug_pl.evaluation.protocols import protocol_metrics

        results, logged = {}, {}
        for name, metric in self.metrics.items():
            m = metric.compute()
            res = {k: float(v) if v.ndim == 0 else [float(x) for x in v] for k, v in m.items()}
            res["frames"] = int(res["frames"])
            subjects, actions, protocol = self.sets[name]
            cells = reduce_sum(getattr(self, f"cells_{name}")).cpu()
            cells = cells.view(len(subjects), len(actions), CELL_COLUMNS)
            if len(actions) > 1:
                res["per_action"] = {
                    a: {k: s[k] for k in ("mpjpe", "pa_mpjpe", "frames")}
                    for a, s in zip(actions, map(cell_summary, cells.sum(0))) if s["frames"]
                }  # fmt: skip
            if protocol:
                res |= protocol_metrics(protocol, cells, subjects, actions)
            results[name] = res
            logged |= {f"test/{name}/{k}": m[k].float() for k in LOGGED}
            logged |= {f"test/{name}/{k}": torch.tensor(res[k]) for k in ("pck_14", "auc_14",
                       "pck_seq_mean", "auc_seq_mean") if k in res}  # fmt: skip
        return results, logged
