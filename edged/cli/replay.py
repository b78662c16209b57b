"""`edged replay VIDEO [--audio FILE] [-c config]`: the whole pipeline on recorded media.

Prints each event the daemon would publish, as it happens (at the recording's pace), then a
summary: captions per hour, trigger -> event and trigger -> caption latency, stale drops,
preemptions, duplicate captions avoided.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from edged.cli.watch import describe
from edged.config import Config, ConfigError, load_config, parse_config
from edged.events import Event, Snapshot, SourceHealth, SourceStatus
from edged.inference.registry import try_load_captioner
from edged.replay import Recorder, replay_config, run_replay


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="run the whole pipeline on recorded media and print what it publishes")
    p.add_argument("video", help="video file (the repository's sample: samples/porch.mp4)")
    p.add_argument("--audio", help="audio file for the camera's microphone (default: the video's own track)")
    p.add_argument("-c", "--config", help="take camera, model and caption settings from this config")
    p.add_argument("--camera", help="which camera of --config to play the video as")
    p.add_argument("--model", help="caption model bundle directory (overrides the config)")
    p.add_argument("--json", action="store_true", help="print events and the summary as JSON lines")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=run)


def _base(args: argparse.Namespace) -> Config | str:
    if args.config is None:
        return parse_config("{}", "<replay>")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return str(exc)
    if args.camera is not None and args.camera not in config.cameras:
        return f"{args.config}: no camera {args.camera!r} (cameras: {', '.join(config.cameras) or 'none'})"
    return config


def _printer(args: argparse.Namespace, base: str, start: float):  # type: ignore[no-untyped-def]
    def echo(event: Event) -> None:
        if args.quiet or isinstance(event, SourceStatus | SourceHealth):
            return
        message = event.to_message(base)
        elapsed = time.monotonic() - start
        if args.json:
            print(json.dumps({"t": round(elapsed, 2), "topic": message.topic, "payload": _payload(event)}),
                  flush=True)
        else:
            short = message.topic.split("/", 2)[-1]
            print(f"{elapsed:7.2f}s  {short:26} {describe(message.topic, message.payload)}", flush=True)

    return echo


def _payload(event: Event) -> object:
    """The payload as JSON data: objects as they are, ON/OFF and other text as strings, JPEGs by size."""
    if isinstance(event, Snapshot):
        return {"jpeg_bytes": len(event.jpeg)}
    payload = event.to_payload()
    return payload.decode(errors="replace") if isinstance(payload, bytes) else payload


def run(args: argparse.Namespace) -> int:
    if not Path(args.video).is_file():
        print(f"{args.video}: file not found", file=sys.stderr)
        return 2
    base = _base(args)
    if isinstance(base, str):
        print(base, file=sys.stderr)
        return 2
    config = replay_config(base, args.video, args.audio, args.camera)
    captioner_config = config.captioner
    if args.model:
        captioner_config = dataclasses.replace(captioner_config, path=Path(args.model), backend="onnx")
    captioner = try_load_captioner(captioner_config) if captioner_config.backend != "none" else None
    recorder = Recorder(_printer(args, config.base_topic, time.monotonic()))
    try:
        summary = run_replay(config, captioner, recorder)
    finally:
        if captioner is not None:
            captioner.close()
    if args.json:
        print(json.dumps({"summary": summary}))
    else:
        print_summary(summary)
    return 0


def print_summary(s: dict[str, object]) -> None:
    print("\nsummary")
    for key, value in s.items():
        if key != "sources":
            print(f"  {key:22} {value}")
