"""Small, slow movers: frame-level quality of edged's motion detector, held out, with its control clips.

`python -m benchmarks motion --small-movers heldout` renders (once, cached) the held-out set of
`benchmarks.synth.motion_clips.small_movers` (a figure of 0.5-2 % of the frame crossing a still scene
slowly, stopping, walking on; sizes, speeds, contrasts, noise and light drawn from a Latin hypercube)
and the control clips where nothing may count as motion but the one person of *ir_switch*: light
changes, cloud shadows, an IR switch, lightning, gusting wind in the trees, sensor noise. Each
detector sees the same analysed frames: **edged** (the current `MotionDetector`), **edged-before**
(the detector before its slow channel, `benchmarks.motion_before`) and **frigate** (the clean-room
baseline). It reports frame-level precision, recall and F1 per scene (a frame is right when it is
flagged as motion exactly when the figure moves), false motions on the control clips, and CPU per
analysed frame with the ratios measured in this run. `--small-movers tune` runs the set the
detector was tuned on instead.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.motion_eval import (
    BEFORE,
    BeforeDetector,
    ClipRun,
    EdgedDetector,
    FrameDetector,
    FrigateDetector,
    Scores,
    false_motion_seconds,
    frame_scores,
    run_clip,
)
from benchmarks.report import load_average, machine_line, pyplot, write_section
from benchmarks.synth.motion_clips import (
    LIGHTING_SCENES,
    SceneSpec,
    ensure_clip,
    load_ground_truth,
    scene_spec,
    small_movers,
)

EDGED, FRIGATE = "edged", "frigate"
DETECTORS = (EDGED, BEFORE, FRIGATE)
CONTROL_SCENES = (*LIGHTING_SCENES, "trees", "noise")  # only ir_switch has anyone in it
SECTION = "motion-small"
_GOAL_F1 = 0.8


@dataclass
class SceneResult:
    """One clip: its spec and every detector's run on it."""

    spec: SceneSpec
    run: ClipRun

    @property
    def mover(self) -> bool:
        return self.spec.name.startswith("small-")

    def frames(self, name: str) -> Scores:
        return frame_scores(self.run, name)


def run(args: argparse.Namespace) -> int:
    cv2.setNumThreads(1)  # one core per camera, as on the board; thread CPU time then covers all the work
    width, height = (int(v) for v in args.size.lower().split("x"))
    names = [*small_movers(args.small_movers), *CONTROL_SCENES]
    started, load_before = time.time(), load_average()
    results = []
    for i, name in enumerate(names, 1):
        tag = f"[{i}/{len(names)}] {name}"
        path = ensure_clip(args.clips, name, width, height, args.seed, args.lead_in, tag)
        truth = load_ground_truth(path)
        detectors: list[FrameDetector] = [EdgedDetector(), BeforeDetector(), FrigateDetector()]
        result = SceneResult(scene_spec(name), run_clip(str(path), truth, detectors, args.analysis_fps))
        results.append(result)
        print(f"{tag}: " + "; ".join(f"{d} F1 {result.frames(d).f1:.2f}" for d in DETECTORS), file=sys.stderr,
              flush=True)
    report = render_markdown(results, args, width, height, started, load_before, load_average())
    print(report)
    if args.markdown:
        write_section(args.markdown, SECTION, report)
    if args.plot:
        write_png(args.plot, results)
    if args.json:
        args.json.write_text(json.dumps(_raw(results), indent=1))
    return 0


def cpu_us(results: Sequence[SceneResult], name: str) -> float:
    """Mean thread CPU time per scored frame (us) of one detector over all clips."""
    samples = [ns for r in results for (t, _), ns in zip(r.run.runs[name].flags, r.run.runs[name].cpu_ns, strict=True)
               if t >= r.run.truth.scored_from]
    return float(np.mean(samples)) / 1000.0 if samples else 0.0


