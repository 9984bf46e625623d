"""`PoseAugModule`: augmentor, two discriminators and the estimator in one LightningModule.

Manual optimisation steps them per batch in the order of Algorithm 1 of the supplement
(`training_step`): 1. the augmentor (adversarial + regulariser + feedback loss, through the
frozen estimator), 2. the discriminators every ``d_every`` batches, on real samples against a
pool of fakes, 3. the estimator, as the schedule says (`poseaug_pl.training.schedules`:
Algorithm 1's interleaving or the released code's epoch phases). ``augment=False`` trains the
estimator alone on real pairs (the baseline); ``train_estimator=False`` the augmentor and
discriminators alone (the augmentor pretraining). docs/design.md maps the paper and the
released code onto these methods; docs/configuration.md gives every argument's default and
reason (the defaults live in ``conf/model/poseaug.yaml`` only).

Optimisers, in this fixed order: augmentor, 3D discriminator, 2D discriminator, estimator.
All hyper-parameters are plain Python values, so checkpoints load with torch's safe
``weights_only`` loading.
"""

from __future__ import annotations

import logging
from functools import partial

import lightning as L
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from poseaug_pl.data.views import RAISED_SUFFIX
from poseaug_pl.evaluation.metrics import PoseMetrics, TestSetMetrics
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.models import registry
from poseaug_pl.models.batchnorm import as_in_training, frozen_bn_statistics
from poseaug_pl.models.ckpt import load_module
from poseaug_pl.training import losses
from poseaug_pl.training.config import LOSS_FORM, TrainingDiverged, check_warmup_steps
from poseaug_pl.training.health import HealthGuard
from poseaug_pl.training.pairs import PairTransforms
from poseaug_pl.training.pools import FakePool
from poseaug_pl.training.schedules import SCHEDULES

log = logging.getLogger(__name__)

#: Test sets evaluated without flip test-time augmentation (the in-domain protocol).
IN_DOMAIN_SETS = ("h36m", "synthetic")
#: Augmentor outputs kept in `PoseAugModule.last_augmentation` (see `augmentation_parameters`).
AUGMENTATION_KEYS = ("ba_diff", "bl_ratio_bones", "rotation", "translation")
#: The module's networks, in the order of its constructor's specs.
ROLES = ("estimator", "augmentor", "d3d", "d2d")


