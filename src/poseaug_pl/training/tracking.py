"""Experiment tracking: the W&B logger, run metadata, and the evaluation report.

``logger=wandb`` builds its logger with `wandb_logger`, which

- goes offline by itself when there is no API key or W&B cannot be reached (``mode: auto``), so
  training never depends on the network; ``wandb sync <run>/wandb/offline-run-*`` uploads later;
- names the run after the experiment and its command-line overrides, and groups the jobs of one
  Hydra multirun sweep together;
- never touches ``WANDB_MODE`` (Lightning's ``offline=True`` sets it for the whole process).

`finish_wandb` ends the run after every job (so each job of a multirun gets its own run).
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from poseaug_pl.evaluation import viz
from poseaug_pl.evaluation.protocols import protocol_table_data
from poseaug_pl.evaluation.report import action_table_data, metrics_table_data

log = logging.getLogger(__name__)

#: Override keys left out of run names (they do not change the experiment).
NAME_SKIP = ("experiment", "logger", "hydra", "paths", "callbacks", "trainer.devices",
             "trainer.accelerator", "data.root", "data.cache_dir")  # fmt: skip
MODES = ("auto", "online", "offline", "disabled")


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: this package), or None."""
    path = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                             text=True, timeout=5, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                           capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
    return f"{sha}-dirty" if dirty else sha


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""