def false_motions(result: SceneResult, name: str) -> tuple[int, float]:
    """Detected intervals that match no ground truth (false motions) and their seconds outside it."""
    detected = result.run.detections(name)
    return result.run.scores(name).fp, false_motion_seconds(result.run.truth.motion, detected)


def render_markdown(results: Sequence[SceneResult], args: argparse.Namespace, width: int, height: int,
                    started: float, load_before: str, load_after: str) -> str:
    """The figures as the Markdown section of docs/benchmarks.md."""
    movers = [r for r in results if r.mover]
    controls = [r for r in results if not r.mover]
    cpu = {name: cpu_us(results, name) for name in DETECTORS}
    quiet_cpu = {name: cpu_us(controls, name) for name in DETECTORS}
    mover_cpu = {name: cpu_us(movers, name) for name in DETECTORS}
    f1 = {name: [r.frames(name).f1 for r in movers] for name in DETECTORS}
    lines = [
        f"## Motion: small, slow movers ({args.small_movers} set)",
        "",
        f"- Command: `python -m benchmarks motion --small-movers {args.small_movers} --size {width}x{height} "
        f"--seed {args.seed} --lead-in {args.lead_in:g} --markdown docs/benchmarks.md "
        "--plot docs/bench-motion-small.png`",
        f"- Machine: {machine_line()}; load average {load_before} before, {load_after} after (shared machine)",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}; Python {platform.python_version()},"
        f" NumPy {np.__version__}, OpenCV {cv2.__version__}, one OpenCV thread",
        f"- Clips: synthetic, {width}x{height} H.264 at 10 fps, render seed {args.seed}, analysed at "
        f"{args.analysis_fps:g} fps through `read_file_frames`, after an unscored {args.lead_in:g} s lead-in.",
        f"- {len(movers)} small-mover scenes: a walking figure whose box covers 0.5-2 % of the frame walks 12 s, "
        "stands 5 s, walks 12 s; size, speed, opacity over the scene (contrast), sensor noise, light level and "
        "path drawn from a Latin hypercube"
        + (" with another seed than the tuning set: other scenes, backdrops and clothes, never tuned on."
           if args.small_movers == "heldout" else " (the set the detector was tuned on)."),
        "- Frame-level scores: an analysed frame is a true positive when it is flagged while the figure moves, "
        "a false positive when flagged while it does not (standing still counts), a miss when not flagged "
        "while it moves.",
        "- Detectors: **edged** (current `MotionDetector`, default `MotionConfig`, BGR input), **edged-before** "
        "(the detector before the slow channel, same input), **frigate** (clean-room Frigate baseline, luma input"
        " not timed).",
        "",
        "| scene | figure: size, speed, opacity, sensor noise, light | edged P / R / **F1** | "
        "edged-before F1 | frigate F1 |",
        "|---|---|---|---|---|",
    ]
    for r in movers:
        e = r.frames(EDGED)
        what = r.spec.description.removeprefix("figure ")
        lines.append(f"| {r.spec.name} | {what} | {e.precision:.2f} / {e.recall:.2f} / **{e.f1:.2f}** "
                     f"| {r.frames(BEFORE).f1:.2f} | {r.frames(FRIGATE).f1:.2f} |")
    lines.append(f"| **mean** (min) | | **{np.mean(f1[EDGED]):.2f}** ({min(f1[EDGED]):.2f}) | "
                 f"{np.mean(f1[BEFORE]):.2f} ({min(f1[BEFORE]):.2f}) | "
                 f"{np.mean(f1[FRIGATE]):.2f} ({min(f1[FRIGATE]):.2f}) |")
    lines += ["", "| control clip | truth | false motions (s), edged | edged-before | frigate |",
              "|---|---|---|---|---|"]
    totals = dict.fromkeys(DETECTORS, 0)
    for r in controls:
        cells = []
        for name in DETECTORS:
            count, seconds = false_motions(r, name)
            totals[name] += count
            cells.append(f"{count} ({seconds:.1f} s)")
        lines.append(f"| {r.spec.name} | {len(r.run.truth.motion)} | " + " | ".join(cells) + " |")
    missed = [r.spec.name for r in movers if r.frames(EDGED).f1 < _GOAL_F1]
    lines += [
        "",
        "| CPU per analysed frame, mean (us) | edged | edged-before | frigate | edged / edged-before |",
        "|---|---|---|---|---|",
        *(f"| {label} | **{c[EDGED]:.0f}** | {c[BEFORE]:.0f} | {c[FRIGATE]:.0f} | **{c[EDGED] / c[BEFORE]:.2f}x** |"
          for label, c in (("control clips (light, shadows, IR, lightning, wind, noise)", quiet_cpu),
                           ("small-mover clips (edged follows the figure, edged-before mostly does not)",
                            mover_cpu),
                           ("all clips", cpu))),
        "",
        "Goals:",
        f"- frame-level F1 >= {_GOAL_F1} on each small-mover scene: {len(movers) - len(missed)} of {len(movers)}"
        f" ({'**missed** on ' + ', '.join(missed) if missed else 'met'})",
        f"- no false motion on the control clips: {totals[EDGED]} (edged-before {totals[BEFORE]}, frigate "
        f"{totals[FRIGATE]}), {'met' if totals[EDGED] == 0 else '**missed**'}",
        f"- CPU per frame: {quiet_cpu[EDGED] / quiet_cpu[BEFORE]:.2f}x the detector before on the control clips, "
        f"{cpu[EDGED] / cpu[BEFORE]:.2f}x on all clips; {cpu[EDGED] / cpu[FRIGATE]:.2f}x the Frigate baseline;"
        " measured frame by frame in this run",
        "",
        "![frame-level F1 per small-mover scene and CPU per frame](bench-motion-small.png)",
        "",
    ]
    return "\n".join(lines)


