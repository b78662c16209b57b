"""The whole pipeline with 1, 2 and 4 cameras: event latency, audio lag under a busy model, CPU per camera.

Each camera plays the same 720p H.264 clip (people walking by, a car, a light switching on) at its
recorded pace; the first camera's clip carries an audio track with spoken wake words. Captions come
from the tiny GLM-Edge-V bundle plus a calibrated compute load that stands in for a board-sized
caption (the 2B model takes seconds of all cores on a Pi): after the tiny model's real run, the
stand-in keeps `--caption-threads` threads busy with onnxruntime matrix products for
`--caption-seconds`, checking cancel and deadline between "tokens" as the real model does.
CPU per camera is compared with decoding every frame of the same clip (`python -m benchmarks ingest`'s floor).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from benchmarks import REPO
from benchmarks.ingest import cpu_seconds, floor_decode_all
from benchmarks.report import machine_line, print_table
from edged.config import parse_config
from edged.config.schema import CameraConfig, Config, MicrophoneConfig
from edged.inference.protocol import Captioner, CaptionResult
from edged.inference.registry import load_captioner
from edged.replay import Recorder, run_replay

TINY = REPO / "tests" / "fixtures" / "glm-edge-v-tiny"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cameras", default="1,2,4", help="camera counts to run (default 1,2,4)")
    p.add_argument("--seconds", type=float, default=30.0, help="clip length (default 30)")
    p.add_argument("--caption-seconds", type=float, default=4.0, help="stand-in caption time (default 4 s)")
    p.add_argument("--caption-threads", type=int, default=1, help="threads the stand-in keeps busy (default 1)")
    p.add_argument("--model", default=str(TINY), help="caption bundle (default: the tiny test bundle)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


class LoadedCaptioner:
    """The real (tiny) model followed by a calibrated CPU load of a board-sized caption (see module doc)."""

    def __init__(self, inner: Captioner, seconds: float, threads: int) -> None:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        self.inner = inner
        self.name = f"{inner.name}+load{seconds:g}s"
        self.seconds = seconds
        n = 256
        w = helper.make_tensor("w", TensorProto.FLOAT, [n, n], (np.random.default_rng(0).standard_normal(n * n)
                                                                 / n).astype(np.float32).tolist())
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "load",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [w])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._x = np.ones((n, n), np.float32)
        self.cpu_s = 0.0  # CPU time spent in here (this thread; onnxruntime runs single-threaded in it)

    def caption(self, image: np.ndarray, prompt: str, *, max_new_tokens: int | None = None,
                deadline: float | None = None, cancel: threading.Event | None = None,
                on_token: Any = None) -> CaptionResult:
        started = time.thread_time()
        try:
            return self._caption(image, prompt, max_new_tokens, deadline, cancel)
        finally:
            self.cpu_s += time.thread_time() - started

    def _caption(self, image: np.ndarray, prompt: str, max_new_tokens: int | None, deadline: float | None,
                 cancel: threading.Event | None) -> CaptionResult:
        result = self.inner.caption(image, prompt, max_new_tokens=max_new_tokens, deadline=deadline, cancel=cancel)
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            if cancel is not None and cancel.is_set():
                return dataclasses.replace(result, finish_reason="cancelled")
            if deadline is not None and time.monotonic() > deadline:
                return dataclasses.replace(result, finish_reason="deadline")
            self._session.run(None, {"x": self._x})  # one "token" worth of matrix work
        return dataclasses.replace(result, model=self.name)

    def close(self) -> None:
        self.inner.close()


def make_clip(tmp: Path, seconds: float) -> tuple[Path, Path]:
    """A 720p clip of the sample scene, and the same with the sample's audio track."""
    from benchmarks.synth.motion_clips import write_clip
    from benchmarks.synth.sample import audio_track
    from edged.sources.audio.wav import write_wav

    clean = tmp / "720p-clean.mp4"
    write_clip(clean, "sample", width=1280, height=720, fps=15.0, crf=26, duration=seconds)
    silent = tmp / "720p.mp4"  # sensor-like noise, so decoding costs what a real camera's stream does
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(clean), "-vf", "noise=alls=10:allf=t",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p", str(silent)],
                   check=True)
    samples, _ = audio_track()
    wav = write_wav(tmp / "audio.wav", samples[: int(seconds * 16000)])
    with_audio = tmp / "720p-audio.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(silent), "-i", str(wav), "-c:v",
                    "copy", "-c:a", "aac", "-shortest", str(with_audio)], check=True)
    return silent, with_audio


