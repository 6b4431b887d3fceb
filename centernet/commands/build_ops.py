"""Compile the native target renderers ahead of time: `centernet build-ops [--force]` (or
`python scripts/build_ops.py ...`), for machines whose users cannot wait for the first start
or have no compiler at run time (`centernet.data.native`). Prints the library's path and the
seconds it took; exit status 2 with `error: ...` when it cannot be built."""

import sys

from centernet.cli import configure_quiet_start


def main() -> None:
    """`centernet build-ops`: build (with `--force`, rebuild) the native library now."""
    configure_quiet_start(sys.argv)
    from centernet.data import native

    sys.exit(native.build_command(sys.argv[1:], prog="centernet build-ops"))
