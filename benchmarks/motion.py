"""Motion quality and cost: edged's detector against a Frigate baseline on labelled synthetic clips.

Renders (once, cached) labelled clips of every scene in `benchmarks.synth.motion_clips`, feeds each
detector the same analysed frames through `read_file_frames` at the daemon's analysis rate, and
reports interval precision / recall / F1 (temporal IoU >= 0.3, see `benchmarks.motion_eval`),
false motion per hour (all clips, and the lighting-change clips alone), the share of motion-free
time flagged as motion, and thread CPU time per analysed frame, with ratios to the baseline.
Each clip starts with a quiet lead-in that is not scored: the Frigate baseline's contrast ring
needs ~25 s to settle after a start, edged's ~1 s; a real camera runs for days.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.motion_eval import (
    BEFORE,
    MIN_IOU,
    BeforeDetector,
    ClipRun,
    EdgedDetector,
    FrameDetector,
    FrigateDetector,
    Scores,
    false_motion_seconds,
    run_clip,
)
from benchmarks.report import load_average, machine_line
from benchmarks.synth.motion_clips import LIGHTING_SCENES, SCENES, GroundTruth, ensure_clip, load_ground_truth
from edged.sources.frame import Frame

DEFAULT_SCENES = tuple(name for name in SCENES if name not in ("sample", "mixed"))  # those two are short demos
EDGED, EDGED_LUMA, FRIGATE = "edged", "edged-luma", "frigate"
_SAMPLE_SCENE = "trees"  # the mask example: a person walking past trees that sway in the wind
_GOAL_CPU_RATIO = 0.5
_GOAL_CPU_US = 1000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", type=Path, default=Path(".cache/motion-clips"),
                        help="directory where clips are rendered once and reused (default: %(default)s)")
    parser.add_argument("--size", default="1280x720", help="clip size WxH (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1,
                        help="clip seed; the detector's defaults were tuned on seed 0 at 640x360 "
                             "(default: %(default)s)")
    parser.add_argument("--lead-in", type=float, default=30.0, help="unscored quiet seconds before each scene")
    parser.add_argument("--scenes", default=",".join(DEFAULT_SCENES), help="comma-separated scenes")
    parser.add_argument("--analysis-fps", type=float, default=5.0, help="frames analysed per second")
    parser.add_argument("--markdown", type=Path, help="write the figures as Markdown here")
    parser.add_argument("--plot", type=Path, help="write the PNG report (timelines and a mask example) here")
    parser.add_argument("--json", type=Path, help="write raw per-clip results as JSON here")
    parser.add_argument("--small-movers", choices=("heldout", "tune"),
                        help="instead: frame-level quality on small, slow movers (the held-out or the tuning set)"
                             " and false motion on the light, wind and noise clips, edged vs. its detector before"
                             " the slow channel and the baseline (see benchmarks.motion_small); --markdown then"
                             " rewrites its section of that file")


@dataclass
class Summary:
    """One detector's figures over all clips."""

    scores: Scores
    lighting: Scores
    fp_per_hour: float
    lighting_fp_per_hour: float
    false_share: float  # share of motion-free time flagged as motion
    lighting_false_share: float
    cpu_us: dict[str, float] = field(default_factory=dict)


@dataclass
class Sample:
    """One analysed frame kept for the mask example in the report."""

    clip: str = ""
    t: float = 0.0
    image: np.ndarray | None = None
    edged_mask: np.ndarray | None = None
    edged_boxes: tuple[tuple[float, float, float, float], ...] = ()
    frigate_mask: np.ndarray | None = None


def run(args: argparse.Namespace) -> int:
    if args.small_movers:
        from benchmarks import motion_small

        return motion_small.run(args)
    cv2.setNumThreads(1)  # one core per camera, as on the board; thread CPU time then covers all the work
    width, height = (int(v) for v in args.size.lower().split("x"))
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()]
    unknown = [s for s in scenes if s not in SCENES]
    if unknown:
        print(f"python -m benchmarks motion: unknown scenes {', '.join(unknown)} (known: {', '.join(SCENES)})",
              file=sys.stderr)
        return 2
    started = time.time()
    load_before = load_average()
    sample = Sample()
    results = []
    for i, scene in enumerate(scenes, 1):
        path = ensure_clip(args.clips, scene, width, height, args.seed, args.lead_in, f"[{i}/{len(scenes)}] {scene}")
        truth = load_ground_truth(path)
        detectors: list[FrameDetector] = [EdgedDetector(), EdgedDetector(name=EDGED_LUMA, luma=True),
                                          FrigateDetector(), BeforeDetector()]
        observer = _Progress(f"[{i}/{len(scenes)}] {scene}", truth, args.analysis_fps, sample)
        results.append(run_clip(str(path), truth, detectors, args.analysis_fps, observer=observer))
        observer.done(results[-1])
    summaries = {name: summarise(results, name) for name in (EDGED, EDGED_LUMA, FRIGATE, BEFORE)}
    report = render_markdown(results, summaries, args, width, height, started, load_before, load_average())
    print(report)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report)
    if args.plot:
        from benchmarks.motion_report import write_report_png

        write_report_png(args.plot, results, (EDGED, FRIGATE), sample)
    if args.json:
        args.json.write_text(json.dumps(_raw(results), indent=1))
    return 0


