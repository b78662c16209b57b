"""`edged synth sample --out DIR`: generate the bundled sample media (and other synthetic test media)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("synth", help="generate synthetic media with ground truth")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    sample = what.add_parser("sample", help="the bundled sample: porch clip with motion and spoken wake words")
    sample.add_argument("--out", default="samples", help="output directory (default: samples)")
    sample.set_defaults(func=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    from edged.synth.sample import write_sample
    from edged.synth.speech import SpeechError

    try:
        video = write_sample(Path(args.out))
    except (SpeechError, RuntimeError) as exc:
        print(f"cannot make the sample: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {video} and {video.with_suffix('.json')}")
    return 0
