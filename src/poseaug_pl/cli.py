"""Shared command-line plumbing: Hydra entry points that turn bad input into one clear line."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import warnings

import hydra
from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
    SearchPathException,
)
from omegaconf import DictConfig
from omegaconf.errors import (
    InterpolationResolutionError,
    InterpolationToMissingValueError,
    MissingMandatoryValue,
)

from poseaug_pl.errors import ConfigError, DataError, TrainingDiverged, WriteFailed
from poseaug_pl.preflight import required_line
from poseaug_pl.utils import CONFIG_DIR


def fail(message, code: int = 2) -> None:
    """End the program with ``error: <message>`` (one line) on stderr and exit ``code``."""
    text = str(message).splitlines()[0] if str(message) else repr(message)
    print(f"error: {text}", file=sys.stderr)
    sys.exit(code)


class _DropTips(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_third_party() -> None:
    """Silence noise that is not about the user's run: Lightning's cloud-logger tip and a
    deprecation warning Lightning itself triggers on recent PyTorch (``LeafSpec``)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")


#: What Hydra raises when it cannot compose the configuration the command line asks for.
COMPOSITION_ERRORS = (ConfigCompositionException, OverrideParseException, SearchPathException)


def _close(word: str, options) -> str:
    """`` (did you mean X?)`` for the option nearest to ``word``, or nothing."""
    import difflib  # (only on the error path)

    near = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {near[0]}?)" if near else ""


def _nearest_key(key: str, config_name: str, overrides) -> str:
    """`` (did you mean a.b?)`` for a dotted ``key`` the configuration lacks, from the config
    composed without the overrides of that key; nothing when that cannot be had."""
    import difflib

    from hydra import compose

    parts = key.split(".")
    rest = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != key]
    for attempt in (rest, []):
        try:
            node = compose(config_name, overrides=attempt)
            break
        except Exception:  # a second bad override, a sweep, ...: try without them
            continue
    else:
        return ""
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return ""
        if part not in node:
            near = difflib.get_close_matches(part, [str(k) for k in node.keys()], n=1, cutoff=0.75)
            return f" (did you mean {'.'.join([*parts[:i], near[0]])}?)" if near else ""
        node = node[part]
    return ""


def composition_error_line(e: Exception, config_name: str, overrides=()) -> str:
    """One line for what Hydra raises when it cannot compose a configuration.

    An unknown group option names the group and its options (and the nearest one); an unknown
    key names the key (and the nearest existing one: ``config_name`` is composed again with
    ``overrides`` less those of that key); an override Hydra cannot parse is quoted with why.
    """
    if isinstance(e, MissingConfigException) and e.options and e.missing_cfg_file:
        group, _, name = e.missing_cfg_file.rpartition("/")
        return (f"config: unknown {group} {name!r}{_close(name, e.options)}; available: "
                f"{', '.join(e.options)}")  # fmt: skip
    lines = [line.strip() for line in str(e).splitlines()]
    if "Config search path:" in lines:  # the search path is not about the user's mistake
        lines = lines[: lines.index("Config search path:")]
    lines = [line for line in lines if line and not line.startswith("See https://hydra.cc")]
    if isinstance(e, OverrideParseException):
        key = str(e.override or "").lstrip("+~").split("=", 1)[0]
        digit = next((part for part in key.split(".") if part[:1].isdigit()), None)
        if digit:
            return (f"config: cannot parse the override {e.override!r}: a key may not start with "
                    f"a digit ({digit!r}); name it with a letter first, e.g. "
                    f"{str(e.override).split(key)[0]}"
                    f"{key.replace(digit, 'set_' + digit, 1)}=...")  # fmt: skip
        why = [line for line in lines if not line.startswith("Error parsing override")]
        return (f"config: cannot parse the override {e.override!r}: "
                f"{why[0] if why else 'not key=value'} (overrides are key=value)")  # fmt: skip
    m = re.match(r"Could not override '([^']+)'", lines[0] if lines else "")
    if m:
        key = m.group(1)
        hint = next((line for line in lines if line.startswith("To append")), "")
        add = f"; to add a new key use {hint.split(' use ', 1)[1]}" if " use " in hint else ""
        return f"config: unknown key {key}{_nearest_key(key, config_name, overrides)}{add}"
    text = " ".join(lines) or type(e).__name__
    if e.__cause__ is not None and str(e.__cause__).strip():
        text += f" ({str(e.__cause__).strip().splitlines()[0]})"
    return f"config: {text}"


@contextlib.contextmanager
def one_line_composition_errors(config_name: str):
    """Within, Hydra's composition errors (reported by Hydra before any task runs, in several
    lines, exit code 1) end the program with one ``error: config: ...`` line and exit code 2.

    Hydra reports them in ``hydra._internal.utils.run_and_report``, which wraps every step of
    its main (running, multirun sweeps, ``--cfg``); that function is wrapped here for the
    duration, so the successful path costs nothing. ``HYDRA_FULL_ERROR=1`` keeps Hydra's report.
    """
    from hydra._internal import utils as hydra_utils

    report = getattr(hydra_utils, "run_and_report", None)
    if report is None:  # another Hydra: keep its own messages
        yield
        return

    def run_and_report(func):
        def checked():
            try:
                return func()
            except (MissingMandatoryValue, InterpolationToMissingValueError) as e:
                # a mandatory setting left unset that Hydra's own config reads (evaluate's
                # hydra.run.dir names ${ckpt_path}): fails before the task can report it
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                m = re.search(r"Missing mandatory value: ?([\w.]+)", str(e))
                fail(required_line(m.group(1) if m else str(e.full_key)))
            except COMPOSITION_ERRORS as e:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                try:
                    overrides = hydra_utils.get_args_parser().parse_known_args()[0].overrides
                except BaseException:  # (argparse exits on what it cannot parse)
                    overrides = []
                fail(composition_error_line(e, config_name, overrides))

        return report(checked)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = report