class _Progress:
    """Progress lines on stderr, and the mask example captured from the first clip with motion."""

    def __init__(self, tag: str, truth: GroundTruth, fps: float, sample: Sample) -> None:
        self.tag = tag
        self.expected = int(truth.duration * fps)
        self.truth = truth
        self.sample = sample
        self.frames = 0
        wanted = truth.scene == _SAMPLE_SCENE or (sample.image is None and bool(truth.motion))
        self.want = sum(truth.motion[0]) / 2 if wanted and truth.motion else None

    def __call__(self, frame: Frame, detectors: Sequence[FrameDetector]) -> None:
        self.frames += 1
        if self.frames % 100 == 0:
            print(f"{self.tag}: {self.frames}/{self.expected} frames", file=sys.stderr, flush=True)
        if self.want is not None and frame.pts >= self.want:
            self._capture(frame, detectors)

    def _capture(self, frame: Frame, detectors: Sequence[FrameDetector]) -> None:
        """Keep this frame if edged sees motion in it (else try the next one)."""
        edged = next((d for d in detectors if isinstance(d, EdgedDetector) and d.name == EDGED), None)
        frigate = next((d for d in detectors if isinstance(d, FrigateDetector)), None)
        if edged is None or edged.last is None or not edged.last.motion:
            return
        self.sample.clip, self.sample.t, self.sample.image = self.truth.scene, frame.pts, frame.image
        self.sample.edged_mask = edged.detector.foreground
        self.sample.edged_boxes = tuple((b.x0, b.y0, b.x1, b.y1) for b in edged.last.boxes)
        self.sample.frigate_mask = None if frigate is None or frigate.detector is None else frigate.detector.last_mask
        self.want = None

    def done(self, result: ClipRun) -> None:
        parts = []
        for name in (EDGED, FRIGATE):
            s = result.scores(name)
            parts.append(f"{name} tp={s.tp} fp={s.fp} fn={s.fn}")
        print(f"{self.tag}: {result.frames} frames; truth {len(self.truth.motion)}; " + "; ".join(parts),
              file=sys.stderr, flush=True)


def summarise(results: Sequence[ClipRun], name: str) -> Summary:
    """Totals of one detector over the clips (lighting: the clips of `LIGHTING_SCENES`)."""
    def totals(clips: Sequence[ClipRun]) -> tuple[Scores, float, float, float]:
        scores = sum((c.scores(name) for c in clips), Scores())
        hours = sum(c.scored_seconds for c in clips) / 3600.0
        quiet = sum(c.scored_seconds - sum(b - a for a, b in c.truth.motion) for c in clips)
        false = sum(false_motion_seconds(c.truth.motion, c.detections(name)) for c in clips)
        return scores, scores.fp / hours if hours else 0.0, false / quiet if quiet else 0.0, hours

    scores, fph, share, _ = totals(results)
    lighting_clips = [c for c in results if c.truth.scene in LIGHTING_SCENES]
    lighting, lfph, lshare, _ = totals(lighting_clips)
    cpu = np.asarray([ns for c in results for (t, _), ns in zip(c.runs[name].flags, c.runs[name].cpu_ns,
                                                                 strict=True) if t >= c.truth.scored_from],
                     np.float64) / 1000.0
    stats = {"mean": float(cpu.mean()), "median": float(np.median(cpu)), "p95": float(np.percentile(cpu, 95)),
             "frames": float(cpu.size)} if cpu.size else {}
    return Summary(scores, lighting, fph, lfph, share, lshare, stats)