def has_api_key() -> bool:
    """Whether a W&B API key is configured (``WANDB_API_KEY`` or ``~/.netrc`` from wandb login)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(_wandb_host()) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def reachable(timeout: float = 2.0) -> bool:
    """Whether the W&B server accepts a TCP connection within ``timeout`` seconds."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_mode(mode: str = "auto") -> tuple[str, str]:
    """The W&B mode to run in and why: ``(online|offline|disabled, reason)``.

    ``auto`` follows ``WANDB_MODE`` when set, else goes online only with an API key and a
    reachable server.
    """
    if mode not in MODES:
        raise ValueError(f"logger.wandb.mode must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode, "requested"
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("online", "offline", "disabled", "dryrun"):
        return ("offline" if env == "dryrun" else env), "WANDB_MODE"
    if os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled", "WANDB_DISABLED"
    if not has_api_key():
        return "offline", "no API key (run `wandb login` or set WANDB_API_KEY)"
    if not reachable():
        return "offline", f"{_wandb_host()} not reachable"
    return "online", "API key and network"


def _hydra_job():
    """Hydra's config of the running job, or None outside a Hydra app."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get()
    except (ImportError, ValueError):
        return None


def run_name(experiment: str) -> str:
    """``<experiment>`` plus the job's meaningful command-line overrides, e.g.
    ``poseaug_h36m model.hard_ratio.end=4.0``."""
    hc = _hydra_job()
    overrides = list(hc.overrides.task) if hc is not None else []
    keep = [o for o in overrides if not o.lstrip("+~").startswith(NAME_SKIP)]
    return " ".join([experiment, *keep])


def run_group(experiment: str) -> str:
    """The experiment name; for a multirun job, ``<experiment>/sweep-<sweep folder>``."""
    hc = _hydra_job()
    if hc is not None and str(hc.mode) == "RunMode.MULTIRUN":
        return f"{experiment}/sweep-{Path(hc.sweep.dir).name}"
    return experiment


def wandb_logger(
    save_dir: str,
    project: str = "poseaug-pl",
    experiment: str = "run",
    entity: str | None = None,
    group: str | None = None,
    name: str | None = None,
    tags: list[str] | None = None,
    mode: str = "auto",
    job_type: str = "train",
    **kwargs,
):
    """A Lightning ``WandbLogger`` with the run identity derived from the experiment.

    Args:
        save_dir: folder of the local W&B files (``<save_dir>/wandb``).
        project, entity: W&B project and team (entity None: your default).
        experiment: experiment name; the default group, first tag and start of the run name.
        group, name: override the derived group (``run_group``) and name (``run_name``).
        tags: extra tags.
        mode: ``auto`` (online with an API key and network, else offline), ``online``,
            ``offline`` or ``disabled``.
        job_type: W&B job type; kwargs: more ``wandb.init`` arguments.
    """
    from lightning.pytorch.loggers import WandbLogger

    resolved, why = resolve_mode(mode)
    if resolved == "offline":
        log.info("W&B offline (%s); upload later with: wandb sync %s/wandb/offline-run-*",
                 why, save_dir)  # fmt: skip
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        entity=entity,
        group=group or run_group(experiment),
        name=name or run_name(experiment),
        tags=list(dict.fromkeys([experiment, *(tags or [])])),
        job_type=job_type,
        mode=resolved,  # passed to wandb.init: no process-wide WANDB_MODE
        log_model=False,  # the best checkpoint is uploaded by `log_checkpoint`
        **kwargs,
    )


def wandb_runs(loggers) -> list:
    """The W&B runs behind the ``WandbLogger``s among ``loggers``."""
    return [lg.experiment for lg in loggers if type(lg).__name__ == "WandbLogger"]


def _online(run) -> bool:
    return getattr(getattr(run, "settings", None), "mode", "") in ("online", "run")


def log_run_metadata(loggers, config: dict, commit: str | None) -> None:
    """Store the resolved config and the git commit in every W&B run's config."""
    for run in wandb_runs(loggers):
        run.config.update({"cfg": config, "git_commit": commit}, allow_val_change=True)


def log_checkpoint(loggers, path: str | Path, aliases=("best",)) -> None:
    """Upload ``path`` as a ``model`` artifact of every online W&B run (offline: nothing)."""
    import wandb

    for run in wandb_runs(loggers):
        if _online(run) and path and Path(path).is_file():
            art = wandb.Artifact(f"model-{run.id}", type="model")
            art.add_file(str(path))
            run.log_artifact(art, aliases=list(aliases))


def finish_wandb(exit_code: int = 0) -> None:
    """End the active W&B run, if any (call after every job, also in multirun)."""
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def report_evaluation(results: dict, figure_dir: str | Path, loggers=(), step: int = 0) -> Path:
    """Per-joint error bar chart (PNG) and metrics table of every test set, also to the loggers.

    Args:
        results: ``{set: {mpjpe, ..., per_joint}}`` as in `PoseAugModule.test_results`.
        figure_dir: folder of ``per_joint_error.png``.
        loggers: W&B loggers get ``test/per_joint_error`` (image), ``test/metrics`` (table) and
            ``test/<set>/per_action`` (table, sets with actions) and the benchmarks' tables
            (``test/<set>/per_scene``, ``test/<set>/per_action_subject``); TensorBoard loggers
            get the figure.
        step: logging step.

    Returns:
        the PNG path.
    """
    fig = viz.per_joint_figure({n: r["per_joint"] for n, r in results.items()})
    path = viz.save_figure_keep(fig, Path(figure_dir) / "per_joint_error.png")
    for lg in loggers:
        kind = type(lg).__name__
        if kind == "WandbLogger":
            import wandb

            table = wandb.Table(*metrics_table_data(results))
            per_action = {f"test/{n}/per_action": wandb.Table(*action_table_data(r["per_action"]))
                          for n, r in results.items() if "per_action" in r}  # fmt: skip
            for n, r in results.items():  # the benchmarks' tables (3DHP scenes, HumanEva-I)
                data = protocol_table_data(r)
                if data is not None:
                    per_action[f"test/{n}/{data[0]}"] = wandb.Table(*data[1:])
            lg.experiment.log(
                {
                    "test/per_joint_error": wandb.Image(str(path)),
                    "test/metrics": table,
                    **per_action,
                }
            )
        elif kind == "TensorBoardLogger":
            lg.experiment.add_figure("test/per_joint_error", fig, global_step=step, close=False)
    viz.close(fig)
    return path