def check_group_overrides() -> None:
    """Refuse ``a.b=option`` where ``a/b`` is a config group (``model.estimator=videopose`` for
    ``model/estimator=videopose``): Hydra takes it as a string value and instantiating it fails
    much later with a multi-line report. Does nothing outside a Hydra run.

    Raises:
        ConfigError: such an override.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    for override in HydraConfig.get().overrides.task:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if sep and "." in key and not value.startswith(("{", "null")):
            group = key.replace(".", "/")
            if (CONFIG_DIR / group).is_dir():
                raise ConfigError(f"config: {key} is a config group, not a setting: choose its "
                                  f"option with {group}={value}")  # fmt: skip


#: The Hydra commands (``python -m poseaug_pl.<name>``, config ``conf/<name>.yaml``).
COMMANDS = ("train", "evaluate", "predict", "export", "prepare_data", "bench")


def precheck(command: str, args: list[str]) -> None:
    """Compose ``command``'s config from the command line's ``args`` before the command loads
    torch and Lightning (seconds): a misspelt experiment, group option or key, an override that
    does not parse, a wrong value or a missing file (`poseaug_pl.preflight.problem`) ends the
    program here with the same one line as later (exit 2), in well under a second. Anything else is
    left to the command. Called by ``poseaug_pl/__init__.py`` when the package starts as
    ``python -m poseaug_pl.<command>``; skipped with Hydra's own flags (``--help``, ``-m``, ...)
    and ``HYDRA_FULL_ERROR=1``."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1" or any(a.startswith("-") for a in args):
        return
    from hydra import compose, initialize_config_dir

    from poseaug_pl import preflight

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        try:
            cfg = compose(command, overrides=list(args), return_hydra_config=True)
        except COMPOSITION_ERRORS as e:
            fail(composition_error_line(e, command, args))
        except Exception:  # noqa: BLE001 (not a composition error: the command reports it)
            return
    try:
        problem = preflight.problem(command, cfg)
    except Exception:  # noqa: BLE001 (a config it cannot read: the command reports it)
        return
    if problem:
        fail(problem)


def checkpoint_argument(arg: str) -> str:
    """``ckpt_path=<run folder>`` as ``ckpt_path=<run>/checkpoints/best.ckpt`` (``last.ckpt``
    when it has no best), said on stderr; any other argument unchanged."""
    key, sep, value = arg.partition("=")
    if key != "ckpt_path" or not sep or not os.path.isdir(value):
        return arg
    for name in ("best.ckpt", "last.ckpt"):
        path = os.path.join(value, "checkpoints", name)
        if os.path.isfile(path):
            print(f"ckpt_path={value} is a run folder: using {path}", file=sys.stderr)
            return f"ckpt_path={path}"
    return arg


def entry_point(config_name: str, task):
    """A Hydra main for ``task(cfg)`` with config ``conf/<config_name>.yaml``.

    `DataError`, `ConfigError`, a missing mandatory setting and a ``ValueError`` raised by a
    constructor Hydra instantiates end the program with one ``error: <message>`` line on stderr
    and exit code 2; `TrainingDiverged` and `WriteFailed` (an output file that could not be
    written: disk full, read-only folder) with one line and exit code 1; other exceptions keep
    their traceback. So do an interpolation that cannot be resolved, a config group set like a
    key (`check_group_overrides`) and a configuration Hydra cannot compose from the command line
    (`one_line_composition_errors`): an unknown experiment, recipe or other group option (the
    line lists the options), an unknown key (the line names the nearest one), an override that
    does not parse.
    """

    @functools.wraps(task)
    def guarded(cfg):
        quiet_third_party()
        # a log file that can no longer be written (disk full) must not print a traceback per
        # record: the write that fails next ends the run with its one error: line
        logging.raiseExceptions = False
        try:
            check_group_overrides()
            return task(cfg)
        except (DataError, ConfigError) as e:
            fail(e)
        except (TrainingDiverged, WriteFailed) as e:  # not bad input: exit 1, still one line
            fail(e, code=1)
        except MissingMandatoryValue as e:
            fail(required_line(e.full_key))
        except InterpolationResolutionError as e:  # ${...} naming nothing, an unset ${oc.env:}
            where = f"{e.full_key}" if e.full_key else "an interpolation"
            fail(f"config: cannot resolve {where}: {str(e).splitlines()[0]}")
        except InstantiationException as e:  # a constructor refused a value: say only why
            if not isinstance(e.__cause__, ValueError):
                raise
            fail(e.__cause__)

    main = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(
        guarded
    )

    @functools.wraps(main)
    def checked_main(*args, **kwargs):
        if config_name == "train":  # a resume goes on in its run's folder
            from poseaug_pl.training.resumed_run import run_folder_argument

            sys.argv[1:] = run_folder_argument(sys.argv[1:])
        else:  # ckpt_path=<run folder>: its checkpoint
            sys.argv[1:] = [checkpoint_argument(a) for a in sys.argv[1:]]
        with one_line_composition_errors(config_name):
            return main(*args, **kwargs)

    return checked_main
