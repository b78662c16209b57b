"""`python -m benchmarks WHAT`: benchmarks, the soak, and synthetic test media with ground truth.

None of this ships to the board: it lives beside the `edged` package in the repository and runs from a
checkout set up by `./script/setup test` (which installs the extras it needs).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> module under `benchmarks` with `add_arguments(parser)` and `run(args) -> int`
BENCHMARKS: dict[str, str] = {
    "ingest": "ingest",
    "mqtt": "mqtt",
    "caption": "caption",
    "api": "api",
    "kws": "kws",
    "kws-quality": "kws_quality",
    "kws-heldout": "kws_heldout",
    "kws-verifier": "kws_verifier",
    "kws-enroll": "kws_enroll",
    "motion": "motion",
    "pipeline": "pipeline",
    "reconnect": "camera_reconnect",
    "history": "history",
    "ort-avx2": "ort_avx2",
    "vision-profile": "vision_profile",
    "soak": "soak_cli",
    "synth": "synth.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="edged's benchmarks, soak and synthetic test media.")
    what = parser.add_subparsers(dest="benchmark", metavar="WHAT", required=True)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(f"benchmarks.{module_name}")
        sub = what.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edged.logs import configure_logging

    configure_logging("warning", "console")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
