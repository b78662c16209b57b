"""Ingest + frame selection CPU cost vs. a bare OpenCV loop decoding every frame (the floor).

Both read the same H.264 file as fast as possible in this process; CPU time (all threads) per second
of video is compared. The floor must decode every frame (H.264 frames depend on each other), so
edged can approach it but not beat the decode itself: edged grabs (decodes) every frame too and
converts only the analysed ones to BGR.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from benchmarks.report import machine_line, print_table
from edged.sources.video import read_file_frames

SIZES = {"720p": "1280x720", "1080p": "1920x1080"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=20.0, help="length of each test clip (default 20)")
    p.add_argument("--fps", type=int, default=30, help="frame rate of the clips (default 30)")
    p.add_argument("--analysis-fps", type=float, default=5.0, help="edged's analysis rate (default 5)")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    p.add_argument("--sizes", default="720p,1080p", help="comma-separated: 720p,1080p")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def make_clip(path: Path, size: str, seconds: float, fps: int) -> Path:
    """A camera-like H.264 clip: moving pattern with noise, keyframe every 2 s (typical camera GOP)."""
    if not path.exists():
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate={fps},noise=alls=12:allf=t", "-t", str(seconds),
                        "-c:v", "libx264", "-preset", "veryfast", "-g", str(2 * fps), "-pix_fmt", "yuv420p",
                        str(path)], check=True)
    return path


def cpu_seconds(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.process_time()
    frames = fn()
    return time.process_time() - start, frames


def floor_decode_all(path: Path) -> int:
    """The baseline: `cv2.VideoCapture.read()` every frame (decode + BGR conversion)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def edged_ingest(path: Path, analysis_fps: float) -> int:
    """edged's capture path: grab every frame, retrieve at analysis_fps, hand on through the bounded queue."""
    return sum(1 for _ in read_file_frames(str(path), analysis_fps))


def run(args: argparse.Namespace) -> int:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes.split(","):
            clip = make_clip(Path(tmp) / f"{name}.mp4", SIZES[name], args.seconds, args.fps)
            floor_runs, edged_runs = [], []
            for i in range(args.repeat):  # interleaved, so machine noise hits both alike
                print(f"  {name}: run {i + 1}/{args.repeat}", flush=True)
                floor_runs.append(cpu_seconds(functools.partial(floor_decode_all, clip))[0])
                edged_runs.append(cpu_seconds(functools.partial(edged_ingest, clip, args.analysis_fps))[0])
            floor, ours = statistics.median(floor_runs), statistics.median(edged_runs)
            results.append({"size": name, "seconds": args.seconds, "analysis_fps": args.analysis_fps,
                            "floor_cpu_s_per_s": round(floor / args.seconds, 4),
                            "edged_cpu_s_per_s": round(ours / args.seconds, 4), "ratio": round(ours / floor, 3)})
    if args.json:
        print(json.dumps({"machine": machine_line(), "results": results}))
        return 0
    print(f"python -m benchmarks ingest - {machine_line()}")
    print_table(["clip", "floor: decode every frame (CPU s / s video)", f"edged @ {args.analysis_fps:g} fps", "ratio"],
                [[r["size"], r["floor_cpu_s_per_s"], r["edged_cpu_s_per_s"], r["ratio"]] for r in results])
    print("goal: ratio <= 1.10")
    return 0
