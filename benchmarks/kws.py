"""Keyword-spotting CPU cost: edged's engine against calling pymicro-wakeword directly (the floor).

Both sides get the same synthetic audio in the daemon's 10 ms chunks. The floor is the package's own
streaming API (`MicroWakeWordFeatures.process_streaming` feeding `MicroWakeWord.process_streaming`,
one feature extractor shared by all keywords); edged runs `KeywordEngine`, which is what the
spotter thread runs. Figures are CPU seconds per second of audio (real-time factor), the best of
`--repeat` runs, per keyword and for all keywords together; openWakeWord and the VAD gate are
measured too (no floor: pymicro-wakeword has no openWakeWord models).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import command_line, machine, today, write_section
from edged.analysis.kws import KeywordEngine
from edged.config.keywords import BUILTIN_KEYWORDS, MICRO, OPEN
from edged.config.schema import VadConfig, WakewordConfig
from edged.sources.audio.chunk import SAMPLE_RATE, AudioChunk
from edged.sources.audio.convert import to_int16
from edged.sources.audio.files import iter_chunks

GOAL = 1.2  # edged may cost at most this multiple of the floor


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=120.0, help="length of the benchmark audio")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (the best is kept)")
    p.add_argument("--chunk-ms", type=int, default=10, help="chunk length (the daemon's default is 10 ms)")
    p.add_argument("--no-openwakeword", action="store_true", help="skip the openWakeWord figures")
    p.add_argument("--markdown", default="docs/benchmarks.md", help="report file ('' for none)")


def _progress(message: str) -> None:
    print(f"[kws-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_audio(seconds: float, seed: int = 3) -> np.ndarray:
    """Ordinary speech with the four keywords spoken now and then, over a faint noise floor."""
    from benchmarks.synth import speech as sp
    from benchmarks.synth.texts import KEYWORD_PHRASES, ordinary_sentences

    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    total = 0
    target = round(seconds * SAMPLE_RATE)
    keywords = list(BUILTIN_KEYWORDS[MICRO])
    i = 0
    while total < target:
        keyword = keywords[(i // 3) % len(keywords)]
        text = KEYWORD_PHRASES[keyword][0] if i % 3 == 2 else ordinary_sentences(1, rng)[0]
        i += 1
        piece = sp.normalize(sp.trim(sp.to_float(sp.speak(text, "espeak-ng", "en-us"))), -12.0)
        pieces += [piece, sp.silence(float(rng.uniform(0.4, 1.5)))]
        total += len(piece) + len(pieces[-1])
    audio = np.concatenate(pieces)[:target]
    audio = audio + sp.noise("pink", len(audio) / SAMPLE_RATE, rng) * np.float32(10 ** (-66 / 20))
    return to_int16(audio)


def _best(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        times.append(time.process_time() - c0)
    return min(times)


def floor_run(keywords: list[str], chunks: list[np.ndarray]) -> Callable[[], None]:
    """pymicro-wakeword's own streaming API over the chunks (a fresh stream per run)."""
    from pymicro_wakeword import MicroWakeWord as Mww
    from pymicro_wakeword import MicroWakeWordFeatures as Features
    from pymicro_wakeword import Model

    models = [Mww.from_builtin(Model(k)) for k in keywords]

    def run() -> None:
        features = Features()
        for m in models:
            m.reset()
        for chunk in chunks:
            for f in features.process_streaming(chunk.tobytes()):
                for m in models:
                    m.process_streaming(f)

    return run


def engine_run(config: WakewordConfig, chunks: list[AudioChunk]) -> Callable[[], None]:
    engine = KeywordEngine.from_config(config)

    def run() -> None:
        engine.reset()
        for chunk in chunks:
            engine.process(chunk)

    return run


