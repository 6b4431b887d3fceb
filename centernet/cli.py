"""Shared behaviour of the command-line scripts: user errors become one clear line and a
non-zero exit code instead of a traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, TypeVar

from centernet.errors import USER_ERRORS

T = TypeVar("T")

EXIT_USER_ERROR = 2


def run_command(command: Callable[[], T]) -> T:
    """Run `command`; on a config, data, checkpoint or non-finite-loss error print
    `error: <message>` to stderr and exit with status 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide CUDA probing on CPU machines
    logging.getLogger("absl").setLevel(logging.WARNING)  # TFDS reports every dataset it opens
    try:
        return command()
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