def write_png(path: Path, results: Sequence[SceneResult]) -> None:
    """Grouped bars: frame-level F1 per small-mover scene per detector, and CPU per frame."""
    plt = pyplot()

    movers = [r for r in results if r.mover]
    colours = {EDGED: "#2a9d4b", BEFORE: "#8fbf9f", FRIGATE: "#e07b00"}
    fig, (ax, cx) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [4, 1]})
    x = np.arange(len(movers))
    for k, name in enumerate(DETECTORS):
        ax.bar(x + (k - 1) * 0.27, [r.frames(name).f1 for r in movers], 0.27, label=name, color=colours[name])
    ax.axhline(_GOAL_F1, color="#444444", lw=0.8, ls="--")
    ax.set_xticks(x, [r.spec.name for r in movers], rotation=30)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("frame-level F1")
    ax.set_title("Small, slow movers: frame-level F1 per scene (dashed: goal)")
    ax.legend(loc="lower left", fontsize=8)
    cx.bar(range(len(DETECTORS)), [cpu_us(results, n) for n in DETECTORS], color=[colours[n] for n in DETECTORS])
    cx.set_xticks(range(len(DETECTORS)), DETECTORS, rotation=30)
    cx.set_ylabel("CPU us per analysed frame")
    cx.set_title("CPU, all clips")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _raw(results: Sequence[SceneResult]) -> list[dict[str, Any]]:
    return [{"scene": r.spec.name, "description": r.spec.description, "truth": r.run.truth.motion,
             "detectors": {name: {"frames": _counts(r.frames(name)), "intervals": r.run.detections(name),
                                  "cpu_us_mean": float(np.mean(r.run.runs[name].cpu_ns)) / 1000.0}
                           for name in DETECTORS}}
            for r in results]


def _counts(scores: Scores) -> dict[str, float]:
    return {"tp": scores.tp, "fp": scores.fp, "fn": scores.fn, "f1": scores.f1}