def bench_config(n: int, silent: Path, with_audio: Path, tmp: Path) -> Config:
    base = parse_config(f"state_dir: {tmp}/state\nmodels: {{captioner: {{threads: 1}}, "
                        "wakeword: {keywords: [okay_nabu, alexa, hey_jarvis]}}\n")
    cams = {}
    for i in range(n):
        cid = f"cam{i}"
        mic = MicrophoneConfig(id=f"{cid}_mic", device="camera", camera=cid) if i == 0 else None
        cams[cid] = CameraConfig(id=cid, url=str(with_audio if i == 0 else silent), microphone=mic)
    return dataclasses.replace(base, cameras=MappingProxyType(cams))


def run(args: argparse.Namespace) -> int:
    inner = load_captioner(dataclasses.replace(parse_config("{}").models.captioner, path=Path(args.model), threads=1))
    captioner = LoadedCaptioner(inner, args.caption_seconds, args.caption_threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        print("  rendering the 720p clip ...", flush=True)
        silent, with_audio = make_clip(tmp, args.seconds)
        floor_cpu, _ = cpu_seconds(lambda: floor_decode_all(silent))
        floor = floor_cpu / args.seconds
        for n in (int(x) for x in args.cameras.split(",")):
            print(f"  {n} camera(s) ...", flush=True)
            config = bench_config(n, silent, with_audio, tmp)
            start, model_before = time.process_time(), captioner.cpu_s
            summary = run_replay(config, captioner, Recorder())
            model_cpu = captioner.cpu_s - model_before
            cpu = (time.process_time() - start - model_cpu) / max(summary["media_s"], 1e-9)
            lag = summary["sources"].get("cam0_mic", {}).get("lag_ms", {}).get("max")
            rows.append({"cameras": n, "trigger_to_event_p95_ms": summary["trigger_to_event_ms"].get("p95"),
                         "audio_lag_max_ms": lag, "cpu_s_per_s_per_camera": round(cpu / n, 3),
                         "cpu_ratio_to_floor": round(cpu / n / floor, 2), "captions": summary["captions"],
                         "stale_dropped": summary["stale_dropped"], "preemptions": summary["preemptions"],
                         "keywords": len(summary["keywords"]),
                         "trigger_to_caption_p95_ms": summary["trigger_to_caption_ms"].get("p95")})
    captioner.close()
    if args.json:
        print(json.dumps({"machine": machine_line(), "floor_cpu_s_per_s": round(floor, 3), "runs": rows}))
        return 0
    print(f"python -m benchmarks pipeline - {machine_line()}")
    print(f"720p H.264 at 15 fps, {args.seconds:g} s; captions: tiny GLM-Edge-V + a {args.caption_seconds:g} s "
          f"compute load on {args.caption_threads} thread(s) standing in for a board-sized caption")
    print(f"floor (decode every frame): {floor:.3f} CPU s per s of video per camera; "
          "edged's CPU per camera excludes the model's own time")
    print_table(["cameras", "trigger->event p95 ms", "audio lag max ms", "CPU/camera vs floor", "captions",
                 "stale", "preempted", "keywords", "trigger->caption p95 ms"],
                [[r["cameras"], r["trigger_to_event_p95_ms"], r["audio_lag_max_ms"], r["cpu_ratio_to_floor"],
                  r["captions"], r["stale_dropped"], r["preemptions"], r["keywords"], r["trigger_to_caption_p95_ms"]]
                 for r in rows])
    print("goals: trigger->event p95 <= 200 ms, audio lag <= 100 ms")
    return 0
