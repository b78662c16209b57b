"""Generate synthetic media with ground truth (the bundled sample: a porch clip with spoken wake words)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    sample = what.add_parser("sample", help="the bundled sample: porch clip with motion and spoken wake words")
    sample.add_argument("--out", default="samples", help="output directory (default: samples)")


def run(args: argparse.Namespace) -> int:
    from benchmarks.synth.sample import write_sample
    from benchmarks.synth.speech import SpeechError

    try:
        video = write_sample(Path(args.out))
    except (SpeechError, RuntimeError) as exc:
        print(f"cannot make the sample: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {video} and {video.with_suffix('.json')}")
    return 0