def _pass(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render_markdown(results: Sequence[ClipRun], s: dict[str, Summary], args: argparse.Namespace, width: int,
                    height: int, started: float, load_before: str, load_after: str) -> str:
    """The benchmark's figures as a Markdown section."""
    e, el, f, b = s[EDGED], s[EDGED_LUMA], s[FRIGATE], s[BEFORE]
    ratio = e.cpu_us["mean"] / f.cpu_us["mean"]
    ratio_luma = el.cpu_us["mean"] / f.cpu_us["mean"]
    hours = sum(c.scored_seconds for c in results) / 3600.0
    lines = [
        "## Motion detection: edged vs. a Frigate baseline",
        "",
        f"- Command: `python -m benchmarks motion --size {width}x{height} --seed {args.seed} "
        f"--lead-in {args.lead_in:g}`"
        f" ({len(results)} scenes)",
        f"- Machine: {machine_line()}; load average {load_before} before, {load_after} after (shared machine)",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}; Python {platform.python_version()},"
        f" NumPy {np.__version__}, OpenCV {cv2.__version__}, one OpenCV thread",
        f"- Clips: synthetic, {width}x{height} H.264 at 10 fps, seed {args.seed}, analysed at {args.analysis_fps:g} fps"
        f" through `read_file_frames`; {hours * 60:.1f} scored minutes after a {args.lead_in:g} s lead-in per clip.",
        "- Detectors: **edged** (`MotionDetector`, default `MotionConfig`, fed the BGR frame as in the daemon);"
        " **frigate** (clean-room re-implementation of Frigate's improved motion detector with its defaults,"
        " fed the luma plane, which Frigate gets free from ffmpeg; that conversion is not timed);"
        " **edged-luma** (edged fed the same luma plane: identical output, like-for-like cost).",
        f"- Matching: temporal IoU >= {MIN_IOU:g}, one-to-one; motion frames merged across gaps < 1 s.",
        "",
        "| | edged | frigate |",
        "|---|---|---|",
        f"| interval precision | {e.scores.precision:.3f} | {f.scores.precision:.3f} |",
        f"| interval recall | {e.scores.recall:.3f} | {f.scores.recall:.3f} |",
        f"| interval F1 | **{e.scores.f1:.3f}** | {f.scores.f1:.3f} |",
        f"| TP / FP / FN | {e.scores.tp} / {e.scores.fp} / {e.scores.fn} | {f.scores.tp} / {f.scores.fp} / "
        f"{f.scores.fn} |",
        f"| false motion per hour, all clips | {e.fp_per_hour:.0f} | {f.fp_per_hour:.0f} |",
        f"| false motion per hour, lighting clips | **{e.lighting_fp_per_hour:.0f}** | {f.lighting_fp_per_hour:.0f} |",
        f"| motion-free time flagged as motion, all / lighting | {100 * e.false_share:.1f} % / "
        f"{100 * e.lighting_false_share:.1f} % | {100 * f.false_share:.1f} % / {100 * f.lighting_false_share:.1f} % |",
        f"| CPU per frame, mean (median, p95) | **{e.cpu_us['mean']:.0f} us** ({e.cpu_us['median']:.0f}, "
        f"{e.cpu_us['p95']:.0f}) | {f.cpu_us['mean']:.0f} us ({f.cpu_us['median']:.0f}, {f.cpu_us['p95']:.0f}) |",
        f"| CPU ratio edged / frigate, mean | **{ratio:.2f}x** (luma input: {ratio_luma:.2f}x,"
        f" {el.cpu_us['mean']:.0f} us) | 1 |",
        "",
        f"edged before its slow channel (`benchmarks.motion_before`, same frames): interval F1 {b.scores.f1:.3f}"
        f" (TP / FP / FN {b.scores.tp} / {b.scores.fp} / {b.scores.fn}), false motion per hour on the lighting"
        f" clips {b.lighting_fp_per_hour:.0f}, CPU per frame {b.cpu_us['mean']:.0f} us: edged now costs"
        f" {e.cpu_us['mean'] / b.cpu_us['mean']:.2f}x that.",
        "",
        "Goals:",
        f"- F1 >= the baseline's: {e.scores.f1:.3f} vs {f.scores.f1:.3f}, {_pass(e.scores.f1 >= f.scores.f1)}",
        f"- fewer false motions under lighting changes: {e.lighting.fp} vs {f.lighting.fp} in "
        f"{sum(c.scored_seconds for c in results if c.truth.scene in LIGHTING_SCENES) / 60:.1f} min, "
        f"{_pass(e.lighting.fp < f.lighting.fp)}",
        f"- CPU per frame <= {_GOAL_CPU_RATIO}x the baseline's: {ratio:.2f}x, {_pass(ratio <= _GOAL_CPU_RATIO)}",
        f"- CPU per frame <= {_GOAL_CPU_US:.0f} us: {e.cpu_us['mean']:.0f} us, "
        f"{_pass(e.cpu_us['mean'] <= _GOAL_CPU_US)}",
        "",
        "| clip | truth | edged TP/FP/FN | frigate TP/FP/FN | false motion s, edged / frigate |",
        "|---|---|---|---|---|",
    ]
    for c in results:
        es, fs = c.scores(EDGED), c.scores(FRIGATE)
        ef = false_motion_seconds(c.truth.motion, c.detections(EDGED))
        ff = false_motion_seconds(c.truth.motion, c.detections(FRIGATE))
        light = " (lighting)" if c.truth.scene in LIGHTING_SCENES else ""
        lines.append(f"| {c.name}{light} | {len(c.truth.motion)} | {es.tp}/{es.fp}/{es.fn} | {fs.tp}/{fs.fp}/{fs.fn}"
                     f" | {ef:.1f} / {ff:.1f} |")
    lines += ["", "Scenes: " + "; ".join(f"*{c.name}*: {c.truth.description}" for c in results), ""]
    return "\n".join(lines)


def _raw(results: Sequence[ClipRun]) -> list[dict[str, Any]]:
    out = []
    for c in results:
        entry: dict[str, Any] = {"clip": c.name, "frames": c.frames, "truth": c.truth.motion,
                                 "scored_from": c.truth.scored_from, "detectors": {}}
        for name, r in c.runs.items():
            s = c.scores(name)
            entry["detectors"][name] = {"intervals": c.detections(name), "tp": s.tp, "fp": s.fp, "fn": s.fn,
                                        "cpu_us_mean": float(np.mean(r.cpu_ns)) / 1000.0}
        out.append(entry)
    return out
