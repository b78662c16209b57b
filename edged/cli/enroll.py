"""`edged enroll KEYWORD CLIP...`: adapt a built-in keyword's verifier to your voice.

Runs the daemon's own engine over each clip of you saying the keyword (and over background audio of
your home, if given), adapts the shipped verifier (`edged.analysis.kws.enroll`) and writes it where
`models.wakeword.keywords[].verifier` can name it. Prints what it did, or with `--json` one object:
`{"keyword", "path", "threshold", "clips", "clips_heard", "keyword_windows", "background_windows",
"near_misses", "clips_accepted_before", "clips_accepted_after", "background_accepted_before",
"background_accepted_after"}`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edged.config.keywords import VERIFIED_KEYWORDS, canonical

if TYPE_CHECKING:
    from edged.config.schema import WakewordConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("enroll", help="adapt a keyword's verifier to your voice from a few recordings",
                       description="Adapt a built-in keyword's verifier to your voice: record yourself "
                                   "saying the keyword 10-20 times (one clip each, any format ffmpeg reads), "
                                   "optionally some minutes of ordinary sound at home, and name the file "
                                   "this writes as the keyword's `verifier:` in the config.")
    p.add_argument("keyword", choices=VERIFIED_KEYWORDS, metavar="KEYWORD",
                   help=f"the keyword: {', '.join(VERIFIED_KEYWORDS)}")
    p.add_argument("clips", nargs="*", metavar="CLIP",
                   help="recordings of you saying the keyword, one per file (none: print what to record)")
    p.add_argument("--background", "-b", nargs="*", default=[], metavar="AUDIO",
                   help="recordings without the keyword: you saying phrases that sound like it (run with no "
                        "CLIP for a list), talk and TV at home; whatever the first stage fires on there is "
                        "taught as not the keyword")
    p.add_argument("--config", "-c", help="take models.wakeword (the keyword's first stage, models_dir) from "
                                          "this config file")
    p.add_argument("--output", "-o", help="the verifier file to write (default: KEYWORD.verifier.npz in "
                                          "models_dir, else in the current folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> tuple[WakewordConfig, Path]:
    """The wakeword config with only this keyword (its first stage as configured, the shipped verifier)
    and where to write the result."""
    from edged.config.schema import KeywordConfig, WakewordConfig

    config = WakewordConfig()
    if args.config:
        from edged.config import load_config

        config = load_config(args.config).models.wakeword
    own = next((k for k in (KeywordConfig(k) if isinstance(k, str) else k for k in config.keywords)
                if canonical(k.name) == args.keyword), KeywordConfig(args.keyword))
    single = dataclasses.replace(config, keywords=(dataclasses.replace(own, verifier=None),))
    folder = config.models_dir or Path(".")
    return single, Path(args.output) if args.output else folder / f"{args.keyword}.verifier.npz"


def _print_script(keyword: str, as_json: bool) -> None:
    from edged.analysis.kws.enroll import KEYWORD_CLIPS, SOUNDS_LIKE

    phrases = SOUNDS_LIKE[keyword]
    if as_json:
        print(json.dumps({"keyword": keyword, "keyword_clips": KEYWORD_CLIPS, "sounds_like": list(phrases)}))
        return
    said = keyword.replace("_", " ")
    print(f"Record with the microphone edged listens on, where you usually speak to it, one clip per file:\n"
          f"  1. '{said}' {KEYWORD_CLIPS} times (as you would say it: near and far, quick and slow)\n"
          f"  2. each of these once or twice (they sound like the keyword, so the verifier must learn them):\n"
          + "\n".join(f"       {p}" for p in phrases)
          + "\n  3. optionally a few minutes of talk or TV in the room\n"
          f"then: edged enroll {keyword} KEYWORD_CLIPS... --background OTHER_RECORDINGS...")


def run(args: argparse.Namespace) -> int:
    from edged.analysis.kws import KeywordEngine, KwsError
    from edged.analysis.kws.enroll import collect, enroll, shipped_near_misses
    from edged.config import ConfigError
    from edged.sources.audio.files import read_recording
    from edged.sources.audio.readers import AudioError

    if not args.clips:
        _print_script(args.keyword, args.json)
        return 0
    try:
        config, out = _config(args)
        engine = KeywordEngine.from_config(config)
    except (ConfigError, KwsError, ValueError) as exc:
        print(f"edged enroll: {exc}", file=sys.stderr)
        return 2
    try:
        shipped = engine.verifiers.get(args.keyword)
        if shipped is None:
            print(f"edged enroll: {args.keyword!r} runs without a verifier in this config (verify: false, "
                  "another family, or openWakeWord not installed): nothing to enroll", file=sys.stderr)
            return 2
        near = shipped_near_misses(args.keyword, shipped.frames)
        clips = []
        for i, path in enumerate(args.clips, 1):
            taps = collect(engine, args.keyword, read_recording(path).samples)
            clips.append(taps)
            print(f"clip {i}/{len(args.clips)} {path}: "
                  f"{'heard' if taps else 'the first stage never fired (is the keyword in it?)'}",
                  file=sys.stderr, flush=True)
        background = []
        for path in args.background:
            taps = collect(engine, args.keyword, read_recording(path).samples)
            background += taps
            print(f"background {path}: {len(taps)} first-stage detections", file=sys.stderr, flush=True)
        result = enroll(shipped, clips, background, near)
    except (AudioError, KwsError) as exc:
        print(f"edged enroll: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"edged enroll: {exc}: record the keyword clearly, one clip each, and try again", file=sys.stderr)
        return 1
    finally:
        engine.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    result.verifier.save(out, {"made_by": "edged enroll", **result.summary()})
    summary = {"path": str(out), **result.summary()}
    if args.json:
        print(json.dumps(summary))
        return 0
    _print_summary(args.keyword, out, result.summary())
    return 0


def _print_summary(keyword: str, out: Path, s: dict[str, object]) -> None:
    print(f"wrote {out}: {keyword}'s verifier adapted to {s['keyword_windows']} windows of "
          f"{s['clips_heard']} of {s['clips']} clips, against {s['background_windows']} background "
          f"detections and {s['near_misses']} shipped near misses; threshold {s['threshold']}")
    print(f"  your clips accepted: {s['clips_accepted_before']} of {s['clips_heard']} by the shipped verifier, "
          f"{s['clips_accepted_after']} now (the clips it learned from: a check, not a measure)")
    if s["background_windows"]:
        print(f"  background detections accepted: {s['background_accepted_before']} before, "
              f"{s['background_accepted_after']} now")
    print("use it in the config:\n"
          f"  models:\n    wakeword:\n      keywords:\n        - {{name: {keyword}, verifier: {out.resolve()}}}")
