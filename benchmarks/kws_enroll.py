"""Enrolling a voice: each shipped verifier adapted to a few clips of one speaker, then measured on that
speaker's other clips and on every negative: `python -m benchmarks kws-enroll`.

A speaker here is one TTS voice of a held-out set (flite's five, or MBROLA's four and Pico's two).
Per keyword and voice, the first half of the voice's keyword occurrences (in file order) are cut
out (1 s before to 1 s after) and enrolled with the daemon's own path (`edged.analysis.kws.enroll`:
the engine over each clip, the adaptation, the threshold), with the first two ordinary-speech files
of the set as the user's background audio. The enrolled verifier is then replayed (the recorded
steps of `kws-verifier`, which agree with the real engine detection for detection) on the voice's
other occurrences for recall and on the rest of the set's ordinary speech and near misses for false
accepts, beside the shipped verifier on the same split.

`--write-near-misses` writes the near misses that ship beside each verifier: the 256 tuning negatives
(espeak-ng and festival only) above the keyword's first-stage cutoff that the shipped verifier finds
most like the keyword.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.kws_evaluation import MAX_LATENCY
from benchmarks.kws_heldout import KEYWORDS, REFRACTORY, eval_set, refractory
from benchmarks.kws_verifier import (
    SET_SPECS,
    TUNING,
    Candidates,
    FirstStage,
    Rows,
    Sets,
    candidates,
    load_set,
    open_sets,
    progress,
)
from benchmarks.report import machine_line, today, write_section
from benchmarks.synth.kws_eval import EvalSpec, Manifest
from benchmarks.synth.speech import NONFREE_ENGINES
from edged.analysis.kws.enroll import (
    NearMisses,
    collect,
    enroll,
    near_misses_path,
    probabilities,
    shipped_near_misses,
)
from edged.analysis.kws.verifier import Verifier, load_verifier, shipped_path
from edged.config.keywords import KEYWORD_DEFAULTS, MICRO, OPEN
from edged.sources.audio.chunk import SAMPLE_RATE

NEAR_MISSES = 256
CLIP_BEFORE = CLIP_AFTER = 1.0  # s of the scene kept around an enrolled keyword
BACKGROUND_FILES = 2  # ordinary-speech files of a set used as the user's background audio

# The method (L2 pull, near misses, threshold rule) was chosen looking at held3 and held4. These two
# were built afterwards with fresh seeds, to the same recipes, and only ever reported.
ENROLL_SETS: dict[str, EvalSpec] = {
    "held5": EvalSpec(seed=46, positives=60, speech_minutes=45.0, near_miss_voices=4, noise_minutes=1.0,
                      keywords=KEYWORDS, engines=("flite",), part=1),
    "held6": EvalSpec(seed=47, positives=60, speech_minutes=45.0, near_miss_voices=4, noise_minutes=1.0,
                      keywords=KEYWORDS, engines=NONFREE_ENGINES, part=1),
}
UNTOUCHED = tuple(ENROLL_SETS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default=".cache/kws-verifier", help="the sets of kws-verifier (held5, held6 built here)")
    p.add_argument("--sets", nargs="*", default=["held3", "held4", *UNTOUCHED], help="held-out sets to enroll on")
    p.add_argument("--write-near-misses", action="store_true",
                   help="write the shipped near misses into edged/data/kws_verifiers/ from the tuning sets")
    p.add_argument("--markdown", default="docs/benchmarks.md", help="report file ('' for none)")


def shipped_first_stage(sets: Sets, keyword: str) -> tuple[Rows, Candidates]:
    """The recorded steps of `sets` for `keyword`, and where its shipped first stage could fire."""
    d = KEYWORD_DEFAULTS[keyword]
    rows = sets.rows(keyword, only_scored=d.backend == OPEN)
    return rows, candidates(sets, keyword, rows, FirstStage(d.backend, d.window))


def write_near_misses(root: Path, out_dir: Path) -> None:
    """The hardest tuning negatives of each keyword's shipped first stage and verifier."""
    for k, d in KEYWORD_DEFAULTS.items():
        rows, cand = shipped_first_stage(open_sets(root, TUNING, d.backend == MICRO), k)
        # microWakeWord steps are finer than openWakeWord's: several may read the same embeddings
        negative = np.unique(cand.rows[(cand.scores > d.cutoff) & (rows.labels[cand.rows] == 0)])
        v = load_verifier(shipped_path(k))  # type: ignore[arg-type]
        order = negative[np.argsort(-probabilities(v, rows.windows[negative]), kind="stable")][:NEAR_MISSES]
        windows = rows.windows[order][:, -v.frames:, :]
        note = {"made_by": "python -m benchmarks kws-enroll --write-near-misses", "date": today(),
                "from": list(TUNING), "first_stage": f"{d.backend} cutoff {d.cutoff:g} window {d.window}",
                "negatives_above_cutoff": len(negative)}
        NearMisses(windows).save(out_dir / near_misses_path(k).name, note)
        progress(f"{k}: {len(windows)} near misses of {len(negative)} tuning negatives above the cutoff")


