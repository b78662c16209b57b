"""The `edged` command line: one module per subcommand, registered in `COMMANDS`.

Each module exposes `register(subparsers)`, which adds its parser and sets `func` to a handler
`(args) -> int` (the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules under edged.cli, in the order `edged --help` lists them.
COMMANDS = (
    "run",
    "check_config",
    "watch",
    "install_service",
    "caption",
    "models",
    "kws",
    "enroll",
    "motion",
    "replay",
    "history",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edged", description="Edge AI daemon for cameras and microphones.")
    from edged import __version__

    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"edged.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from edged.logs import configure_logging

    configure_logging("warning", "console")  # tools print results; `edged run` configures its own logging
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edged kws ... | head`
        sys.stderr.close()
        return 0
