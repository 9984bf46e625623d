"""The two schedules of the estimator phase (step 3 of Algorithm 1) and the epoch bookkeeping
they share.

Every run has, in order: warm-up epochs or steps (augmentor and discriminators only), augmented
epochs, and ``real_finish_epochs`` at the end (the estimator alone on the real pairs as given).
The hard ratio rises linearly over the epochs before the finish; every learning rate decays as
``1 - epoch / (max_epochs + 1)``.

* `Interleaved` (Algorithm 1 of the supplement): per batch, after the augmentor and the
  discriminators, one estimator update on the batch's real pairs, then one on its in-frame
  augmented pairs.
* `EpochPhases` (the authors' released code): the training loader makes two passes per epoch.
  The first steps the augmentor and discriminators on every batch and keeps the in-frame
  augmented pairs; the second starts with estimator updates over those pairs and then updates
  the estimator on the real pairs, batch by batch, as Lightning's loader gives them.
"""

from __future__ import annotations

import logging

import torch

from poseaug_pl.geometry import skeleton as sk

log = logging.getLogger(__name__)

#: The network of each of the module's optimisers, in their order.
OPTIMISED = ("augmentor", "discriminator", "discriminator", "estimator")


class Schedule:
    """When each network trains. ``module`` is the `PoseAugModule` it schedules (its
    ``hparams``, ``current_epoch``, ``augmentor_steps`` and trainer)."""

    #: passes over the training pairs per epoch, when the estimator trains on augmented pairs
    passes = 1

    def __init__(self, module):
        self.module = module

    @property
    def _hp(self):
        return self.module.hparams

    def train_passes(self) -> int:
        """Passes per epoch the training loader makes (1 without the estimator's augmented
        training: baselines and augmentor pretraining)."""
        hp = self._hp
        return self.passes if hp.augment and hp.train_estimator else 1

    def finish_start(self) -> int:
        """The first epoch of the real-data finish (``max_epochs`` without one)."""
        hp = self._hp
        return self.module.trainer.max_epochs - (hp.real_finish_epochs if hp.train_estimator else 0)

    def in_real_finish(self) -> bool:
        """Whether this epoch is one of the last ``real_finish_epochs``."""
        return self.module.current_epoch >= self.finish_start()

    def in_warmup(self) -> bool:
        """Whether the estimator waits: fewer than ``warmup_epochs`` epochs or ``warmup_steps``
        augmentor steps done, or an augmentor pretraining (``train_estimator=False``)."""
        hp, m = self._hp, self.module
        return hp.augment and (
            not hp.train_estimator
            or m.current_epoch < hp.warmup_epochs
            or m.augmentor_steps < hp.warmup_steps
        )

    def uses_augmentor(self) -> bool:
        """Whether this epoch trains the augmentor (``augment`` and not the real-data finish)."""
        return self._hp.augment and not self.in_real_finish()

    def hard_ratio(self) -> float:
        """The hard ratio of this epoch: ``start`` -> ``end`` linearly over the augmented epochs."""
        h = self._hp.hard_ratio
        progress = min(1.0, self.module.current_epoch / max(1, self.finish_start() - 1))
        return h["start"] + (h["end"] - h["start"]) * progress

    def lr_factor(self) -> float:
        """Linear decay ``1 - epoch / (max_epochs + 1)`` of every learning rate."""
        return 1.0 - self.module.current_epoch / (self.module.trainer.max_epochs + 1)

    def set_learning_rates(self, optimizers) -> dict[str, float]:
        """Set this epoch's learning rates (nothing stateful to restore on a resume); returns
        them, and the hard ratio of an augmented epoch, to log. Warns when the real-data finish
        starts before ``warmup_steps`` was reached."""
        hp, factor = self._hp, self.lr_factor()
        for opt, name in zip(optimizers, OPTIMISED):
            for group in opt.param_groups:
                group["lr"] = hp.lr[name] * factor
        logged = {f"train/lr/{n}": hp.lr[n] * factor for n in hp.lr}
        if self.uses_augmentor():
            logged["train/aug/hard_ratio"] = self.hard_ratio()
        elif hp.augment and self.module.augmentor_steps < hp.warmup_steps:  # the finish
            log.warning("real-data finish from epoch %d, but the warm-up (model.warmup_steps=%d) "
                        "never ended: the estimator saw no augmented pairs in this run",
                        self.module.current_epoch, hp.warmup_steps)  # fmt: skip
        return logged

    def _pass(self, batch_idx: int) -> tuple[int, int]:
        """``(pass, batch index within the pass)`` of a training batch."""
        trainer = self.module.trainer
        per_pass = getattr(trainer.train_dataloader, "per_pass", trainer.num_training_batches)
        return divmod(batch_idx, max(1, per_pass))

    def gan_batch(self, batch_idx: int) -> bool:
        """Whether this batch steps the augmentor and discriminators (steps 1 and 2)."""
        return self.uses_augmentor() and self._pass(batch_idx)[0] == 0

    def estimator_phase(self, batch: dict, batch_idx: int, aug) -> None:
        """Step 3 for one batch; ``aug`` = ``(x', X', inside)`` of a GAN batch, else None."""
        raise NotImplementedError


class Interleaved(Schedule):
    """Algorithm 1: the real pairs, then the in-frame augmented pairs, every batch."""

    def estimator_phase(self, batch, batch_idx, aug) -> None:
        m = self.module
        if aug is None:  # a baseline or the real-data finish
            m.estimator_step(*m.real_pairs(batch), "real")
        elif not self.in_warmup():
            m.estimator_step(*m.real_pairs(batch), "real")
            m.augmented_step(*aug)


class EpochPhases(Schedule):
    """The released code: a GAN pass that keeps x', then the estimator on x' and on real pairs."""

    passes = 2

    def __init__(self, module):
        super().__init__(module)
        self.buffer: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def estimator_phase(self, batch, batch_idx, aug) -> None:
        m = self.module
        if aug is not None:  # first pass: keep the epoch's augmented pairs (filtered later)
            if not self.in_warmup():
                self.buffer.append(aug)
            return
        second, i = self._pass(batch_idx)
        if self.train_passes() == 1 or (self.in_real_finish() and not second):
            m.estimator_step(*m.real_pairs(batch), "real")  # baseline / finish: one pass
        elif second and not self.in_real_finish() and not self.in_warmup():
            if i == 0:
                self.augmented_pass(len(batch["pose2d"]))
            m.estimator_step(*m.real_pairs(batch), "real")

    def augmented_pass(self, batch_size: int) -> None:
        """Estimator updates over the kept in-frame augmented pairs, in shuffled batches of the
        training batch size. Under DDP every rank takes as many (gradient-averaged) steps as the
        rank that kept the fewest pairs."""
        if not self.buffer:
            return
        x2, x3, inside = (torch.cat(parts) for parts in zip(*self.buffer))
        self.buffer.clear()
        x2, x3 = x2[inside], sk.root_relative(x3[inside])  # one host sync per epoch
        perm = torch.randperm(len(x2), device=x2.device)
        trainer = self.module.trainer
        if trainer.world_size > 1:
            n = trainer.strategy.reduce(torch.tensor(len(perm), device=perm.device), "min")
            perm = perm[: int(n)]
        for start in range(0, len(perm) - 1, batch_size):
            idx = perm[start : start + batch_size]
            if len(idx) > 1:
                self.module.estimator_step(x2[idx], x3[idx], "aug")


SCHEDULES = {"interleaved": Interleaved, "epoch_phases": EpochPhases}
