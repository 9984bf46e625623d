"""``python -m poseaug_pl.bench``: time the full PoseAug training step against its bare arithmetic.

Runs the real training path (Lightning's loop, index batching from device tensors, bone swap,
fake pools, the four optimisers in Algorithm 1's order, logging at the trainer's interval) for
``bench.warmup`` + ``bench.steps`` batches and times the last ``bench.steps``. Then it times the
same networks' forward / backward / optimiser steps for the same batch in a plain loop, in the
same process (``bare_ms_per_step``). The two alternate ``bench.repeats`` times, so that a busy
machine slows both alike; ``overhead`` is the median of the per-repeat ratios
``ms_per_step / bare_ms_per_step`` (what everything around the arithmetic costs) and
``overhead_range`` their minimum and maximum. A range that contains 1 means the difference is
within the timing noise; a range entirely below 1 means the noise is larger than the effect (the
machine was busy): neither is a real speed-up of Lightning over the bare loop.

Examples::

    python -m poseaug_pl.bench                                   # CPU, VideoPose, batch 1024
    python -m poseaug_pl.bench trainer=gpu precision=bf16-mixed compile=true
    python -m poseaug_pl.bench data.batch_size=4096 model/estimator=simplebaseline

The LAST line of stdout is one JSON object with ``device``, ``estimator``, ``batch_size``,
``ms_per_step``, ``samples_per_s``, ``bare_ms_per_step`` (medians), ``overhead``,
``overhead_range``, ``repeats``, the settings,
``est_epoch_s`` (training batches x ms_per_step, an estimate) and ``peak_mem_mb``.
"""

from __future__ import annotations

import json
import logging
import platform
import statistics
import tempfile
import time
import warnings

import hydra
import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from poseaug_pl.cli import entry_point
from poseaug_pl.data import build_datamodule
from poseaug_pl.geometry import skeleton as sk
from poseaug_pl.train import build_model
from poseaug_pl.training import losses
from poseaug_pl.training.config import ConfigError, check_devices, validate

log = logging.getLogger(__name__)

NETWORKS = ("augmentor", "d3d", "d2d", "estimator")


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or on CPU the process's peak resident size (MiB)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (CUDA only; a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(L.Callback):
    """Wall time of training batches ``warmup`` .. ``warmup + steps - 1``."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps, self.seconds = warmup, steps, None
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """Start the clock at the first timed batch."""
        if batch_idx == self.warmup:
            synchronize(pl_module.device)
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Stop it after the last timed batch."""
        if batch_idx == self.warmup + self.steps - 1:
            synchronize(pl_module.device)
            self.seconds = time.perf_counter() - self._t0


def bare_step(m, opts, batch: dict, step: int) -> None:
    """The arithmetic of one interleaved PoseAug step, without Lightning or bookkeeping.

    The module's own `PoseAugModule.augmentor_loss`, the discriminator and estimator losses
    and the four optimiser steps of `PoseAugModule.training_step` after warm-up; frozen
    networks get ``requires_grad=False`` as toggling does. No bone swap, pools, masks or
    logging.
    """
    opt_a, opt_d3, opt_d2, opt_p = opts
    x3, x2, cam = batch["pose3d"], batch["pose2d"], batch["cam"]

    def only(net):
        for name in NETWORKS:
            getattr(m, name).requires_grad_(name == net)

    only("augmentor")
    loss, out, _ = m.augmentor_loss(x3, x2, cam)
    opt_a.zero_grad(set_to_none=True)
    loss.backward()
    opt_a.step()
    fake3d, fake2d, aug3d = out["ba"].detach(), out["rt_2d"].detach(), out["rt"].detach()
    if step % m.hparams.d_every == 0:
        for opt, disc, real, fake, name in ((opt_d3, m.d3d, x3, fake3d, "d3d"),
                                            (opt_d2, m.d2d, x2, fake2d, "d2d")):  # fmt: skip
            only(name)
            loss_d = losses.lsgan_discriminator_loss(disc(real), disc(fake))
            opt.zero_grad(set_to_none=True)
            loss_d.backward()
            opt.step()
    only("estimator")
    for inp, tgt in ((x2, sk.root_relative(x3)), (fake2d, sk.root_relative(aug3d))):
        loss_p = torch.nn.functional.mse_loss(m.estimator(inp), tgt)
        opt_p.zero_grad(set_to_none=True)
        loss_p.backward()
        opt_p.step()
    for name in NETWORKS:
        getattr(m, name).requires_grad_(True)


