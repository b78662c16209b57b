"""`edged check-config FILE`: validate a config without touching any device or the network."""

from __future__ import annotations

import argparse
import os
import sys

from edged.config import Config, ConfigError, SecretError, load_config
from edged.config.secrets import CREDENTIALS_ENV


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check-config", help="validate a config file (exit 0 valid, 2 invalid)")
    p.add_argument("file", help="YAML config file")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing when the file is valid")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    problems = check_secrets(config)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 2
    if not args.quiet:
        mics = len(config.all_microphones)
        watches = sum(len(cam.watches) for cam in config.cameras.values())
        print(f"{args.file}: valid ({len(config.cameras)} cameras, {mics} microphones, {watches} watches, "
              f"device {config.device.id})")
        for line in keyword_lines(config):
            print(line)
    return 0


def keyword_lines(config: Config) -> list[str]:
    """Each keyword's effective settings: tuned defaults and the config's own values, merged."""
    if not config.all_microphones:
        return []
    out = []
    for kw in config.models.wakeword.keyword_settings:
        line = (f"  keyword {kw.name}: {kw.backend}, cutoff {_value(kw.cutoff)}, window {_value(kw.window)}"
                f"{'' if kw.enabled else ', disabled'}")
        if kw.confirm is not None and kw.confirm.enabled:
            c = kw.confirm
            line += (f"; fires only if {c.backend} agrees within {c.within:g} s (cutoff {_value(c.cutoff)}, "
                     f"window {_value(c.window)})")
        if kw.verify:
            line += ("; each detection checked by its shipped verifier" if kw.verifier is None
                     else f"; each detection checked by your verifier {kw.verifier}")
        out.append(line)
    return out


def _value(x: float | None) -> str:
    return "the model's" if x is None else f"{x:g}"


def check_secrets(config: Config) -> list[str]:
    """Secret files that are named but unreadable (credentials are checked only under systemd)."""
    out = []
    for key, ref in config.secret_refs.items():
        if ref.credential and CREDENTIALS_ENV not in os.environ:
            continue
        try:
            ref.reveal()
        except SecretError as exc:
            out.append(f"{config.source} {key}: {exc}")
    return out
