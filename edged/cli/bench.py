"""`edged bench <what>`: benchmarks that print figures next to the baseline they must approach.

Each benchmark is a module under `edged.bench` with `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib

# name -> module under edged.bench
BENCHMARKS: dict[str, str] = {
    "ingest": "ingest",
    "mqtt": "mqtt",
    "caption": "caption",
    "kws": "kws",
    "kws-quality": "kws_quality",
    "motion": "motion",
    "pipeline": "pipeline",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print its figures")
    what = p.add_subparsers(dest="benchmark", metavar="WHAT", required=True)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(f"edged.bench.{module_name}")
        bp = what.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(bp)
        bp.set_defaults(func=module.run)
