"""`edged kws AUDIO...`: spot keywords in audio files with the daemon's own engine and chunking.

Each file is an independent stream (all state is reset between files) processed causally, chunk by
chunk. With `--json`, one line per detection: `{"file", "keyword", "t", "score"}` where `t` is the
seconds of audio consumed when the detection fired (DESIGN.md section 5: a contract).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from edged.config.schema import MicrophoneConfig, WakewordConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("kws", help="spot keywords in audio files (one line per detection)",
                       description="Spot keywords in audio files, each an independent stream, with the "
                                   "daemon's own keyword engine and chunking.")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files (WAV; other formats need ffmpeg)")
    p.add_argument("--keywords", "-k", help="comma-separated keywords or model paths "
                                            "(default: the config's, else every built-in keyword)")
    p.add_argument("--cutoff", type=float,
                   help="probability cutoff for every keyword (default: the tuned one, else each model's)")
    p.add_argument("--backend", choices=("auto", "micro-wakeword", "openwakeword"),
                   help="model family (default: the config's, else auto: each keyword's tuned family)")
    p.add_argument("--model-defaults", action="store_true",
                   help="each model's own cutoff and window, no second stage (models.wakeword.defaults: model)")
    p.add_argument("--config", "-c", help="take models.wakeword (and the chunk size) from this config file")
    p.add_argument("--chunk-ms", type=int, help="chunk length (default: the daemon's, 10 ms)")
    p.add_argument("--vad", action="store_true", help="enable the VAD gate")
    p.add_argument("--refractory", type=float, help="seconds a keyword stays quiet after firing (default 2)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> tuple[WakewordConfig, int]:
    from edged.config.keywords import BUILTIN_KEYWORDS, MICRO

    chunk_ms = MicrophoneConfig().chunk_ms
    config = WakewordConfig()
    explicit_keywords = False
    if args.config:
        from edged.config import load_config

        full = load_config(args.config)
        config = full.models.wakeword
        explicit_keywords = True
        mics = full.all_microphones
        if mics:
            chunk_ms = mics[0].chunk_ms
    if args.backend:
        config = dataclasses.replace(config, backend=args.backend)
    if args.model_defaults:
        config = dataclasses.replace(config, defaults="model")
    if args.keywords:
        names = tuple(n.strip() for n in args.keywords.split(",") if n.strip())
        config = dataclasses.replace(config, keywords=names)
    elif not explicit_keywords:
        family = MICRO if config.backend == "auto" else config.backend
        config = dataclasses.replace(config, keywords=BUILTIN_KEYWORDS[family])
    if args.cutoff is not None:
        config = dataclasses.replace(config, keywords=tuple(
            dataclasses.replace(k, cutoff=args.cutoff) for k in config.keyword_settings))
    if args.vad:
        config = dataclasses.replace(config, vad=dataclasses.replace(config.vad, enabled=True))
    if args.refractory is not None:
        config = dataclasses.replace(config, refractory=args.refractory)
    return config, args.chunk_ms or chunk_ms


def run(args: argparse.Namespace) -> int:
    from edged.analysis.kws import KeywordEngine, KwsError, spot_file
    from edged.config import ConfigError
    from edged.sources.audio.files import read_recording
    from edged.sources.audio.readers import AudioError

    if args.cutoff is not None and not 0.0 < args.cutoff < 1.0:
        print(f"edged kws: --cutoff must be between 0 and 1, exclusive (got {args.cutoff:g})",
              file=sys.stderr)
        return 2
    try:
        config, chunk_ms = _settings(args)
        engine = KeywordEngine.from_config(config)
    except (ConfigError, KwsError, ValueError) as exc:
        print(f"edged kws: {exc}", file=sys.stderr)
        return 2
    status = 0
    try:
        for path in args.audio:
            try:
                audio = read_recording(path)
            except AudioError as exc:
                print(f"edged kws: {exc}", file=sys.stderr)
                status = 1
                continue
            if audio.conversions:
                print(f"edged kws: {path}: {'; '.join(audio.conversions)}", file=sys.stderr)
            for hit in spot_file(engine, audio.samples, chunk_ms):
                if args.json:
                    print(json.dumps({"file": path, "keyword": hit.keyword, "t": round(hit.stream_time, 3),
                                      "score": round(hit.score, 4)}), flush=True)
                else:
                    print(f"{path}\t{hit.stream_time:8.3f}s\t{hit.keyword}\tscore {hit.score:.3f} "
                          f"(cutoff {hit.cutoff:g}, {hit.backend})", flush=True)
    finally:
        engine.close()
    return status
