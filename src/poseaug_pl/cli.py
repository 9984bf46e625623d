"""Shared command-line plumbing: Hydra entry points that turn bad input into one clear line."""

from __future__ import annotations

import functools
import logging
import sys
import warnings

import hydra
from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from .config import ConfigError, TrainingDiverged, WriteFailed
from .data import DataError
from .utils import CONFIG_DIR


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


def entry_point(config_name: str, task):
    """A Hydra main for ``task(cfg)`` with config ``conf/<config_name>.yaml``.

    `DataError`, `ConfigError`, a missing mandatory setting and a ``ValueError`` raised by a
    constructor Hydra instantiates end the program with one ``error: <message>`` line on stderr
    and exit code 2; `TrainingDiverged` and `WriteFailed` (an output file that could not be
    written: disk full, read-only folder) with one line and exit code 1; other exceptions keep
    their traceback.
    """

    @functools.wraps(task)
    def guarded(cfg):
        quiet_third_party()
        # a log file that can no longer be written (disk full) must not print a traceback per
        # record: the write that fails next ends the run with its one error: line
        logging.raiseExceptions = False
        try:
            return task(cfg)
        except (DataError, ConfigError) as e:
            fail(e)
        except (TrainingDiverged, WriteFailed) as e:  # not bad input: exit 1, still one line
            fail(e, code=1)
        except MissingMandatoryValue as e:
            fail(f"config: {e.full_key} is required: add {e.full_key}=...")
        except InstantiationException as e:  # a constructor refused a value: say only why
            if not isinstance(e.__cause__, ValueError):
                raise
            fail(e.__cause__)

    return hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(
        guarded
    )
