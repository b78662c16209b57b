"""`edged motion VIDEO... [--json]`: motion intervals of video files, found by the daemon's own detector.

Each file is read through the daemon's capture path (`read_file_frames`) at the analysis rate and
analysed by a fresh `MotionDetector` with the default settings (or a camera's, with `-c`). An
interval runs from the first motion frame to the end of the last one, in seconds of video time;
motion separated by less than a second is one interval. The MQTT ON/OFF state would additionally
stay ON for `off_delay` after each interval.

JSON mode prints one line per interval, `{"file": <path as given>, "start": s, "end": s}`, as soon
as it is known. A file that cannot be read is reported on stderr naming it; the other files are
still processed and the exit status is 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from edged.analysis.motion import MotionDetector
from edged.analysis.motion.intervals import Interval, IntervalBuilder
from edged.config import ConfigError, load_config
from edged.config.schema import CameraConfig, MotionConfig
from edged.sources.video import StreamError, read_file_frames


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("motion", help="print the motion intervals of video files (exit 2 if a file fails)")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    p.add_argument("--json", action="store_true", help="one JSON line per interval: {file, start, end}")
    p.add_argument("-c", "--config", help="use a camera's motion settings and analysis rate from this config")
    p.add_argument("--camera", help="the camera in --config (default: its only camera)")
    p.set_defaults(func=run)


def _default_fps() -> float:
    field = next(f for f in dataclasses.fields(CameraConfig) if f.name == "analysis_fps")
    return float(field.default)  # type: ignore[arg-type]


def _settings(args: argparse.Namespace) -> tuple[MotionConfig, float] | str:
    """The motion settings and analysis rate to use, or an error message."""
    if args.config is None:
        if args.camera is not None:
            return "--camera needs --config"
        return MotionConfig(), _default_fps()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return str(exc)
    cameras = config.cameras
    if args.camera is None and len(cameras) != 1:
        return f"{args.config}: name the camera with --camera (cameras: {', '.join(cameras) or 'none'})"
    name = args.camera if args.camera is not None else next(iter(cameras))
    if name not in cameras:
        return f"{args.config}: no camera {name!r} (cameras: {', '.join(cameras) or 'none'})"
    return cameras[name].motion, cameras[name].analysis_fps


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if isinstance(settings, str):
        print(f"edged motion: {settings}", file=sys.stderr)
        return 2
    config, fps = settings
    status = 0
    for path in args.videos:
        try:
            scan(path, config, fps, args.json)
        except StreamError as exc:
            print(f"edged motion: {exc}", file=sys.stderr)
            status = 2
    return status


def scan(path: str, config: MotionConfig, fps: float, as_json: bool) -> list[Interval]:
    """Print (and return) the motion intervals of one file; raises `StreamError` naming it if it is unreadable."""
    detector = MotionDetector(config)
    builder = IntervalBuilder(1.0 / fps)
    found: list[Interval] = []
    frames = 0
    last_t = 0.0
    for frame in read_file_frames(path, fps):
        frames += 1
        last_t = frame.pts
        closed = builder.add(frame.pts, detector.update(frame.image, frame.pts).motion)
        if closed is not None:
            found.append(closed)
            _emit(path, closed, as_json)
    if frames == 0:
        raise StreamError(f"{path}: no frame could be decoded")
    tail = builder.finish()
    if tail is not None:
        found.append(tail)
        _emit(path, tail, as_json)
    if not as_json:
        total = sum(b - a for a, b in found)
        print(f"{path}: {len(found)} motion interval{'s' if len(found) != 1 else ''}, {total:.1f} s of motion"
              f" in {last_t + 1.0 / fps:.1f} s ({frames} frames analysed at {fps:g} fps)", flush=True)
    return found


def _emit(path: str, interval: Interval, as_json: bool) -> None:
    start, end = interval
    if as_json:
        print(json.dumps({"file": path, "start": round(start, 3), "end": round(end, 3)}), flush=True)
    else:
        print(f"{path}: motion {start:7.2f} s - {end:7.2f} s ({end - start:.1f} s)", flush=True)