@dataclass
class Tally:
    """One keyword on one set: the shipped and the enrolled verifiers over every voice's split."""

    positives: int = 0
    found_shipped: int = 0
    found_enrolled: int = 0
    fa_shipped: float = 0.0
    fa_enrolled: list[float] = field(default_factory=list)  # per voice
    voices: int = 0
    clips_heard: int = 0
    clips: int = 0


class Replay:
    """A set's recorded steps for one keyword behind its shipped first stage."""

    def __init__(self, sets: Sets, keyword: str) -> None:
        rows, self.cand = shipped_first_stage(sets, keyword)
        self.above = self.cand.scores > KEYWORD_DEFAULTS[keyword].cutoff
        self.windows = rows.windows[self.cand.rows]
        self.files = np.array([f for _, f in self.cand.keys])

    def accepted(self, v: Verifier) -> np.ndarray:
        return self.above & (probabilities(v, self.windows) >= v.threshold)

    def found(self, accepted: np.ndarray, occurrences: list[Any]) -> int:
        t = self.cand.times
        return sum(bool((accepted & (self.files == o.file) & (t >= o.start) & (t <= o.end + MAX_LATENCY)).any())
                   for o in occurrences)

    def false_accepts(self, accepted: np.ndarray, files: list[str]) -> int:
        return sum(len(refractory(np.sort(self.cand.times[accepted & (self.files == f)]), REFRACTORY))
                   for f in files)


def evaluate_set(root: Path, name: str) -> dict[str, Tally]:
    from edged.analysis.kws import KeywordEngine
    from edged.config.schema import WakewordConfig
    from edged.sources.audio.files import read_recording

    m = load_set(root / name)
    speech = sorted(f.path for f in m.files if f.kind == "speech")
    background = speech[:BACKGROUND_FILES]
    negatives = [f for f in m.files if f.kind in ("speech", "near_miss") and f.path not in background]
    hours = sum(f.duration for f in negatives) / 3600
    negative_files = [f.path for f in negatives]
    audio: dict[str, np.ndarray] = {}

    def samples(path: str) -> np.ndarray:
        if path not in audio:
            audio[path] = read_recording(m.folder / path).samples
        return audio[path]

    out: dict[str, Tally] = {}
    for k in KEYWORDS:
        d = KEYWORD_DEFAULTS[k]
        replay = Replay(open_sets(root, (name,), d.backend == MICRO), k)
        shipped = load_verifier(shipped_path(k))  # type: ignore[arg-type]
        by_shipped = replay.accepted(shipped)
        near = shipped_near_misses(k, shipped.frames)
        engine = KeywordEngine.from_config(WakewordConfig(keywords=(k,)))
        try:
            bg = [tap for path in background for tap in collect(engine, k, samples(path))]
            tally = out[k] = Tally()
            tally.fa_shipped = replay.false_accepts(by_shipped, negative_files) / hours
            for voice, occ in sorted(_by_voice(m, k).items()):
                half = len(occ) // 2
                if not half:
                    continue
                clips = [collect(engine, k, _clip(samples(o.file), o)) for o in occ[:half]]
                tally.clips += len(clips)
                tally.clips_heard += sum(bool(c) for c in clips)
                test = occ[half:]
                tally.positives += len(test)
                tally.found_shipped += replay.found(by_shipped, test)
                try:
                    enrolled = enroll(shipped, clips, bg, near).verifier
                except ValueError as exc:  # too few clips heard: the user would keep the shipped verifier
                    progress(f"{name} {k} {voice}: not enrolled ({exc})")
                    enrolled = shipped
                accepted = replay.accepted(enrolled)
                tally.found_enrolled += replay.found(accepted, test)
                tally.fa_enrolled.append(replay.false_accepts(accepted, negative_files) / hours)
                tally.voices += 1
        finally:
            engine.close()
        t = out[k]
        progress(f"{name} {k}: recall {t.found_shipped}/{t.positives} shipped, {t.found_enrolled} enrolled; "
                 f"FA/h {t.fa_shipped:.1f} shipped, enrolled mean {np.mean(t.fa_enrolled):.1f}")
    return out