def run(args: argparse.Namespace) -> int:
    _progress(f"synthesising {args.seconds:g} s of benchmark audio (espeak-ng)")
    audio = bench_audio(args.seconds)
    seconds = len(audio) / SAMPLE_RATE
    step = SAMPLE_RATE * args.chunk_ms // 1000
    chunks = list(iter_chunks(audio, step))
    raw = [c.samples for c in chunks]
    quiet = list(iter_chunks(bench_quiet(seconds), step))
    rows: list[dict[str, Any]] = []
    sets: list[list[str]] = [[k] for k in BUILTIN_KEYWORDS[MICRO]] + [list(BUILTIN_KEYWORDS[MICRO])]
    for keywords in sets:
        label = keywords[0] if len(keywords) == 1 else f"all {len(keywords)}"
        _progress(f"micro-wakeword {label}: floor")
        floor = _best(floor_run(keywords, raw), args.repeat) / seconds
        _progress(f"micro-wakeword {label}: edged")
        config = WakewordConfig(defaults="model", keywords=tuple(keywords))
        ours = _best(engine_run(config, chunks), args.repeat) / seconds
        rows.append({"backend": MICRO, "keywords": label, "floor": floor, "edged": ours})
        _progress(f"  floor {floor:.5f}, edged {ours:.5f} ({ours / floor:.2f}x)")
    all_micro = tuple(BUILTIN_KEYWORDS[MICRO])
    gated = WakewordConfig(defaults="model", keywords=all_micro, vad=VadConfig(enabled=True))
    _progress("micro-wakeword all, VAD gate on: speech stream and quiet room")
    vad_speech = _best(engine_run(gated, chunks), args.repeat) / seconds
    vad_quiet = _best(engine_run(gated, quiet), args.repeat) / seconds
    no_vad_quiet = _best(engine_run(WakewordConfig(defaults="model", keywords=all_micro), quiet), args.repeat) / seconds
    extra: dict[str, float] = {"vad_speech": vad_speech, "vad_quiet": vad_quiet, "no_vad_quiet": no_vad_quiet}
    if not args.no_openwakeword:
        for keywords in [["hey_jarvis"], list(BUILTIN_KEYWORDS[OPEN])]:
            label = keywords[0] if len(keywords) == 1 else f"all {len(keywords)}"
            _progress(f"openwakeword {label}: edged")
            config = WakewordConfig(defaults="model", backend="openwakeword", keywords=tuple(keywords))
            ours = _best(engine_run(config, chunks), args.repeat) / seconds
            rows.append({"backend": OPEN, "keywords": label, "floor": None, "edged": ours})
    text = render(rows, extra, seconds, args)
    print(text)
    if args.markdown:
        write_section(Path(args.markdown), "kws-cost", text, "Keyword spotting: cost and quality")
    worst = max(r["edged"] / r["floor"] for r in rows if r["floor"])
    return 0 if worst <= GOAL else 1


def bench_quiet(seconds: float, seed: int = 4) -> np.ndarray:
    """A quiet room: only the faint noise floor."""
    from benchmarks.synth import speech as sp

    rng = np.random.default_rng(seed)
    return to_int16(sp.noise("pink", seconds, rng) * np.float32(10 ** (-66 / 20)))


def render(rows: list[dict[str, Any]], extra: dict[str, float], seconds: float,
           args: argparse.Namespace) -> str:
    lines = ["### Cost", "",
             f"Command: `{command_line()}` on {machine()}, {today()}. Audio: {seconds:.0f} s of espeak-ng "
             f"speech with keywords, in {args.chunk_ms} ms chunks; CPU seconds per audio second, best of "
             f"{args.repeat} runs, one thread.", "",
             "| backend | keywords | floor: pymicro-wakeword direct | edged | edged / floor |",
             "|---|---|---|---|---|"]
    for r in rows:
        if r["floor"]:
            ratio = r["edged"] / r["floor"]
            verdict = "ok" if ratio <= GOAL else f"over the {GOAL:g}x goal"
            lines.append(f"| {r['backend']} | {r['keywords']} | {r['floor']:.5f} | {r['edged']:.5f} "
                         f"| {ratio:.2f}x ({verdict}) |")
        else:
            lines.append(f"| {r['backend']} | {r['keywords']} | - | {r['edged']:.5f} | - |")
    lines += ["", "VAD gate (micro-wakeword, all four keywords, default gate settings): "
              f"{extra['vad_speech']:.5f} on the speech stream above; in a quiet room "
              f"{extra['vad_quiet']:.5f} with the gate against {extra['no_vad_quiet']:.5f} without "
              f"({100 * (1 - extra['vad_quiet'] / extra['no_vad_quiet']):.0f}% saved)."]
    return "\n".join(lines) + "\n"
