"""`edged run [-c FILE]`: the daemon."""

from __future__ import annotations

import argparse
import sys

from edged.config import ConfigError, load_config
from edged.logs import configure_logging

DEFAULT_CONFIG = "/etc/edged/config.yaml"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument("--log-format", choices=("auto", "json", "console"), help="override log.format")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override log.level")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(args.log_level or config.log.level, args.log_format or config.log.format)
    from edged.daemon import Daemon

    config.state_dir.mkdir(parents=True, exist_ok=True)
    return Daemon(config, args.config).run()
