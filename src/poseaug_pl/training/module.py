"""`PoseAugModule`: augmentor, two discriminators and the estimator in one LightningModule.

Manual optimisation steps them per batch in the order of Algorithm 1 of the supplement:

1. augmentor: adversarial + regulariser (+ feedback after warm-up) loss, gradients through the
   frozen estimator (``feedback_mode``);
2. discriminators, every ``d_every`` batches, on real samples against a pool of fakes;
3. estimator, after warm-up (``warmup_epochs`` / ``warmup_steps``, or none with a pretrained
   ``augmentor_ckpt``): one step on the batch's real (un-swapped) pairs, one on the detached
   augmented pairs that stay inside the image (``aug_batch``, ``aug_norm``).

``schedule="epoch_phases"`` instead runs the released code's phases: a GAN pass over the epoch
(augmented pairs buffered on the device), then an estimator pass over the buffer and one over
the real pairs, both at the end of the epoch's last batch. ``augment=False`` trains the
estimator alone on real pairs (the baseline, also how the estimator is pretrained). The last
``real_finish_epochs`` epochs of any run train the estimator alone on the real pairs as given.

Optimisers, in this fixed order: augmentor, 3D discriminator, 2D discriminator, estimator.
Learning rates follow ``lr * (1 - epoch / (max_epochs + 1))``, set from the epoch at each
epoch start (nothing stateful to restore). All hyper-parameters are plain Python values, so
checkpoints load with torch's safe ``weights_only`` loading.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import lightning as L
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from poseaug_pl.data.poseset import DataError
from poseaug_pl.data.views import RAISED_SUFFIX
from poseaug_pl.evaluation.metrics import PoseMetrics, mpjpe, pa_mpjpe
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.geometry.camera import elevation_range, project_to_2d, raise_randomly
from poseaug_pl.geometry.plausibility import camera_elevation_deg
from poseaug_pl.models import registry
from poseaug_pl.models.ckpt import load_module, load_weights, read_checkpoint, sub_state
from poseaug_pl.training import losses
from poseaug_pl.training.config import TrainingDiverged, check_warmup_steps
from poseaug_pl.training.health import HealthGuard
from poseaug_pl.training.pools import FakePool

log = logging.getLogger(__name__)

#: Test sets evaluated without flip test-time augmentation (the in-domain protocol).
IN_DOMAIN_SETS = ("h36m", "synthetic")
#: Augmentor outputs kept in `PoseAugModule.last_augmentation` (see `augmentation_parameters`).
AUGMENTATION_KEYS = ("ba_diff", "bl_ratio_bones", "rotation", "translation")
#: The module's networks, in the order of its constructor's specs.
ROLES = ("estimator", "augmentor", "d3d", "d2d")


#: `definition_jitter`'s factors, in the order `skeleton.redefine_joints` takes them.
JITTER_KEYS = ("hip_width", "hip_drop", "head", "clavicle", "hip_forward")


def definition_jitter_ranges(cfg) -> tuple[str | None, torch.Tensor]:
    """``(pairs, ranges)`` of a `definition_jitter` config: pairs ``augmented``, ``all`` or
    None (off: no config or ``pairs: none``), ranges (5, 2) ``[low, high]`` per `JITTER_KEYS`
    (``hip_forward`` may be left out: no forward shift).

    Raises:
        ValueError: an unknown ``pairs``, a missing factor or a range that is not [low, high]
            with low <= high (widths, head and clavicle also above 0).
    """
    pairs = None if cfg is None else cfg.get("pairs", "none")
    if pairs in (None, "none"):
        return None, torch.zeros(0, 2)
    if pairs not in ("augmented", "all"):
        raise ValueError(f"definition_jitter.pairs must be none, augmented or all, got {pairs!r}")
    rows = []
    for key in JITTER_KEYS:
        r = cfg.get(key, [0.0, 0.0] if key == "hip_forward" else None)
        shift = key in ("hip_drop", "hip_forward")
        ok = r is not None and len(r) == 2 and float(r[0]) <= float(r[1])
        if not ok or (not shift and float(r[0]) <= 0):
            extra = "" if shift else " and low > 0"
            raise ValueError(
                f"definition_jitter.{key} must be [low, high] with low <= high{extra}, got {r!r}"
            )
        rows.append([float(r[0]), float(r[1])])
    return pairs, torch.tensor(rows)


@contextmanager
def bn_running_statistics(module: nn.Module, active: bool = True):
    """BatchNorm layers normalise with (and keep) their running statistics, as in evaluation;
    the rest of ``module`` (dropout) stays in its current mode. Gradients still flow."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.training for m in norms]
    if active:
        for m in norms:
            m.eval()
    try:
        yield
    finally:
        for m, mode in zip(norms, saved):
            m.train(mode)