def _by_voice(m: Manifest, keyword: str) -> dict[str, list[Any]]:
    voices: dict[str, list[Any]] = defaultdict(list)
    for o in sorted((o for o in m.occurrences if o.keyword == keyword), key=lambda o: (o.file, o.start)):
        voices[":".join(o.voice.split(":")[:2])].append(o)
    return voices


def _clip(samples: np.ndarray, o: Any) -> np.ndarray:
    a = max(0, int((o.start - CLIP_BEFORE) * SAMPLE_RATE))
    return samples[a:int((o.end + CLIP_AFTER) * SAMPLE_RATE)]


def render(results: dict[str, dict[str, Tally]], minutes: float) -> str:
    lines = [
        "### Enrolling a voice: the verifier adapted to a few clips of one speaker",
        "",
        f"Command: `python -m benchmarks kws-enroll --dir .cache/kwsv2` on {machine_line()} "
        f"({minutes:.0f} min with the sets cached).",
        "",
        "Per keyword and TTS voice of a held-out set: half of the voice's keyword scenes (in file order) are "
        "cut to clips (1 s either side) and enrolled with the daemon's own path (`edged enroll`: the engine "
        "over each clip, the adaptation, the threshold), with two ordinary-speech files of the set (about "
        "10 min) as the user's background audio. Recall is counted on the voice's other scenes; false "
        "accepts on the rest of the set's ordinary speech and near misses, with each voice's enrolled "
        "verifier (mean and worst voice). The method was chosen looking at held3 and held4; held5 "
        "(flite) and held6 (MBROLA, Pico) were built afterwards to the same recipes with fresh seeds and "
        "run once.",
        "",
        "| set | keyword | voices, clips heard | recall: shipped | recall: enrolled | FA/h: shipped | "
        "FA/h enrolled: mean (worst voice) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, tallies in results.items():
        for k, t in tallies.items():
            worst = max(t.fa_enrolled) if t.fa_enrolled else float("nan")
            lines.append(f"| {name}{' (untouched)' if name in UNTOUCHED else ''} | {k} | {t.voices}, "
                         f"{t.clips_heard}/{t.clips} | {_pct(t.found_shipped, t.positives)} | "
                         f"{_pct(t.found_enrolled, t.positives)} | {t.fa_shipped:.1f} | "
                         f"{np.mean(t.fa_enrolled):.1f} ({worst:.1f}) |")
    lines.append("")
    for name, tallies in results.items():
        shipped = np.mean([t.found_shipped / t.positives for t in tallies.values()])
        enrolled = np.mean([t.found_enrolled / t.positives for t in tallies.values()])
        within = sum(np.mean(t.fa_enrolled) <= 4.0 for t in tallies.values())
        lines.append(f"- {name}: mean recall {100 * shipped:.0f}% shipped, {100 * enrolled:.0f}% enrolled; "
                     f"keywords within 4 FA/h (mean over voices) enrolled: {within} of {len(tallies)}.")
    return "\n".join(lines)


def _pct(found: int, total: int) -> str:
    return f"{100 * found / total:.0f}% ({found}/{total})" if total else "-"


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    root = Path(args.dir)
    if args.write_near_misses:
        write_near_misses(root, Path(__file__).resolve().parent.parent / "edged" / "data" / "kws_verifiers")
    for name, spec in {**SET_SPECS, **ENROLL_SETS}.items():
        if name in args.sets and not (root / name / "manifest.json").is_file():
            eval_set(root / name, spec)
    results = {name: evaluate_set(root, name) for name in args.sets}
    text = render(results, (time.monotonic() - t0) / 60)
    print(text)
    if args.markdown:
        write_section(Path(args.markdown), "kws-enroll", text, "Keyword spotting: cost and quality")
    return 0
