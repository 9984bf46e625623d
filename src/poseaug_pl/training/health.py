"""The training health guard of `PoseAugModule`: divergence and GAN collapse.

Divergence, the rule (`LOSS_LIMIT`, `VAL_MPJPE_LIMIT_MM`): a run has diverged when a loss that
is stepped becomes NaN or inf or exceeds 1e6 in size (the estimator's loss is an MSE in m²,
plausible values are far below 1; the GAN losses are O(1)), or when a validation MPJPE is NaN
or above 10 m. It then stops (`TrainingDiverged`, one line and exit 1 on the command line) and
no checkpoint of that state is written; the checkpoints of earlier epochs stay as they are.

Both are watched on the device, without a host sync per step: every update records whether its
loss broke the rule (`HealthGuard._watch`), every augmented batch adds its in-frame and flat
shares to a window, every discriminator step its accuracy. The flags and the window are read
(one sync) at the logging interval and at the epoch's end, and the validation MPJPE once per
validation (`HealthGuard._watch_validation`): a diverged run stops. The `CollapseGuard`
callback reads the collapse window at the logging interval and warns, stops, or restores the
last checkpoint, as its ``on_collapse`` says (``callbacks.collapse_guard.on_collapse``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch

from poseaug_pl.training.config import TrainingDiverged
from poseaug_pl.training.resume import logged_step

log = logging.getLogger(__name__)

#: The networks the health guard watches, in `_bad` order (then the validation MPJPE).
NETWORKS = ("augmentor", "d3d", "d2d", "estimator")
#: A stepped loss larger than this in size (or NaN/inf) means the run diverged.
LOSS_LIMIT = 1e6
#: A validation MPJPE above this (mm; 10 m), or NaN, means the run diverged.
VAL_MPJPE_LIMIT_MM = 1e4
#: The divergence rule, as the error message states it.
RULE = "a stepped loss above 1e6 or NaN/inf, or a validation MPJPE above 10 m, is divergence"


class HealthGuard:
    """Mixin of a LightningModule: call `init_health_guard` in ``__init__``, `_watch` for every
    loss that is stepped and `_watch_augmentation` for every augmented batch."""

    def init_health_guard(self) -> None:
        """Register the guard's device-side state (not saved in checkpoints)."""
        n = len(NETWORKS) + 1  # the networks' losses, then the validation MPJPE
        self.register_buffer("_bad", torch.zeros(n, dtype=torch.bool), persistent=False)
        self.register_buffer("_bad_step", torch.full((n,), -1), persistent=False)
        #: the first value that broke the rule, per slot (for the message)
        self.register_buffer("_bad_value", torch.zeros(n), persistent=False)
        #: sums over the current window: D3d accuracy, D2d accuracy, D steps, inside share,
        #: flat share, augmented batches (see `check_collapse`)
        self.register_buffer("_window", torch.zeros(6), persistent=False)

    def _watch(self, net: str, loss: torch.Tensor) -> None:
        """Remember, on the device (no host sync), whether ``net``'s loss broke the divergence
        rule (NaN, inf or larger than `LOSS_LIMIT` in size), at which step and with which value
        that first happened."""
        self._flag(NETWORKS.index(net), loss.detach(), LOSS_LIMIT)

    def _flag(self, i: int, value: torch.Tensor, limit: float) -> None:
        # in-place on views of the buffers: as few small kernels as the finite-only check took
        bad = (value.abs() <= limit).logical_not_()  # NaN fails every comparison: bad too
        flag, first_value = self._bad[i], self._bad_value[i]
        first = bad > flag  # bad now, not before
        step = logged_step(self._trainer) if self._trainer is not None else 0
        self._bad_step[i].masked_fill_(first, step)
        first_value.copy_(torch.where(first, value, first_value))
        flag |= bad

    def _watch_validation(self, mpjpe_mm: torch.Tensor) -> None:
        """Stop the run (`TrainingDiverged`) if the validation MPJPE (mm) is NaN or above
        `VAL_MPJPE_LIMIT_MM`; called once per validation, before any checkpoint of the epoch."""
        self._flag(len(NETWORKS), mpjpe_mm.detach(), VAL_MPJPE_LIMIT_MM)
        self.check_health()

    def check_health(self) -> None:
        """Raise `TrainingDiverged` if the run diverged by the rule of this module (one host
        sync; called at logging intervals, at epoch end, after validation and before every
        checkpoint is written)."""
        if not bool(self._bad.any()):
            return
        steps = torch.where(self._bad, self._bad_step, torch.iinfo(torch.long).max)
        i = int(steps.argmin())
        value = float(self._bad_value[i])
        if i == len(NETWORKS):
            what = f"the validation MPJPE became {value:.3g} mm"
        elif math.isfinite(value):
            what = f"the {NETWORKS[i]} loss became {value:.3g}"
        else:
            what = f"the {NETWORKS[i]} loss became NaN or inf"
        raise TrainingDiverged(
            f"training diverged: {what} at step {int(steps[i])} ({RULE}); no checkpoint of this "
            "state was written. Lower the learning rates (model.lr.*) or the loss weights "
            "(model.weights.*), or resume from the last checkpoint with another seed"
        )

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Check the health flags at the logging interval and at the epoch's last batch (before
        validation and the epoch-end callbacks see the weights); the only host sync they cost."""
        if (
            _window_end(self.trainer, batch_idx)
            or batch_idx + 1 == self.trainer.num_training_batches
        ):
            self.check_health()

    def _watch_augmentation(self, out: dict, inside: torch.Tensor) -> None:
        """Add this batch's in-frame share and flat share (x' whose 2D joints lie on a point or
        a line: the smaller principal axis under 1% of the larger) to the window, on device."""
        x = out["rt_2d"] - out["rt_2d"].mean(-2, keepdim=True)
        xx, yy, xy = (
            x[..., 0].pow(2).sum(-1),
            x[..., 1].pow(2).sum(-1),
            (x[..., 0] * x[..., 1]).sum(-1),
        )
        half_tr = (xx + yy) / 2  # eigenvalues of the 2x2 covariance: half_tr -+ gap
        gap = (half_tr.pow(2) - (xx * yy - xy.pow(2))).clamp_min(0).sqrt()
        small, large = half_tr - gap, half_tr + gap
        flat = (small < 1e-4 * large) | (large < 1e-8)
        self._window[3] += inside.float().mean()
        self._window[4] += flat.float().mean()
        self._window[5] += 1

    def collapse_reason(self) -> str | None:
        """Why the latest window looks collapsed (None if it does not); resets the window."""
        d3d, d2d, n_disc, inside, flat, n = self._window.tolist()
        self._window.zero_()
        if n == 0:
            return None
        if n_disc and max(d3d, d2d) / n_disc > 0.99:
            which = "d3d" if d3d >= d2d else "d2d"
            return f"the {which} discriminator was right on over 99% of its samples"
        if inside / n < 0.01:
            return "under 1% of the augmented poses were inside the image"
        if flat / n > 0.9:
            return "over 90% of the augmented 2D poses collapsed to a point or a line"
        return None


def _window_end(trainer, batch_idx: int) -> bool:
    """Whether this batch ends a logging window (``trainer.log_every_n_steps`` batches)."""
    return (batch_idx + 1) % max(1, trainer.log_every_n_steps) == 0


class CollapseGuard(L.Callback):
    """What a GAN collapse does: a discriminator right on more than 99% of its samples, under
    1% of x' in the frame, or most x' flat as a point or a line, over a logging window of the
    module's `HealthGuard` (the first window is skipped).

    Args:
        on_collapse: ``warn`` (once per kind), ``stop`` (end the run, exit 1) or ``restore``
            (reload the newest checkpoint's weights and optimiser states with a new seed and
            carry on, at most 3 times).
    """

    def __init__(self, on_collapse: str):
        self.on_collapse = on_collapse  # (checked with the config: `training.config.CHECKS`)
        self.restores = 0
        self._warned: set[str] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if _window_end(trainer, batch_idx) and pl_module.uses_augmentor():
            self.check(trainer, pl_module)

    def check(self, trainer, pl_module) -> None:
        """Act on the module's collapse window (`HealthGuard.collapse_reason`)."""
        if pl_module.augmentor_steps <= trainer.log_every_n_steps:
            pl_module._window.zero_()
            return
        reason = pl_module.collapse_reason()
        if reason is None:
            return
        where = f"GAN collapse at step {logged_step(trainer)}: {reason} over the last window"
        mode = self.on_collapse
        if mode == "restore" and self.restores < 3 and self._restore(trainer, pl_module, where):
            return
        if mode in ("stop", "restore"):
            why = "" if mode == "stop" else "; 3 restores used" if self.restores >= 3 else (
                "; no checkpoint to restore")  # fmt: skip
            hint = (
                "callbacks.collapse_guard.on_collapse=restore" if mode == "stop" else "another seed"
            )
            raise TrainingDiverged(f"training collapsed: {where}{why}; change the seed or the "
                                   f"learning rates, or try {hint}")  # fmt: skip
        if reason.split(" ")[1] not in self._warned:
            self._warned.add(reason.split(" ")[1])
            log.warning(
                "%s (callbacks.collapse_guard.on_collapse=stop or restore acts on it)", where
            )

    def _restore(self, trainer, pl_module, where: str) -> bool:
        """Reload the newest checkpoint's weights and optimiser states, re-seed; False if none."""
        cbs = trainer.checkpoint_callbacks
        paths = [Path(p) for c in cbs for p in (c.last_model_path, c.best_model_path) if p]
        paths = sorted((p for p in paths if p.is_file()), key=lambda p: p.stat().st_mtime)
        if not paths:
            return False
        ckpt = torch.load(paths[-1], map_location=pl_module.device, weights_only=True)
        pl_module.load_state_dict(ckpt["state_dict"])
        for opt, state in zip(trainer.optimizers, ckpt["optimizer_states"]):
            opt.load_state_dict(state)
        self.restores += 1
        seed = int(torch.initial_seed()) + 1000 * self.restores
        torch.manual_seed(seed)
        log.warning("%s: restored %s and re-seeded (%d), restore %d of 3", where, paths[-1], seed,
                    self.restores)  # fmt: skip
        return True