@contextmanager
def frozen_bn_statistics(module: nn.Module, frozen: bool = True):
    """BatchNorm layers normalise with batch statistics but leave running statistics unchanged."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    if frozen:
        for m in norms:
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


class PoseAugModule(HealthGuard, L.LightningModule):
    """PoseAug training and evaluation.

    Args:
        estimator, augmentor, d3d, d2d: network specs ``{name, **arguments}`` built from the
            package's own table (`poseaug_pl.models.registry`; None: the role's only class).
        augment: train with the augmentor (False: the baseline).
        feedback: use the feedback loss (False: "Variant A").
        recipe: ``released`` or ``paper`` form of regularisers and feedback loss; ``capped``
            (the released form with narrower bands, set by ``conf/recipe/capped.yaml``) is
            the released form here.
        schedule: ``interleaved`` (Algorithm 1) or ``epoch_phases`` (released code).
        lr: learning rates ``{augmentor, discriminator, estimator}``.
        warmup_epochs: epochs that train only the augmentor and discriminators.
        warmup_steps: training batches (augmentor steps) before the estimator first trains,
            counted over the whole run; the warm-up lasts while either count is not reached.
        real_finish_epochs: the run's last epochs, in which the estimator trains alone on the
            real pairs as given (no augmentor, discriminator or augmented pass, no definition
            jitter; one update per batch), at the lowest learning rates of the schedule. The
            released code ends each epoch on a pass over real data; this ends the run on whole
            epochs of it, so the estimator settles on the distribution it is tested on (0: off).
            The hard-ratio schedule spans the epochs before them.
        train_estimator: False trains only the augmentor and discriminators (the stand-alone
            augmentor pretraining whose checkpoint ``augmentor_ckpt`` loads).
        feedback_mode: how the frozen estimator runs inside the feedback loss: ``train``
            (released code: dropout on, BatchNorm batch statistics; running statistics are
            left alone here) or ``eval`` (running statistics, no dropout).
        aug_batch: how out-of-frame augmented samples are kept from the estimator:
            ``rebatch`` (released code: the estimator's augmented batch is filled with the
            valid samples only, so they alone set its BatchNorm batch statistics) or
            ``masked`` (every sample goes through, invalid ones get zero loss weight).
        hard_ratio: ``{start, end}`` of the hard ratio, linear over the epochs (paper: beta of
            the feedback loss; released: centre of the BA error-ratio band).
        rt_ratio: ``{centre, half_width}`` of the released RT band; ba_half_width: BA band.
        weights: loss weights ``{adv2d, adv3d, reg, feedback_ba, feedback_rt, feedback,
            view_diversity}`` (the last: `losses.view_diversity_loss`, 0 = off, the released code).
        d_every: discriminator step every that many batches; pool_size: fake pool capacity.
        bone_swap: give every source pose a random training subject's bone lengths.
        bone_jitter: also scale each source pose's 9 left/right-shared bone groups by an
            independent factor drawn from ``U(1 - bone_jitter, 1 + bone_jitter)`` (0: off, the
            released code). Five training subjects are five body proportions; other datasets
            differ by more (other people, other joint definitions), and an estimator that saw
            only five learns to output them whatever the 2D says. Like the swap, it feeds the
            augmentor and the discriminators' real samples, never the estimator's real pass.
        definition_jitter: ``{hip_width, hip_drop, hip_forward, head, clavicle: [low, high],
            pairs}`` or None (off, the released code). Datasets place the hips, the head and the
            shoulders differently (HumanEva-I's hips sit a third as far apart as Human3.6M's and
            5 cm in front of its pelvis, its head joint 14 cm higher); an estimator that learned
            one placement reads them, and the limbs' depth, wrongly from another. Each estimator
            training pair gets these joints moved (`skeleton.redefine_joints` with factors drawn
            from U(low, high) per pose; the limbs stay), in 3D and, re-projected, in 2D.
            ``pairs``: ``augmented`` (x', X' only: part of the augmentation; the discriminators
            and the feedback loss see the augmentor's own output) or ``all`` (the real pairs
            too; with ``augment=false`` a plain baseline with it).
        d2d_real_views: ``[low, high]`` degrees: the 2D discriminator's real samples are the
            source poses re-filmed from their camera raised by U(low, high) (`raise_randomly`)
            instead of as filmed (None: off, the released code). Four chest-height cameras are
            a sample of the cameras a dataset could have, not their definition; with them alone
            the discriminator calls every view from above fake.
        view_diversity_cap: degrees between two noise draws' rotations beyond which
            ``weights.view_diversity`` rewards nothing more; the augmentor's spread of views per
            pose settles near it.
        view_diversity_of: what ``weights.view_diversity`` spreads: the whole ``rotation``
            (`losses.view_diversity_loss`) or only the camera ``elevation``
            (`losses.elevation_diversity_loss`: higher and lower views, no extra turn or roll).
        grad_clip: gradient-norm clip per network (0 disables).
        aug_bn_stats: let augmented batches update the estimator's BatchNorm running statistics
            in the interleaved schedule. Off by default: the running statistics then describe
            real data only, as they effectively do in the released code, whose every epoch ends
            with a pass over real data. (On, they become a mix of real and augmented batches and
            evaluation on real data suffers.)
        aug_norm: how the estimator's BatchNorm normalises augmented batches in its update:
            ``batch`` (their own batch statistics, as the released code) or ``running`` (the
            running statistics of real data, i.e. the function that is evaluated).
        estimator_update: ``alternate`` (Algorithm 1: one update on the real pairs, then one
            on the augmented pairs) or ``joint`` (one update on the sum of both losses).
        on_collapse: what a GAN collapse does (a discriminator right on more than 99% of its
            samples, under 1% of x' in the frame, or most x' flat as a point or a line, over a
            logging window): ``warn`` (once per kind), ``stop`` (end the run, exit 1) or
            ``restore`` (reload the last checkpoint with a new seed and carry on, at most 3 times).
        estimator_ckpt: optional checkpoint whose estimator weights initialise this estimator.
        augmentor_ckpt: optional checkpoint (e.g. of an augmentor pretraining run) whose
            augmentor, discriminators and fake pools initialise this module's.
        max_epochs: epochs of the schedules (normally the trainer's).
    """

    def __init__(
        self,
        estimator: dict,
        augmentor: dict | None = None,
        d3d: dict | None = None,
        d2d: dict | None = None,
        augment: bool = True,
        feedback: bool = True,
        recipe: str = "released",
        schedule: str = "interleaved",
        lr: dict | None = None,
        warmup_epochs: int = 0,
        warmup_steps: int = 0,
        real_finish_epochs: int = 0,
        train_estimator: bool = True,
        feedback_mode: str = "train",
        aug_batch: str = "rebatch",
        hard_ratio: dict | None = None,
        rt_ratio: dict | None = None,
        ba_half_width: float = 2.0,
        weights: dict | None = None,
        d_every: int = 2,
        pool_size: int = 4096,
        bone_swap: bool = True,
        bone_jitter: float = 0.0,
        definition_jitter: dict | None = None,
        d2d_real_views=None,
        view_diversity_cap: float = 90.0,
        view_diversity_of: str = "rotation",
        grad_clip: float = 1.0,
        aug_bn_stats: bool = False,
        aug_norm: str = "batch",
        on_collapse: str = "warn",
        estimator_update: str = "alternate",
        estimator_ckpt: str | None = None,
        augmentor_ckpt: str | None = None,
        max_epochs: int = 50,
    ):
        super().__init__()
        if recipe not in losses.LOSS_FORM:
            raise ValueError(f"recipe must be one of {sorted(losses.LOSS_FORM)}, got {recipe!r}")
        self.loss_form = losses.LOSS_FORM[recipe]
        if schedule not in ("interleaved", "epoch_phases"):
            raise ValueError(f"schedule must be 'interleaved' or 'epoch_phases', got {schedule!r}")
        if feedback_mode not in ("train", "eval"):
            raise ValueError(f"feedback_mode must be 'train' or 'eval', got {feedback_mode!r}")
        if estimator_update not in ("alternate", "joint"):
            raise ValueError(
                f"estimator_update must be 'alternate' or 'joint', got {estimator_update!r}"
            )
        if aug_norm not in ("batch", "running"):
            raise ValueError(f"aug_norm must be 'batch' or 'running', got {aug_norm!r}")
        if on_collapse not in ("warn", "stop", "restore"):
            raise ValueError(
                f"on_collapse must be 'warn', 'stop' or 'restore', got {on_collapse!r}"
            )
        if aug_batch not in ("rebatch", "masked"):
            raise ValueError(f"aug_batch must be 'rebatch' or 'masked', got {aug_batch!r}")
        if d2d_real_views is not None:
            d2d_real_views = list(elevation_range(d2d_real_views, "d2d_real_views"))
        if view_diversity_of not in ("rotation", "elevation"):
            raise ValueError(
                f"view_diversity_of must be 'rotation' or 'elevation', got {view_diversity_of!r}"
            )
        if not 0 < view_diversity_cap <= 180:
            raise ValueError(
                f"view_diversity_cap must be in (0, 180] degrees, got {view_diversity_cap}"
            )
        estimator, augmentor, d3d, d2d = (
            registry.canonical_spec(role, spec)
            for role, spec in zip(ROLES, (estimator, augmentor, d3d, d2d))
        )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.lr = {"augmentor": 1e-4, "discriminator": 1e-4, "estimator": 1e-4, **(lr or {})}
        self.hard_ratio = {"start": 3.0, "end": 5.0, **(hard_ratio or {})}
        self.rt_ratio = {"centre": 17.0, "half_width": 15.0, **(rt_ratio or {})}
        self.weights = {
            "adv2d": 1.0,
            "adv3d": 6.0,
            "reg": 3.0,
            "feedback_ba": 0.1,
            "feedback_rt": 0.01,
            "feedback": 1.0,
            "view_diversity": 0.0,
            **(weights or {}),
        }
        self.estimator = registry.build("estimator", estimator)
        self.augmentor = registry.build("augmentor", augmentor)
        self.d3d = registry.build("d3d", d3d)
        self.d2d = registry.build("d2d", d2d)
        self.pool3d = FakePool(pool_size, (sk.NUM_JOINTS, 3))
        self.pool2d = FakePool(pool_size, (sk.NUM_JOINTS, 2))
        # each DDP rank keeps its own pools (DDP would otherwise copy rank 0's every step)
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            self, [f"{p}.{b}" for p in ("pool3d", "pool2d") for b in ("items", "count")]
        )
        self.register_buffer("bone_templates", torch.zeros(0, sk.NUM_BONES), persistent=False)
        group = torch.tensor(sk.BONE_SYMMETRY_GROUP)  # bone -> its left/right-shared group
        self.register_buffer("bone_group", group, persistent=False)
        self.jitter_pairs, ranges = definition_jitter_ranges(definition_jitter)
        self.register_buffer("jitter_ranges", ranges, persistent=False)  # (5, 2) or (0, 2)
        self.init_health_guard()
        self.val_metrics = PoseMetrics()
        self.test_metrics = nn.ModuleDict()
        self.test_results: dict[str, dict[str, float]] = {}
        self.predictions: dict[str, list[torch.Tensor]] = {}
        self.save_predictions = False
        self._phase_buffer: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        #: The latest batch's augmentation parameters (detached, on the device; for dashboards).
        self.last_augmentation: dict[str, torch.Tensor] | None = None
        #: Training batches seen by the augmentor so far (drives ``warmup_steps``; checkpointed).
        self.augmentor_steps = 0
        self._estimator_update = (
            self._phases_update if schedule == "epoch_phases" else self._interleaved_update
        )
        if estimator_ckpt:
            self.load_estimator(estimator_ckpt)
        if augmentor_ckpt:
            self.load_augmentor(augmentor_ckpt)

    # --- set-up -----------------------------------------------------------------------------

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None,
                             strict=None, weights_only=None, **kwargs):  # fmt: skip
        """Lightning's loader, made safe: `poseaug_pl.models.ckpt.load_module` (networks by name,
        tensors and plain data only; Lightning's ``_instantiator`` and ``hparams_file`` are
        not honoured). ``kwargs`` replace stored constructor arguments."""
        if hparams_file is not None:
            raise ValueError("hparams_file is not supported: the checkpoint's own are used")
        model = load_module(checkpoint_path, **kwargs)
        return model.to(map_location) if isinstance(map_location, (str, torch.device)) else model

    def load_estimator(self, path: str) -> None:
        """Initialise the estimator from a checkpoint of this module (e.g. a baseline run)."""
        ckpt = read_checkpoint(path, "model.estimator_ckpt")
        est = sub_state(ckpt, "estimator")
        if not est:
            raise DataError(f"{path}: no estimator weights in this checkpoint")
        there = (ckpt.get("hyper_parameters") or {}).get("estimator")
        load_weights(self.estimator, est, path, "model.estimator_ckpt's estimator",
                     here=self.hparams.estimator, there=there)  # fmt: skip
        log.info("estimator initialised from %s", path)

    def load_augmentor(self, path: str) -> None:
        """Initialise augmentor, both discriminators and the fake pools from a checkpoint.

        Used to start from a stand-alone augmentor pretraining run, so that runs which only
        differ after the warm-up (a sweep over the hard ratio) do not repeat it. Pools of
        another size start empty.
        """
        ckpt = read_checkpoint(path, "model.augmentor_ckpt")
        if not sub_state(ckpt, "augmentor"):
            raise DataError(f"{path}: no augmentor weights in this checkpoint")
        there = ckpt.get("hyper_parameters") or {}
        for role in ("augmentor", "d3d", "d2d"):
            load_weights(getattr(self, role), sub_state(ckpt, role), path,
                         f"model.augmentor_ckpt's {role}", here=self.hparams[role],
                         there=there.get(role))  # fmt: skip
        for name in ("pool3d", "pool2d"):
            pool, part = getattr(self, name), sub_state(ckpt, name)
            if part.get("items") is not None and part["items"].shape == pool.items.shape:
                pool.load_state_dict(part)
        log.info("augmentor and discriminators initialised from %s", path)

    def setup(self, stage: str) -> None:
        """Take the training subjects' bone templates from the datamodule (for the bone swap)."""
        dm = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and self.hparams.augment and self.hparams.bone_swap and dm is not None:
            self.bone_templates = dm.train_bone_templates().to(self.device)

    def configure_optimizers(self):
        """Four Adam optimisers: augmentor, 3D discriminator, 2D discriminator, estimator."""
        lr = self.lr
        return [
            torch.optim.Adam(self.augmentor.parameters(), lr=lr["augmentor"]),
            torch.optim.Adam(self.d3d.parameters(), lr=lr["discriminator"]),
            torch.optim.Adam(self.d2d.parameters(), lr=lr["discriminator"]),
            torch.optim.Adam(self.estimator.parameters(), lr=lr["estimator"]),
        ]

    # --- schedules ----------------------------------------------------------------------------

    def _finish_start(self) -> int:
        """The first epoch of the real-data finish (``max_epochs`` without one; an augmentor
        pretraining, ``train_estimator=False``, has none)."""
        hp = self.hparams
        return hp.max_epochs - (hp.real_finish_epochs if hp.train_estimator else 0)

    def _progress(self) -> float:
        """Fraction of the augmented epochs done: 0 at the first, 1 at the last (and after)."""
        return min(1.0, self.current_epoch / max(1, self._finish_start() - 1))

    def current_hard_ratio(self) -> float:
        """The hard ratio at the current epoch (linear from ``start`` to ``end``)."""
        h = self.hard_ratio
        return h["start"] + (h["end"] - h["start"]) * self._progress()

    def lr_factor(self, epoch: int) -> float:
        """Linear decay ``1 - epoch / (max_epochs + 1)`` of every learning rate."""
        return 1.0 - epoch / (self.hparams.max_epochs + 1)

    def in_warmup(self) -> bool:
        """Whether this batch only trains the augmentor and discriminators.

        True while fewer than ``warmup_epochs`` epochs or ``warmup_steps`` augmentor steps are
        done, and always when ``train_estimator`` is False.
        """
        hp = self.hparams
        return hp.augment and (
            not hp.train_estimator
            or self.current_epoch < hp.warmup_epochs
            or self.augmentor_steps < hp.warmup_steps
        )

    def in_real_finish(self) -> bool:
        """Whether this epoch is one of the last ``real_finish_epochs`` (estimator alone, real
        pairs as given); never in an augmentor pretraining (``train_estimator=False``)."""
        return self.current_epoch >= self._finish_start()

    def uses_augmentor(self) -> bool:
        """Whether this epoch trains the augmentor (``augment`` and not a real-data finish)."""
        return self.hparams.augment and not self.in_real_finish()

    def on_train_start(self) -> None:
        """Refuse a ``warmup_steps`` the run cannot reach (`config.check_warmup_steps`); under
        DDP, give every rank its own random stream (bone swap, augmentor noise, pools).

        All ranks start from the same seed (or the same restored checkpoint state), draw the
        same base seed from it and add their rank, so runs stay reproducible per rank.
        """
        hp = self.hparams
        if hp.augment and hp.train_estimator:  # (the batches per epoch are known from here on)
            check_warmup_steps(hp.warmup_steps, self._finish_start(),
                               self.trainer.num_training_batches)  # fmt: skip
        if self.trainer.world_size > 1:
            base = int(torch.randint(0, 2**31 - 1, (1,)))
            torch.manual_seed(base + self.global_rank)

    def on_train_epoch_start(self) -> None:
        """Set every optimiser's learning rate for this epoch."""
        factor = self.lr_factor(self.current_epoch)
        names = ("augmentor", "discriminator", "discriminator", "estimator")
        for opt, name in zip(self.optimizers(), names):
            for group in opt.param_groups:
                group["lr"] = self.lr[name] * factor
        logged = {
            f"train/lr/{n}": self.lr[n] * factor
            for n in ("augmentor", "discriminator", "estimator")
        }
        if self.uses_augmentor():
            logged["train/aug/hard_ratio"] = self.current_hard_ratio()
        elif self.hparams.augment and self.augmentor_steps < self.hparams.warmup_steps:  # finish
            log.warning(
                "real-data finish from epoch %d, but the warm-up (model.warmup_steps=%d) never "
                "ended: the estimator saw no augmented pairs in this run",
                self.current_epoch,
                self.hparams.warmup_steps,
            )
        self.log_dict(logged, on_step=False, on_epoch=True)

    def on_before_optimizer_step(self, optimizer) -> None:
        """Clip each network's gradient norm (after AMP unscaling)."""
        if self.hparams.grad_clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.hparams.grad_clip)

    # --- training -----------------------------------------------------------------------------

    def _update(self, opt, loss: torch.Tensor, net: str) -> None:
        """``zero_grad -> manual_backward -> step`` of one optimiser (inside `_optimising`);
        ``net`` names the network for the health guard (`check_health`)."""
        self._watch(net, loss)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()

    @contextmanager
    def _optimising(self, opt):
        """Only ``opt``'s parameters take gradients inside (Lightning's toggle/untoggle)."""
        self.toggle_optimizer(opt)
        try:
            yield
        finally:
            self.untoggle_optimizer(opt)

    def _source(self, batch):
        """Source poses of this batch, bone swap and jitter applied (re-projected) if enabled."""
        x3, x2, cam = batch["pose3d"], batch["pose2d"], batch["cam"]
        jitter = self.hparams.bone_jitter
        if not self.training or not (len(self.bone_templates) or jitter):
            return x3, x2, cam
        n = x3.shape[0]
        if len(self.bone_templates):
            pick = torch.randint(0, len(self.bone_templates), (n,), device=x3.device)
            lengths = self.bone_templates[pick]
        else:
            lengths = sk.bone_lengths(x3)
        if jitter:
            factor = 1 + jitter * (2 * torch.rand(n, sk.NUM_BONE_GROUPS, device=x3.device) - 1)
            lengths = lengths * factor[:, self.bone_group]
        x3 = sk.set_bone_lengths(x3, lengths)
        return x3, project_to_2d(x3, cam), cam

    def _redefined(self, pose3d, pose2d, cam, pairs: str):
        """``(pose2d, pose3d)`` of estimator training pairs with `definition_jitter` applied
        when it is on for these ``pairs`` (``augmented`` or ``real``) in training. Each 2D joint
        moves by its 3D joint's change in projection, so the unmoved joints keep their 2D as
        given (detections included)."""
        on = self.jitter_pairs in (pairs, "all") and not self.in_real_finish()
        if not (self.training and on):
            return pose2d, pose3d
        if cam is None:
            raise ValueError("definition_jitter needs the camera intrinsics of its pairs")
        lo, hi = self.jitter_ranges.unbind(-1)  # (5,)
        u = torch.rand(pose3d.shape[0], len(lo), device=pose3d.device, dtype=pose3d.dtype)
        moved = sk.redefine_joints(pose3d, *(lo + (hi - lo) * u).unbind(-1))
        return pose2d + project_to_2d(moved, cam) - project_to_2d(pose3d, cam), moved

    def _real_pairs(self, batch: dict):
        """``(pose2d, root-relative pose3d)`` of real pairs as the estimator learns from them
        (`definition_jitter` applied when it covers real pairs); ``batch`` holds ``pose3d``,
        ``pose2d`` and, for the jitter, ``cam``."""
        x2, x3 = self._redefined(batch["pose3d"], batch["pose2d"], batch.get("cam"), "real")
        return x2, sk.root_relative(x3)

    def _d2d_real(self, x3, x2, cam) -> torch.Tensor:
        """The 2D discriminator's real samples: ``x2`` as filmed or, with ``d2d_real_views``,
        ``x3`` re-filmed from its camera raised by a per-sample U(low, high) degrees."""
        views = self.hparams.d2d_real_views
        if not views:
            return x2
        return project_to_2d(raise_randomly(x3, *views), cam)

    def _estimator_step(self, opt, pose2d, target, tag: str) -> torch.Tensor:
        """One estimator update (MSE on root-relative metres); returns the detached loss."""
        with self._optimising(opt):
            loss = nn.functional.mse_loss(self.estimator(pose2d), target)
            self._update(opt, loss, "estimator")
        self.log(f"train/pose/loss_{tag}", loss.detach(), prog_bar=tag == "real")
        return loss.detach()

    @contextmanager
    def _feedback_estimator(self):
        """The estimator as the feedback loss sees it (``feedback_mode``), restored after.

        ``train``: dropout on and BatchNorm batch statistics (the released code), running
        statistics untouched; ``eval``: deterministic, running statistics.
        """
        was_training = self.estimator.training
        self.estimator.train(self.hparams.feedback_mode == "train")
        try:
            with frozen_bn_statistics(self.estimator):
                yield self.estimator
        finally:
            self.estimator.train(was_training)

    def _feedback(self, src2d, src3d, out) -> torch.Tensor:
        """Feedback loss through the frozen estimator (gradients reach the augmentor only)."""
        target_src = sk.root_relative(src3d)
        with self._feedback_estimator() as est:
            if self.loss_form == "paper":
                err_src = losses.pose_error(est(src2d), target_src).detach()
                err_rt = losses.pose_error(est(out["rt_2d"]), sk.root_relative(out["rt"]))
                loss = self.weights["feedback"] * losses.feedback_loss_paper(
                    err_rt, err_src, self.current_hard_ratio()
                )
                ratio_ba = ratio_rt = err_rt.detach().mean() / err_src.mean()
            else:
                err_src = losses.grouped_pose_error(est(src2d), target_src).detach()
                err_ba = losses.grouped_pose_error(est(out["ba_2d"]), sk.root_relative(out["ba"]))
                err_rt = losses.grouped_pose_error(est(out["rt_2d"]), sk.root_relative(out["rt"]))
                ba = losses.feedback_loss_released(
                    err_ba, err_src, self.current_hard_ratio(), self.hparams.ba_half_width
                )
                rt = losses.feedback_loss_released(
                    err_rt, err_src, self.rt_ratio["centre"], self.rt_ratio["half_width"]
                )
                loss = self.weights["feedback_ba"] * ba + self.weights["feedback_rt"] * rt
                ratio_ba = (err_ba.detach() / err_src).mean()
                ratio_rt = (err_rt.detach() / err_src).mean()
        ratios = {"train/aug/error_ratio_ba": ratio_ba, "train/aug/error_ratio_rt": ratio_rt}
        return loss, ratios

    def augmentor_loss(self, x3, x2, cam):
        """The augmentor's loss for source poses (the arithmetic of step 1 of Algorithm 1).

        Returns:
            ``(loss, out, logged)``: the scalar loss, the augmentor's output dict, and the
            detached loss parts to log (``train/aug/*``).
        """
        out = self.augmentor(x3, cam)
        adv3d = losses.lsgan_generator_loss(self.d3d(out["ba"]))
        adv2d = losses.lsgan_generator_loss(self.d2d(out["rt_2d"]))
        reg = losses.ba_regulariser(out["ba_diff"], out["ba_residual"], self.loss_form)
        reg = reg + losses.bl_regulariser(out["bl_ratio"])
        w = self.weights
        loss = w["adv2d"] * adv2d + w["adv3d"] * adv3d + w["reg"] * reg
        logged = {"train/aug/adv3d": adv3d.detach(), "train/aug/adv2d": adv2d.detach(),
                  "train/aug/reg": reg.detach()}  # fmt: skip
        if self.hparams.feedback and not self.in_warmup():
            feedback, ratios = self._feedback(x2, x3, out)
            loss = loss + feedback
            logged.update(ratios)
        if w["view_diversity"] > 0:
            spread = self._view_spread(x3, out)
            loss = loss + w["view_diversity"] * spread
            logged["train/aug/view_diversity"] = spread.detach()
        return loss, out, logged

    def _view_spread(self, x3, out) -> torch.Tensor:
        """`losses.view_diversity_loss` (or `losses.elevation_diversity_loss`) between ``out``'s
        rotations and a second noise draw's for the same poses: the augmentor learns to turn one
        pose into several views."""
        again, cap = self.augmentor.draw_rotation(x3), self.hparams.view_diversity_cap
        if self.hparams.view_diversity_of == "rotation":
            return losses.view_diversity_loss(out["rotation_matrix"], again, cap)
        rel = sk.root_relative(x3)
        elev_a, elev_b = (camera_elevation_deg(rel @ r.mT) for r in (out["rotation_matrix"], again))
        return losses.elevation_diversity_loss(elev_a, elev_b, cap)

    @staticmethod
    def discriminator_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor):
        """LSGAN loss of ``disc`` on real against fake samples, and its detached accuracies.

        Returns:
            ``(loss, real_acc, fake_acc)``: accuracies are the shares scored on the right side
            of 0.5.
        """
        real_s, fake_s = disc(real), disc(fake)
        loss = losses.lsgan_discriminator_loss(real_s, fake_s)
        return loss, (real_s.detach() > 0.5).float().mean(), (fake_s.detach() < 0.5).float().mean()

    def augmented_estimator_loss(self, aug2d, aug3d, inside) -> torch.Tensor:
        """Estimator loss on augmented pairs; out-of-frame samples never contribute.

        ``aug_batch="rebatch"``: the batch is refilled with its in-frame samples only (repeated
        in a fixed order to keep the batch size, without a host sync), so they alone set the
        BatchNorm batch statistics; ``"masked"``: all samples go through with zero weight for
        the out-of-frame ones. A batch without any in-frame sample gives a zero loss.

        Args:
            aug2d: (B, 16, 2) x'; aug3d: (B, 16, 3) X' (camera frame); inside: (B,) bool.
        """
        keep = inside[:, None, None]  # out-of-frame (or non-finite) samples become zeros, so that
        aug2d = torch.where(keep, aug2d, 0.0)  # not even a zero-weighted NaN reaches a gradient
        target = torch.where(keep, sk.root_relative(aug3d), 0.0)
        n_in = inside.sum()
        if self.hparams.aug_batch == "rebatch":
            order = torch.argsort((~inside).to(torch.int8), stable=True)  # in-frame first
            idx = order[torch.arange(len(order), device=order.device) % n_in.clamp_min(1)]
            pred = self.estimator(aug2d[idx])
            err = (pred - target[idx]).pow(2).mean()
            return torch.where(n_in > 0, err, torch.zeros_like(err))
        err = (self.estimator(aug2d) - target).pow(2).mean((1, 2))
        return torch.where(inside, err, torch.zeros_like(err)).sum() / n_in.clamp_min(1)

    def _augmentor_step(self, opt_a, x3, x2, cam) -> dict:
        """Step 1 of Algorithm 1: update A; returns its (detached) output dict."""
        with self._optimising(opt_a):
            loss_a, out, logged = self.augmentor_loss(x3, x2, cam)
            self._update(opt_a, loss_a, "augmentor")
        out = {k: v.detach() for k, v in out.items()}
        self.last_augmentation = {k: out[k] for k in AUGMENTATION_KEYS}
        self.log_dict({**logged, "train/aug/loss": loss_a.detach()})
        return out

    def _discriminator_step(self, opts, x3, x2, out) -> None:
        """Step 2 of Algorithm 1: update D3d and D2d on real samples against pooled fakes."""
        for opt, disc, real, fake, pool, tag in (
            (opts[0], self.d3d, x3, out["ba"], self.pool3d, "d3d"),
            (opts[1], self.d2d, x2, out["rt_2d"], self.pool2d, "d2d"),
        ):
            with self._optimising(opt):
                loss, real_acc, fake_acc = self.discriminator_loss(disc, real, pool.query(fake))
                self._update(opt, loss, tag)
            self._window[0 if tag == "d3d" else 1] += (real_acc + fake_acc) / 2
            self.log_dict({f"train/disc/{tag}_loss": loss.detach(),
                           f"train/disc/{tag}_real_acc": real_acc,
                           f"train/disc/{tag}_fake_acc": fake_acc})  # fmt: skip
        self._window[2] += 1  # discriminator steps in the window

    def training_step(self, batch, batch_idx):
        """One batch of Algorithm 1 (or of the released phases, or of the baseline)."""
        opt_a, opt_d3, opt_d2, opt_p = self.optimizers()
        if not self.uses_augmentor():  # the baseline, or the run's real-data finish
            return self._estimator_step(opt_p, *self._real_pairs(batch), "real")
        x3, x2, cam = self._source(batch)
        out = self._augmentor_step(opt_a, x3, x2, cam)  # 1. augmentor
        if batch_idx % self.hparams.d_every == 0:
            self._discriminator_step((opt_d3, opt_d2), x3, self._d2d_real(x3, x2, cam), out)  # 2.
        finite = out["rt"].isfinite().flatten(1).all(1)
        inside = (out["rt_2d"].abs() <= 1).flatten(1).all(1) & finite
        self.log("train/aug/inside_frac", inside.float().mean())
        self._watch_augmentation(out, inside)
        aug = (*self._redefined(out["rt"], out["rt_2d"], cam, "augmented"), inside)
        self._estimator_update(opt_p, batch_idx, batch, aug)  # 3. estimator
        self.augmentor_steps += 1
        return None

    def _interleaved_update(self, opt_p, batch_idx, batch, aug) -> None:
        """Step 3 of Algorithm 1 (nothing during the warm-up): the estimator learns from the
        real (un-swapped) pairs and the in-frame augmented pairs, either in two updates
        (``estimator_update="alternate"``) or in one update on the sum of both losses
        (``"joint"``: real data gets as many updates as without augmentation)."""
        if self.in_warmup():
            return
        real = self._real_pairs(batch)
        if self.hparams.estimator_update == "alternate":
            self._estimator_step(opt_p, *real, "real")
            with self._optimising(opt_p):
                loss = self._augmented_loss(aug)
                self._update(opt_p, loss, "estimator")
        else:
            with self._optimising(opt_p):
                loss_real = nn.functional.mse_loss(self.estimator(real[0]), real[1])
                loss = self._augmented_loss(aug)
                self._update(opt_p, loss_real + loss, "estimator")
            self.log("train/pose/loss_real", loss_real.detach(), prog_bar=True)
        self.log("train/pose/loss_aug", loss.detach())

    def _augmented_loss(self, aug) -> torch.Tensor:
        """`augmented_estimator_loss` under the BatchNorm settings of augmented batches."""
        hp = self.hparams
        with (
            frozen_bn_statistics(self.estimator, not hp.aug_bn_stats),
            bn_running_statistics(self.estimator, hp.aug_norm == "running"),
        ):
            return self.augmented_estimator_loss(*aug)

    def _phases_update(self, opt_p, batch_idx, batch, aug) -> None:
        """Released schedule: buffer the augmented pairs; at the epoch's last batch, run the
        estimator passes (`_run_phases`)."""
        if not self.in_warmup():  # filtered once per epoch: no per-step host sync
            aug2d, aug3d, inside = aug
            self._phase_buffer.append((aug2d, sk.root_relative(aug3d), inside))
        if batch_idx == self.trainer.num_training_batches - 1 and self._phase_buffer:
            self._run_phases(opt_p, len(batch["pose2d"]))

    def _run_phases(self, opt_p, batch_size: int) -> None:
        """Released schedule: estimator passes over the epoch's augmented buffer, then real data."""
        keep = torch.cat([b[2] for b in self._phase_buffer])
        buf2d = torch.cat([b[0] for b in self._phase_buffer])[keep]
        buf3d = torch.cat([b[1] for b in self._phase_buffer])[keep]
        self._phase_buffer.clear()
        perm = torch.randperm(len(buf2d), device=buf2d.device)
        world, rank = self.trainer.world_size, self.global_rank
        if world > 1:  # every rank must take the same number of (gradient-averaged) steps
            n = self.trainer.strategy.reduce(
                torch.tensor(len(perm), device=perm.device), reduce_op="min"
            )
            perm = perm[: int(n)]
        for i in range(0, len(perm) - 1, batch_size):
            idx = perm[i : i + batch_size]
            if len(idx) > 1:
                self._estimator_step(opt_p, buf2d[idx], buf3d[idx], "aug")
        train = self.trainer.datamodule.train_set
        perm = torch.randperm(len(train), device=train.pose2d.device)
        if world > 1:  # this rank's equal share of the real pairs
            perm = perm[: len(perm) // world * world][rank::world]
        for i in range(0, len(perm) - 1, batch_size):
            idx = perm[i : i + batch_size]
            if len(idx) > 1:
                pairs = {"pose3d": train.pose3d[idx], "pose2d": train.pose2d[idx],
                         "cam": None if train.cam is None else train.cam[idx]}  # fmt: skip
                self._estimator_step(opt_p, *self._real_pairs(pairs), "real")

    # --- evaluation ---------------------------------------------------------------------------

    def forward(self, pose2d: torch.Tensor) -> torch.Tensor:
        """Estimate root-relative 3D poses (B, 16, 3) from normalised 2D (B, 16, 2)."""
        return self.estimator(pose2d)

    def predict_step(self, batch, batch_idx: int = 0, dataloader_idx: int = 0) -> torch.Tensor:
        """`Trainer.predict`: (B, 16, 3) root-relative metres for a batch of normalised 2D.

        ``batch`` is a (B, 16, 2) tensor, a dict with ``pose2d``, or a tuple/list whose first
        item is the tensor (as a ``TensorDataset`` yields).
        """
        if isinstance(batch, dict):
            batch = batch["pose2d"]
        elif isinstance(batch, (tuple, list)):
            batch = batch[0]
        return self.estimator(batch)

    def _broadcast_estimator_buffers(self) -> None:
        """Under DDP, give every rank rank 0's BatchNorm statistics before evaluating.

        DDP copies buffers from rank 0 only at training forwards, so after the last training
        step each rank holds its own running statistics; evaluation must use the ones that go
        into the checkpoint.
        """
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
        self.log_dict(
            {"val/mpjpe": m["mpjpe"].float(), "val/pa_mpjpe": m["pa_mpjpe"].float()},
            prog_bar=True,
            sync_dist=False,
        )
        self.val_metrics.reset()

    def on_test_epoch_start(self) -> None:
        """One metric collection per test set of the datamodule."""
        self._broadcast_estimator_buffers()
        names = self.trainer.datamodule.test_names
        self.test_metrics = nn.ModuleDict({n: PoseMetrics() for n in names}).to(self.device)
        self.predictions = {n: [] for n in names}
        self.test_results = {}
        sets = self.trainer.datamodule.test_sets
        #: per test set with several actions: (actions, 3) sums of MPJPE, PA-MPJPE (m), frames
        self._per_action = {n: torch.zeros(len(sets[n].actions), 3, device=self.device)
                            for n in names if len(sets[n].actions) > 1}  # fmt: skip

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Evaluate one batch of one test set (flip TTA except on the in-domain sets and their
        raised-camera copies, so that a copy differs from its source by the viewpoint alone)."""
        name = self.trainer.datamodule.test_names[dataloader_idx]
        x2, target = batch["pose2d"], sk.root_relative(batch["pose3d"])
        in_domain = name.removesuffix(RAISED_SUFFIX) in IN_DOMAIN_SETS
        pred = self.estimator(x2) if in_domain else sk.flip_average(self.estimator, x2)
        pred = sk.root_relative(pred)
        self.test_metrics[name].update(pred, target)
        if name in self._per_action:
            errors = torch.stack([mpjpe(pred, target), pa_mpjpe(pred, target)], 1)
            self._per_action[name].index_add_(
                0, batch["action"], torch.cat([errors, torch.ones_like(errors[:, :1])], 1)
            )
        if self.save_predictions:
            self.predictions[name].append((torch.stack([pred, target]).cpu(), batch["index"].cpu()))

    def on_test_epoch_end(self) -> None:
        """Compute and log ``test/<set>/<metric>``; keep plain numbers in `test_results`."""
        for name, metric in self.test_metrics.items():
            m = metric.compute()
            res = {k: float(v) if v.ndim == 0 else [float(x) for x in v] for k, v in m.items()}
            res["frames"] = int(res["frames"])
            if name in self._per_action:
                res["per_action"] = self._action_table(name)
            self.test_results[name] = res
            self.log_dict(
                {
                    f"test/{name}/{k}": v.float()
                    for k, v in m.items()
                    if k in ("mpjpe", "pa_mpjpe", "n_mpjpe", "pck", "auc")
                }
            )

    def _action_table(self, name: str) -> dict:
        """``{action: {mpjpe, pa_mpjpe (mm), frames}}`` of one test set, summed over ranks."""
        sums = self.trainer.strategy.reduce(self._per_action[name], reduce_op="sum")
        actions = self.trainer.datamodule.test_sets[name].actions
        return {a: {"mpjpe": e / n * 1000, "pa_mpjpe": pa / n * 1000, "frames": int(n)}
                for a, (e, pa, n) in zip(actions, sums.tolist()) if n > 0}  # fmt: skip

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
        checkpoint["augmentor_steps"] = self.augmentor_steps
        checkpoint["rng_cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            checkpoint["rng_cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the RNG states stored by `on_save_checkpoint`.

        Fake pools of another size (another ``pool_size`` or an older layout) are training
        state only: they start empty, with a warning, instead of failing the load.
        """
        state = checkpoint.get("state_dict", {})
        for name in ("pool3d", "pool2d"):
            pool = getattr(self, name)
            if f"{name}.items" in state and state[f"{name}.items"].shape != pool.items.shape:
                log.warning("%s in the checkpoint has another size; it starts empty", name)
                state[f"{name}.items"] = torch.zeros_like(pool.items)
                state[f"{name}.count"] = torch.zeros_like(pool.count)
        self.augmentor_steps = int(checkpoint.get("augmentor_steps", 0))
        #: epochs trained before a resume (the summary line counts this process's own)
        self.resumed_epochs = int(checkpoint.get("epoch", -1)) + 1
        if "rng_cpu" in checkpoint:
            torch.set_rng_state(checkpoint["rng_cpu"])
        if "rng_cuda" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["rng_cuda"])
