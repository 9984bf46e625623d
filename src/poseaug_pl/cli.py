"""Shared command-line plumbing: Hydra entry points that turn bad input into one clear line."""

from __future__ import annotations

import functools
import sys

import hydra

from .config import ConfigError
from .data import DataError
from .utils import CONFIG_DIR


def entry_point(config_name: str, task):
    """A Hydra main for ``task(cfg)`` with config ``conf/<config_name>.yaml``.

    `DataError` and `ConfigError` end the program with ``error: <message>`` on stderr and exit
    code 2; other exceptions keep their traceback.
    """

    @functools.wraps(task)
    def guarded(cfg):
        try:
            return task(cfg)
        except (DataError, ConfigError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(
        guarded
    )