class PoseAugModule(HealthGuard, L.LightningModule):
    """PoseAug training and evaluation. Arguments come from ``conf/model/poseaug.yaml`` (and the
    experiment and recipe configs), checked by `poseaug_pl.training.config`.

    Args:
        estimator, augmentor, d3d, d2d: network specs ``{name, **arguments}`` built from the
            package's own table (`poseaug_pl.models.registry`; None: the role's only class).
        augment: train with the augmentor (False: the baseline).
        feedback: use the feedback loss (False: "Variant A").
        recipe: ``released``, ``capped`` (the released form, narrower bands) or ``paper``: the
            form of the regulariser and of the feedback loss (`losses.FEEDBACK`).
        schedule: ``interleaved`` (Algorithm 1) or ``epoch_phases`` (the released code).
        lr: learning rates ``{augmentor, discriminator, estimator}``.
        warmup_epochs, warmup_steps: epochs, and augmentor steps over the whole run, before the
            estimator first trains on augmented pairs (the warm-up lasts while either is short).
        real_finish_epochs: the run's last epochs train the estimator alone on the real pairs
            as given (no augmentor, discriminator, augmented pass or jitter; 0: off).
        train_estimator: False trains only the augmentor and discriminators.
        hard_ratio: the released code's ``hardratio_*`` family: ``start``, ``end`` (the BA
            error-ratio band's centre, or the paper's beta, linear over the augmented epochs),
            ``ba_half_width``, ``rt_centre``, ``rt_half_width`` (the released RT band).
        weights: loss weights ``{adv2d, adv3d, reg, feedback_ba, feedback_rt, feedback,
            view_diversity}`` (the last: `losses.view_diversity_loss`; 0 in the released code).
        d_every: discriminator step every that many batches; pool_size: fake pool capacity.
        bone_swap, definition_jitter, refilm: the pair transforms (`PairTransforms`).
        grad_clip: gradient-norm clip per network (0 disables).
    """

    def __init__(
        self,
        estimator: dict,
        augmentor: dict | None,
        d3d: dict | None,
        d2d: dict | None,
        augment: bool,
        feedback: bool,
        recipe: str,
        schedule: str,
        lr: dict,
        warmup_epochs: int,
        warmup_steps: int,
        real_finish_epochs: int,
        train_estimator: bool,
        hard_ratio: dict,
        weights: dict,
        d_every: int,
        pool_size: int,
        bone_swap: bool,
        definition_jitter: dict | None,
        grad_clip: float,
        refilm: dict | None = None,
    ):
        super().__init__()
        estimator, augmentor, d3d, d2d = (  # (saved as plain names and arguments)
            registry.canonical_spec(r, spec)
            for r, spec in zip(ROLES, (estimator, augmentor, d3d, d2d))
        )
        self.save_hyperparameters()
        self.automatic_optimization = False
        for role in ROLES:
            setattr(self, role, registry.build(role, self.hparams[role]))
        self.pool3d = FakePool(pool_size, (sk.NUM_JOINTS, 3))
        self.pool2d = FakePool(pool_size, (sk.NUM_JOINTS, 2))
        # each DDP rank keeps its own pools (DDP would otherwise copy rank 0's every step)
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            self, [f"{p}.{b}" for p in ("pool3d", "pool2d") for b in ("items", "count")]
        )
        self.pairs = PairTransforms(bone_swap, definition_jitter, refilm)
        self.schedule = SCHEDULES[schedule](self)
        #: the feedback loss of the recipe's form (`losses.FEEDBACK`)
        self.feedback_loss = losses.FEEDBACK[LOSS_FORM[recipe]]
        self.init_health_guard()
        self.val_metrics = PoseMetrics()
        self.test_metrics: TestSetMetrics | None = None
        #: after a test: ``{set: {metric: value}}`` and, with `save_predictions`, the predictions
        self.test_results: dict[str, dict] = {}
        self.predictions: dict[str, list] = {}
        self.save_predictions = False
        #: The latest batch's augmentation parameters (detached, on the device; for dashboards).
        self.last_augmentation: dict[str, torch.Tensor] | None = None
        #: The run's resolved config as plain data (set by ``train``; saved in checkpoints).
        self.run_config: dict | None = None
        #: Training batches seen by the augmentor so far (drives ``warmup_steps``; checkpointed).
        self.augmentor_steps = 0
        #: Estimator updates on augmented pairs so far (checkpointed).
        self.augmented_updates = 0

    # --- set-up -----------------------------------------------------------------------------

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None,
                             strict=None, weights_only=None, **kwargs):  # fmt: skip
        """Lightning's loader, made safe: `poseaug_pl.models.ckpt.load_module` (networks by
        name, tensors and plain data only; Lightning's ``_instantiator`` and ``hparams_file``
        are not honoured). ``kwargs`` replace stored constructor arguments."""
        if hparams_file is not None:
            raise ValueError("hparams_file is not supported: the checkpoint's own are used")
        model = load_module(checkpoint_path, **kwargs)
        return model.to(map_location) if isinstance(map_location, (str, torch.device)) else model

    def setup(self, stage: str) -> None:
        """Take the training subjects' bone templates from the datamodule (for the bone swap)."""
        dm = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and self.hparams.augment and dm is not None:
            self.pairs.set_bone_templates(dm.train_bone_templates())

    def configure_optimizers(self):
        """Four Adam optimisers: augmentor, 3D discriminator, 2D discriminator, estimator."""
        lr = self.hparams.lr
        return [
            torch.optim.Adam(self.augmentor.parameters(), lr=lr["augmentor"]),
            torch.optim.Adam(self.d3d.parameters(), lr=lr["discriminator"]),
            torch.optim.Adam(self.d2d.parameters(), lr=lr["discriminator"]),
            torch.optim.Adam(self.estimator.parameters(), lr=lr["estimator"]),
        ]

    def train_passes(self) -> int:
        """Passes over the training pairs per epoch (the datamodule's training loader asks)."""
        return self.schedule.train_passes()

    def uses_augmentor(self) -> bool:
        """Whether this epoch trains the augmentor (`Schedule.uses_augmentor`)."""
        return self.schedule.uses_augmentor()

    def on_train_start(self) -> None:
        """Refuse a ``warmup_steps`` the run cannot reach (`config.check_warmup_steps`); under
        DDP, give every rank its own random stream (bone swap, augmentor noise, pools).

        All ranks start from the same seed (or the same restored checkpoint state), draw the
        same base seed from it and add their rank, so runs stay reproducible per rank.
        """
        hp = self.hparams
        if hp.augment and hp.train_estimator:  # (the batches per epoch are known from here on)
            batches = self.trainer.num_training_batches / self.train_passes()
            check_warmup_steps(hp.warmup_steps, self.schedule.finish_start(), batches)
        if self.trainer.world_size > 1:
            base = int(torch.randint(0, 2**31 - 1, (1,)))
            torch.manual_seed(base + self.global_rank)

    def on_train_epoch_start(self) -> None:
        """Set every optimiser's learning rate for this epoch (`Schedule.set_learning_rates`)."""
        self.log_dict(self.schedule.set_learning_rates(self.optimizers()), on_epoch=True)

    def on_before_optimizer_step(self, optimizer) -> None:
        """Clip each network's gradient norm (after AMP unscaling)."""
        if self.hparams.grad_clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.hparams.grad_clip)

    # --- training -----------------------------------------------------------------------------

    def training_step(self, batch, batch_idx):
        """One batch of Algorithm 1 (steps 1-2 only on the schedule's GAN batches)."""
        if not self.schedule.gan_batch(batch_idx):  # a baseline, a real pass or the finish
            return self.schedule.estimator_phase(batch, batch_idx, None)
        x3, x2, cam = self.pairs.source(batch)
        out = self._augmentor_step(x3, x2, cam)  # 1. augmentor
        if batch_idx % self.hparams.d_every == 0:
            self._discriminator_step(x3, x2, out)  # 2. discriminators
        aug = self._augmented_pairs(out, cam)
        self.schedule.estimator_phase(batch, batch_idx, aug)  # 3. estimator
        self.augmentor_steps += 1
        return None

    def _update(self, opt_index: int, net: str, compute):
        """One step of optimiser ``opt_index`` on the loss ``compute()`` builds (its first item,
        when it returns a tuple), with only that optimiser's parameters taking gradients:
        ``zero_grad -> manual_backward -> step``; ``net`` names it for the health guard.
        Returns what ``compute`` returned."""
        opt = self.optimizers()[opt_index]
        self.toggle_optimizer(opt)
        try:
            result = compute()
            loss = result[0] if isinstance(result, tuple) else result
            self._watch(net, loss)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
        finally:
            self.untoggle_optimizer(opt)
        return result

    def real_pairs(self, batch: dict):
        """``(pose2d, root-relative pose3d)`` of real pairs as the estimator learns from them
        (with the joint-definition jitter when it covers real pairs, outside the finish)."""
        x2, x3, cam = batch["pose2d"], batch["pose3d"], batch.get("cam")
        if self.schedule.in_real_finish():
            return x2, sk.root_relative(x3)
        if self.pairs.refilms("real"):
            x2, x3, cam = self.pairs.refilm(x3, cam)
        if self.pairs.jitters("real"):
            x2, x3 = self.pairs.redefine(x3, x2, cam)
        return x2, sk.root_relative(x3)

    def _augmented_pairs(self, out: dict, cam):
        """``(x', X', inside)``: the augmented pairs (re-filmed and jittered when those cover
        them) and which are finite and inside the image (the rest never reach the estimator)."""
        x2, x3 = out["rt_2d"], out["rt"]
        if self.pairs.refilms("augmented"):
            x2, x3, cam = self.pairs.refilm(x3, cam)
        inside = (x2.abs() <= 1).flatten(1).all(1) & x3.isfinite().flatten(1).all(1)
        self.log("train/aug/inside_frac", inside.float().mean())
        self._watch_augmentation(out, inside)
        if self.pairs.jitters("augmented"):
            x2, x3 = self.pairs.redefine(x3, x2, cam)
        return x2, x3, inside

    def estimator_step(self, pose2d, target, tag: str) -> None:
        """One estimator update (MSE on root-relative metres), logged as ``loss_<tag>``."""
        mse = nn.functional.mse_loss
        loss = self._update(3, "estimator", lambda: mse(self.estimator(pose2d), target))
        self.augmented_updates += tag == "aug"
        self.log(f"train/pose/loss_{tag}", loss.detach(), prog_bar=tag == "real")

    def augmented_step(self, aug2d, aug3d, inside) -> None:
        """One estimator update on a batch's augmented pairs (Algorithm 1's interleaving), with
        the estimator's running statistics left those of real data."""
        with frozen_bn_statistics(self.estimator):
            loss = self._update(3, "estimator", partial(self.augmented_estimator_loss, aug2d,
                                                        aug3d, inside))  # fmt: skip
        self.augmented_updates += 1
        self.log("train/pose/loss_aug", loss.detach())

    def augmented_estimator_loss(self, aug2d, aug3d, inside) -> torch.Tensor:
        """The estimator's loss on augmented pairs, from the in-frame samples only: the batch
        is refilled with them (repeated in a fixed order to keep the batch size, without a host
        sync), so they alone set the BatchNorm batch statistics, as in the released code. A
        batch without any in-frame sample gives a zero loss.

        Args:
            aug2d: (B, 16, 2) x'; aug3d: (B, 16, 3) X' (camera frame); inside: (B,) bool.
        """
        keep = inside[:, None, None]  # out-of-frame (or non-finite) samples become zeros, so that
        aug2d = torch.where(keep, aug2d, 0.0)  # not even a zero-weighted NaN reaches a gradient
        target = torch.where(keep, sk.root_relative(aug3d), 0.0)
        n_in = inside.sum()
        order = torch.argsort((~inside).to(torch.int8), stable=True)  # in-frame first
        idx = order[torch.arange(len(order), device=order.device) % n_in.clamp_min(1)]
        err = (self.estimator(aug2d[idx]) - target[idx]).pow(2).mean()
        return torch.where(n_in > 0, err, torch.zeros_like(err))

    def augmentor_loss(self, x3, x2, cam):
        """The augmentor's loss for source poses (the arithmetic of step 1 of Algorithm 1).

        Returns:
            ``(loss, out, logged)``: the scalar loss, the augmentor's output dict, and the
            detached loss parts to log (``train/aug/*``).
        """
        out = self.augmentor(x3, cam)
        adv3d = losses.lsgan_generator_loss(self.d3d(out["ba"]))
        adv2d = losses.lsgan_generator_loss(self.d2d(out["rt_2d"]))
        reg = losses.ba_regulariser(out["ba_diff"], out["ba_residual"],
                                    LOSS_FORM[self.hparams.recipe])  # fmt: skip
        reg = reg + losses.bl_regulariser(out["bl_ratio"])
        w = self.hparams.weights
        loss = w["adv2d"] * adv2d + w["adv3d"] * adv3d + w["reg"] * reg
        logged = {"train/aug/adv3d": adv3d.detach(), "train/aug/adv2d": adv2d.detach(),
                  "train/aug/reg": reg.detach()}  # fmt: skip
        if self.hparams.feedback and not self.schedule.in_warmup():
            with as_in_training(self.estimator):  # the released code's estimator here
                feedback, ratio_ba, ratio_rt = self.feedback_loss(
                    self.estimator, x2, x3, out, self.hparams.hard_ratio,
                    self.schedule.hard_ratio(), w)  # fmt: skip
            loss = loss + feedback
            logged |= {"train/aug/error_ratio_ba": ratio_ba, "train/aug/error_ratio_rt": ratio_rt}
        if w["view_diversity"] > 0:
            again = self.augmentor.draw_rotation(x3)
            spread = losses.view_diversity_loss(out["rotation_matrix"], again)
            loss = loss + w["view_diversity"] * spread
            logged["train/aug/view_diversity"] = spread.detach()
        return loss, out, logged

    def _augmentor_step(self, x3, x2, cam) -> dict:
        """Step 1 of Algorithm 1: update A; returns its (detached) output dict."""
        loss_a, out, logged = self._update(0, "augmentor", lambda: self.augmentor_loss(x3, x2, cam))
        out = {k: v.detach() for k, v in out.items()}
        self.last_augmentation = {k: out[k] for k in AUGMENTATION_KEYS}
        self.log_dict({**logged, "train/aug/loss": loss_a.detach()})
        return out

    @staticmethod
    def discriminator_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor):
        """LSGAN loss of ``disc`` on real against fake samples, and its detached accuracies
        (the shares scored on the right side of 0.5): ``(loss, real_acc, fake_acc)``."""
        real_s, fake_s = disc(real), disc(fake)
        loss = losses.lsgan_discriminator_loss(real_s, fake_s)
        return loss, (real_s.detach() > 0.5).float().mean(), (fake_s.detach() < 0.5).float().mean()

    def _discriminator_step(self, x3, x2, out) -> None:
        """Step 2 of Algorithm 1: update D3d and D2d on real samples against pooled fakes."""
        for i, disc, real, fake, pool, tag in (
            (1, self.d3d, x3, out["ba"], self.pool3d, "d3d"),
            (2, self.d2d, x2, out["rt_2d"], self.pool2d, "d2d"),
        ):
            step = partial(self.discriminator_loss, disc, real, pool.query(fake))
            loss, real_acc, fake_acc = self._update(i, tag, step)
            self._window[i - 1] += (real_acc + fake_acc) / 2
            self.log_dict({f"train/disc/{tag}_loss": loss.detach(),
                           f"train/disc/{tag}_real_acc": real_acc,
                           f"train/disc/{tag}_fake_acc": fake_acc})  # fmt: skip
        self._window[2] += 1  # discriminator steps in the window

    # --- evaluation ---------------------------------------------------------------------------

    def forward(self, pose2d: torch.Tensor) -> torch.Tensor:
        """Estimate root-relative 3D poses (B, 16, 3) from normalised 2D (B, 16, 2)."""
        return self.estimator(pose2d)

    def predict_step(self, batch, batch_idx: int = 0, dataloader_idx: int = 0) -> torch.Tensor:
        """`Trainer.predict`: (B, 16, 3) root-relative metres for a batch of normalised 2D: a
        (B, 16, 2) tensor, a dict with ``pose2d`` or a tuple/list (a ``TensorDataset``'s)."""
        if isinstance(batch, dict):
            batch = batch["pose2d"]
        elif isinstance(batch, (tuple, list)):
            batch = batch[0]
        return self.estimator(batch)

    def _broadcast_estimator_buffers(self) -> None:
        """Under DDP, give every rank rank 0's BatchNorm statistics before evaluating (DDP
        copies buffers only at training forwards; evaluation must use the checkpoint's)."""
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            for buf in self.estimator.buffers():
                torch.distributed.broadcast(buf, src=0)

    def on_validation_epoch_start(self) -> None:
        """Same estimator statistics on every rank (see `_broadcast_estimator_buffers`)."""
        self._broadcast_estimator_buffers()

    def validation_step(self, batch, batch_idx):
        """Accumulate validation metrics (held-out training sequences, no flip)."""
        self.val_metrics.update(self.estimator(batch["pose2d"]), sk.root_relative(batch["pose3d"]))

    def on_validation_epoch_end(self) -> None:
        """Log ``val/mpjpe`` (the checkpoint criterion) and ``val/pa_mpjpe``; an MPJPE above
        10 m (or NaN) stops the run before this epoch's checkpoints (`_watch_validation`)."""
        if self.val_metrics.update_count == 0:
            return
        m = self.val_metrics.compute()
        self._watch_validation(m["mpjpe"])
        logged = {"val/mpjpe": m["mpjpe"].float(), "val/pa_mpjpe": m["pa_mpjpe"].float()}
        self.log_dict(logged, prog_bar=True, sync_dist=False)
        self.val_metrics.reset()

    def on_test_epoch_start(self) -> None:
        """Fresh metrics for every test set of the datamodule (`TestSetMetrics`)."""
        self._broadcast_estimator_buffers()
        sets = self.trainer.datamodule.test_sets
        self.test_metrics = TestSetMetrics(sets, self.save_predictions).to(self.device)

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Evaluate one batch of one test set (flip TTA except on the in-domain sets and their
        raised-camera copies, so that a copy differs from its source by the viewpoint alone)."""
        name = self.test_metrics.names[dataloader_idx]
        x2, target = batch["pose2d"], sk.root_relative(batch["pose3d"])
        in_domain = name.removesuffix(RAISED_SUFFIX) in IN_DOMAIN_SETS
        pred = self.estimator(x2) if in_domain else sk.flip_average(self.estimator, x2)
        self.test_metrics.update(name, sk.root_relative(pred), target, batch)

    def on_test_epoch_end(self) -> None:
        """Compute and log ``test/<set>/<metric>``; keep plain numbers in `test_results` and the
        saved predictions in `predictions`."""
        reduce = partial(self.trainer.strategy.reduce, reduce_op="sum")
        self.test_results, logged = self.test_metrics.compute(reduce)
        self.predictions = self.test_metrics.predictions
        self.log_dict(logged)

    # --- checkpoints --------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the RNG states and the augmentor step count, so a resumed run continues.

        Refuses (`TrainingDiverged`) to save a state whose losses or weights are non-finite, so
        ``best.ckpt`` and ``last.ckpt`` always hold a healthy model.
        """
        self.check_health()
        broken = [n for n, p in self.named_parameters() if not bool(p.isfinite().all())]
        if broken:
            raise TrainingDiverged(
                f"training diverged: non-finite weights in {broken[0]} "
                f"({len(broken)} tensors); no checkpoint was written"
            )
        if self.run_config is not None:  # a checkpoint resumes without its run folder too
            checkpoint["run_config"] = self.run_config
        checkpoint["augmentor_steps"] = self.augmentor_steps
        checkpoint["augmented_updates"] = self.augmented_updates
        checkpoint["max_epochs"] = self.trainer.max_epochs
        checkpoint["rng_cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            checkpoint["rng_cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the RNG states stored by `on_save_checkpoint`.

        Fake pools of another size (another ``pool_size`` or an older layout) are training
        state only: they start empty, with a warning, instead of failing the load.
        """
        for name in ("pool3d", "pool2d"):
            getattr(self, name).fit_state(checkpoint.get("state_dict", {}), name)
        self.augmentor_steps = int(checkpoint.get("augmentor_steps", 0))
        self.augmented_updates = int(checkpoint.get("augmented_updates", 0))
        #: epochs trained before a resume (the summary line counts this process's own)
        self.resumed_epochs = int(checkpoint.get("epoch", -1)) + 1
        if "rng_cpu" in checkpoint:
            torch.set_rng_state(checkpoint["rng_cpu"])
        if "rng_cuda" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["rng_cuda"])
