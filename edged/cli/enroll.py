"""`edged enroll KEYWORD CLIP...`: adapt a built-in keyword's verifier to your voice.

Runs the daemon's own engine over each clip of you saying the keyword (and over recordings without
it, if given), adapts the shipped verifier (`edged.analysis.kws.enroll`) and writes it where
`models.wakeword.keywords[].verifier` can name it. `--record DIR` first records those clips from the
config's microphone, prompting for each; without clips it prints what to record. Prints what it did,
or with `--json` one object:
`{"keyword", "path", "threshold", "clips", "clips_heard", "keyword_windows", "background_windows",
"near_misses", "clips_accepted_before", "clips_accepted_after", "clips_accepted_unseen",
"background_accepted_before", "background_accepted_after"}`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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
    p.add_argument("--record", metavar="DIR",
                   help="first record the clips from the config's microphone (-c; stop the daemon if it holds "
                        "the device), prompting for each: the keyword, then each phrase that sounds like it; "
                        "they are kept in DIR and enrolled with any CLIP and --background given")
    p.add_argument("--mic", help="the config's microphone to record from (default: the first)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each recorded clip (default 3)")
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

    if not args.clips and not args.record:
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
        if args.record:  # after the checks above: nobody records a session that cannot be used
            recorded, others = _record_session(args)
            args.clips, args.background = [*args.clips, *recorded], [*args.background, *others]
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


def _record_session(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Record the keyword `KEYWORD_CLIPS` times, then each phrase that sounds like it, from the config's
    microphone, prompting on stderr; the WAV files' paths (keyword clips, the others)."""
    from edged.analysis.kws.enroll import KEYWORD_CLIPS, SOUNDS_LIKE
    from edged.config import load_config
    from edged.config.schema import microphone_kind
    from edged.sources.audio.readers import AudioError, open_reader
    from edged.sources.audio.wav import write_wav

    if not args.config:
        raise AudioError("--record needs -c CONFIG: it records from the config's microphone")
    if not 0.5 <= args.seconds <= 10:
        raise AudioError(f"--seconds must be between 0.5 and 10 (got {args.seconds:g})")
    mics = load_config(args.config).all_microphones
    mic = next((m for m in mics if args.mic in (None, m.id)), None)
    if mic is None:
        known = ", ".join(m.id for m in mics) or "none"
        which = f" {args.mic!r}" if args.mic else ""
        raise AudioError(f"{args.config}: no microphone{which} to record from (microphones: {known})")
    if microphone_kind(mic.device) == "camera":
        raise AudioError(f"microphone {mic.id!r} is a camera's audio: record from a microphone device (--mic)")
    folder = Path(args.record)
    folder.mkdir(parents=True, exist_ok=True)
    said = args.keyword.replace("_", " ")
    prompts = [(f"{args.keyword}-{i:02d}.wav", said) for i in range(1, KEYWORD_CLIPS + 1)]
    prompts += [(f"not-{args.keyword}-{i:02d}.wav", phrase) for i, phrase in enumerate(SOUNDS_LIKE[args.keyword], 1)]
    reader = open_reader(mic, None)
    written: list[str] = []
    try:
        for i, (name, text) in enumerate(prompts, 1):
            if reader.live:  # a moment to read the prompt; what is heard meanwhile is not kept
                print(f"[{i}/{len(prompts)}] next: '{text}'", file=sys.stderr, flush=True)
                _take(reader, 1.0, mic.id)
            print(f"[{i}/{len(prompts)}] say '{text}' now ({args.seconds:g} s)", file=sys.stderr, flush=True)
            written.append(str(write_wav(folder / name, _take(reader, args.seconds, mic.id))))
    finally:
        reader.close()
    print(f"recorded {len(written)} clips into {folder}", file=sys.stderr, flush=True)
    return written[:KEYWORD_CLIPS], written[KEYWORD_CLIPS:]


def _take(reader: Any, seconds: float, mic: str) -> np.ndarray:
    """The next `seconds` of a reader's audio (16 kHz int16)."""
    from edged.sources.audio.chunk import SAMPLE_RATE
    from edged.sources.audio.convert import to_int16
    from edged.sources.audio.readers import AudioError
    from edged.supervise import SourceEnded

    want = round(seconds * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    have = 0
    while have < want:
        try:
            block = reader.read(0.5)
        except SourceEnded:
            raise AudioError(f"microphone {mic!r}: the audio ended before the recording did") from None
        parts.append(block)
        have += len(block)
    return to_int16(np.concatenate(parts)[:want])


def _print_summary(keyword: str, out: Path, s: dict[str, object]) -> None:
    print(f"wrote {out}: {keyword}'s verifier adapted to {s['keyword_windows']} windows of "
          f"{s['clips_heard']} of {s['clips']} clips, against {s['background_windows']} background "
          f"detections and {s['near_misses']} shipped near misses; threshold {s['threshold']}")
    print(f"  your clips accepted: {s['clips_accepted_before']} of {s['clips_heard']} by the shipped verifier; "
          f"{s['clips_accepted_unseen']} by verifiers enrolled without them (what to expect), "
          f"{s['clips_accepted_after']} by this one (it learned them)")
    if s["background_windows"]:
        print(f"  background detections accepted: {s['background_accepted_before']} before, "
              f"{s['background_accepted_after']} now")
    print("use it in the config:\n"
          f"  models:\n    wakeword:\n      keywords:\n        - {{name: {keyword}, verifier: {out.resolve()}}}")
