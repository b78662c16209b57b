"""Run the sample pipeline fast for N minutes and check memory, threads, descriptors and outbox stay flat."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.report import machine_line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--png", help="write the curves to this PNG (needs the reports extra)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")


def run(args: argparse.Namespace) -> int:
    from benchmarks.soak import run_soak, summary_json, write_png

    print(f"soak: {args.minutes:g} min, 2 cameras + 1 microphone looping the sample faster than real time",
          flush=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    try:
        result = run_soak(args.minutes, args.interval, progress=not args.json)
    except RuntimeError as exc:
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1
    if args.png:
        write_png(result, Path(args.png), f"python -m benchmarks soak, {args.minutes:g} min, {machine_line()}")
    if args.json:
        print(summary_json(result))
    else:
        print(f"\n{machine_line()}, started {started}")
        for name, verdict in result.verdicts.items():
            print(f"  {name:8} {verdict}")
    return 1 if result.grew else 0