def time_bare(model, batch: dict, cfg: DictConfig) -> float:
    """Seconds per `bare_step` over ``bench.steps`` steps after ``bench.warmup``."""
    device = model.device
    opts = model.configure_optimizers()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=str(cfg.precision).startswith("bf16"))  # fmt: skip
    model.train()
    with autocast:
        for i in range(cfg.bench.warmup):
            bare_step(model, opts, batch, i)
        synchronize(device)
        t0 = time.perf_counter()
        for i in range(cfg.bench.steps):
            bare_step(model, opts, batch, i)
        synchronize(device)
    return (time.perf_counter() - t0) / cfg.bench.steps


def _time_fit(cfg: DictConfig, model, dm, warmup: int, steps: int) -> tuple[float, torch.device]:
    """Seconds of ``steps`` training batches after ``warmup`` in Lightning's loop; the device."""
    timer = StepTimer(warmup, steps)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the timed window is shorter than the logging interval on purpose: say nothing about it
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        # (writes no checkpoint, and its CSV log goes to a temporary folder: no CheckpointIO)
        trainer = hydra.utils.instantiate(
            cfg.trainer, max_epochs=1, limit_train_batches=warmup + steps, limit_val_batches=0,
            num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, precision=cfg.precision,
            logger=CSVLogger(tmp, name="bench"), callbacks=[timer],
        )  # fmt: skip
        trainer.fit(model, datamodule=dm)
    if timer.seconds is None:
        raise ConfigError(f"config: only {trainer.num_training_batches} training batches; "
                          f"bench needs bench.warmup + bench.steps = {warmup + steps}")  # fmt: skip
    return timer.seconds, trainer.strategy.root_device


def bench(cfg: DictConfig) -> dict:
    """Time the training step and the bare loop; print the table and the JSON line."""
    validate(cfg)
    check_devices(cfg)
    warmup, steps = int(cfg.bench.warmup), int(cfg.bench.steps)
    if steps < 1 or warmup < 0 or int(cfg.bench.get("repeats", 3)) < 1:
        raise ConfigError(
            f"config: bench.steps and bench.repeats must be >= 1 and bench.warmup "
            f">= 0, got {steps}, {cfg.bench.get('repeats')} and {warmup}"
        )
    L.seed_everything(cfg.seed, verbose=False)
    dm = build_datamodule(OmegaConf.to_container(cfg.data, resolve=True), "config: data")
    dm.check()
    model = build_model(cfg)
    if cfg.compile:
        for name in NETWORKS:
            setattr(model, name, torch.compile(getattr(model, name)))
    repeats, fit_s, bare_s = int(cfg.bench.get("repeats", 3)), [], []
    for _ in range(repeats):  # alternate the two loops: a busy machine slows both alike
        seconds, device = _time_fit(cfg, model, dm, warmup, steps)
        fit_s.append(seconds)
        model.to(device)  # Lightning moves it back to the CPU after fit
        batch = {k: v[: dm.batch_size].to(device) for k, v in dm.train_set.tensors().items()}
        bare_s.append(time_bare(model, batch, cfg))
    ratios = sorted(f / steps / b for f, b in zip(fit_s, bare_s))
    ms, bare = 1000 * statistics.median(fit_s) / steps, statistics.median(bare_s)
    train_set = dm.train_set
    if device.type == "cuda":
        name = f"cuda: {torch.cuda.get_device_name(device)}"
    else:
        name = f"{device.type}: {cpu_name()} ({torch.get_num_threads()} threads)"
    result = {
        "device": name,
        "estimator": type(model.estimator).__name__,
        "batch_size": dm.batch_size,
        "ms_per_step": round(ms, 2),
        "samples_per_s": round(dm.batch_size / (ms / 1000), 1),
        "bare_ms_per_step": round(1000 * bare, 2),
        "overhead": round(statistics.median(ratios), 3),
        "overhead_range": [round(ratios[0], 3), round(ratios[-1], 3)],
        "repeats": repeats,
        "precision": str(cfg.precision),
        "compile": bool(cfg.compile),
        "steps": steps,
        "train_pairs": len(train_set),
        "est_epoch_s": round(len(train_set) // dm.batch_size * ms / 1000, 1),  # batches x ms
        "peak_mem_mb": peak_memory_mb(device),
        "torch": torch.__version__,
    }  # fmt: skip
    lo, hi = result["overhead_range"]
    verdict = ("within the timing noise" if lo <= 1 <= hi else
               "noise larger than the effect (busy machine?)" if hi < 1 else "")  # fmt: skip
    print(f"{result['estimator']} batch {result['batch_size']} on {result['device']}: "
          f"{result['ms_per_step']} ms/step (bare networks {result['bare_ms_per_step']} ms), "
          f"overhead {result['overhead']} ({lo}-{hi} over {repeats} repeats"
          f"{'; ' + verdict if verdict else ''})")  # fmt: skip
    print(json.dumps(result))
    return result


main = entry_point("bench", bench)


if __name__ == "__main__":
    main()
