"""Keyword-spotting quality on the synthetic evaluation set: recall, false accepts/h, latency, sweeps.

Builds (or reuses) the evaluation set of `benchmarks.synth.kws_eval`, runs every built-in keyword of
both backends over it with the daemon's engine (recording every smoothed score), then reports per
keyword and backend: recall and false accepts per hour at the model's own cutoff, detection latency
after the keyword ends, and a threshold sweep. Cutoffs for the "<= 2 false accepts/h" operating point
are chosen on one half of the set (even scenes, even speech files) and reported on the other half.
It also runs the VAD gate to measure the CPU it saves and the recall it costs, and lists which TTS
voices make reliable positives.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.kws_evaluation import (
    Hit,
    Occurrence,
    Quality,
    Series,
    best_under,
    default_cutoffs,
    match,
    quality,
    sweep,
)
from benchmarks.report import command_line, machine, pyplot, today, write_section
from benchmarks.synth.kws_eval import EvalSpec, Manifest, build, load_manifest
from edged.analysis.kws import KeywordEngine, spot_file
from edged.analysis.kws.catalog import resolve
from edged.config.keywords import BUILTIN_KEYWORDS, MICRO, OPEN
from edged.config.schema import KwsBackend, VadConfig, WakewordConfig
from edged.sources.audio.files import read_recording

FA_BUDGET = 2.0  # false accepts per hour of ordinary speech
REFRACTORY = 2.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-dir", default=".cache/kws-eval", help="where the evaluation set is built/cached")
    p.add_argument("--rebuild", action="store_true", help="rebuild the evaluation set even if cached")
    p.add_argument("--positives", type=int, default=EvalSpec.positives, help="scenes per keyword")
    p.add_argument("--speech-minutes", type=float, default=EvalSpec.speech_minutes,
                   help="minutes of ordinary speech (the false-accept set)")
    p.add_argument("--seed", type=int, default=EvalSpec.seed)
    p.add_argument("--backends", default=f"{MICRO},{OPEN}", help="comma-separated backends to evaluate")
    p.add_argument("--no-vad", action="store_true", help="skip the VAD measurement")
    p.add_argument("--reuse-scores", action="store_true",
                   help="reuse the scores recorded by an earlier run on the same set (re-analysis only)")
    p.add_argument("--no-voice-check", action="store_true", help="skip the per-voice check of clean keywords")
    p.add_argument("--markdown", default="docs/benchmarks.md", help="report file ('' for none)")
    p.add_argument("--plot", default="docs/kws-quality.png", help="threshold-sweep plot ('' for none)")
    p.add_argument("--json", dest="json_out", default="", help="also write every figure as JSON here")


def _progress(message: str) -> None:
    print(f"[kws-quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    spec = EvalSpec(seed=args.seed, positives=args.positives, speech_minutes=args.speech_minutes)
    manifest = _eval_set(Path(args.eval_dir), spec, args.rebuild)
    results: dict[str, Any] = {"set": _describe_set(manifest), "backends": {}}
    runs: dict[str, RunResult] = {}
    for backend in _backends(args.backends):
        config = WakewordConfig(defaults="model", backend=backend, keywords=BUILTIN_KEYWORDS[backend],
                                refractory=REFRACTORY)
        runs[backend] = _cached_run(manifest, config, args.reuse_scores)
        results["backends"][backend] = analyse(manifest, backend, runs[backend])
    if {MICRO, OPEN} <= results["backends"].keys():
        results["fusion"] = fusion(manifest, runs[MICRO], runs[OPEN])
    if not args.no_vad and MICRO in results["backends"]:
        results["vad"] = vad_effect(manifest, results["backends"][MICRO], args.reuse_scores)
    results["voices"] = voice_table(manifest, results["backends"])
    if not args.no_voice_check:
        results["voice_check"] = voice_check(_progress)
    text = render(results)
    print(text)
    if args.markdown:
        write_section(Path(args.markdown), "kws-quality", text, "Keyword spotting: cost and quality")
    if args.plot:
        plot(results, Path(args.plot))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1, default=str))
    return 0


def _backends(text: str) -> list[KwsBackend]:
    out: list[KwsBackend] = []
    for name in (b.strip() for b in text.split(",") if b.strip()):
        if name not in (MICRO, OPEN):
            raise SystemExit(f"python -m benchmarks kws-quality: unknown backend {name!r} (backends: {MICRO}, {OPEN})")
        out.append(name)  # type: ignore[arg-type]
    return out


def _eval_set(folder: Path, spec: EvalSpec, rebuild: bool) -> Manifest:
    if not rebuild and (folder / "manifest.json").is_file():
        cached = load_manifest(folder)
        if cached.spec == spec:
            _progress(f"using the evaluation set cached in {folder}")
            return cached
    _progress(f"building the evaluation set in {folder} (TTS; takes minutes)")
    return build(folder, spec, _progress)


def _describe_set(m: Manifest) -> dict[str, Any]:
    kinds = ("positive", "speech", "near_miss", "noise")
    hours = {k: sum(f.duration for f in m.of_kind(k)) / 3600 for k in kinds}
    return {"seed": m.spec.seed, "positives": len(m.occurrences), "hours": hours,
            "per_keyword": {k: sum(1 for o in m.occurrences if o.keyword == k) for k in m.spec.keywords}}


@dataclasses.dataclass
class RunResult:
    series: dict[str, dict[str, Series]]  # keyword -> file -> scores
    hits: list[Hit]  # what the engine fired at the model's cutoffs
    cpu_seconds: float
    audio_seconds: float
    cutoffs: dict[str, float]


def score_set(manifest: Manifest, config: WakewordConfig, progress: Any) -> RunResult:
    """Run `config`'s engine over every file, recording all smoothed scores and detections."""
    engine = KeywordEngine.from_config(config)
    series: dict[str, dict[str, Series]] = defaultdict(dict)
    current: dict[str, Series] = {}

    def sink(_backend: str, keyword: str, t: float, score: float) -> None:
        current.setdefault(keyword, Series()).add(t, score)

    engine.set_score_sink(sink)
    hits: list[Hit] = []
    cpu = audio_s = 0.0
    for i, f in enumerate(manifest.files):
        samples = read_recording(manifest.folder / f.path).samples
        current = {}
        c0 = time.process_time()
        hits += [Hit(f.path, d.keyword, d.stream_time) for d in spot_file(engine, samples)]
        cpu += time.process_time() - c0
        audio_s += len(samples) / 16000
        for keyword, s in current.items():
            series[keyword][f.path] = s
        progress(f"{config.backend}: {i + 1}/{len(manifest.files)} files, "
                 f"real-time factor {cpu / audio_s:.4f}")
    cutoffs = {k: engine.settings(k).cutoff for k in engine.keywords}
    engine.close()
    return RunResult(dict(series), hits, cpu, audio_s, cutoffs)


def _cached_run(manifest: Manifest, config: WakewordConfig, reuse: bool) -> RunResult:
    """`score_set`, or with `reuse` the scores an earlier run recorded for the same set and config."""
    import pickle

    path = manifest.folder / f"scores-{config.backend}{'-vad' if config.vad.enabled else ''}.pickle"
    key = (dataclasses.asdict(manifest.spec), repr(config))
    if reuse and path.is_file():
        cached_key, result = pickle.loads(path.read_bytes())
        if cached_key == key:
            _progress(f"{config.backend}: reusing the scores in {path}")
            return result  # type: ignore[no-any-return]
    result = score_set(manifest, config, _progress)
    path.write_bytes(pickle.dumps((key, result)))
    return result


def fusion(manifest: Manifest, micro: RunResult, open_: RunResult) -> dict[str, Any]:
    """Each keyword both families have, run on both at once (one shared refractory period): the pair
    of cutoffs with the best recall within the budget on the tuning half, measured on the other."""
    from benchmarks.kws_evaluation import fire_times_union

    folds = _folds(manifest)
    grid = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99]
    out: dict[str, Any] = {}
    for keyword in sorted(set(micro.series) & set(open_.series)):
        series = (micro.series[keyword], open_.series[keyword])

        def measure(cuts: tuple[float, float], occ: Sequence[Occurrence], neg: dict[str, float],
                    kw: str = keyword, pair: tuple[dict[str, Series], ...] = series) -> tuple[float, float]:
            files = {o.file for o in occ if o.keyword == kw} | set(neg)
            hits = [Hit(f, kw, t) for f in files if f in pair[0] and f in pair[1]
                    for t in fire_times_union([pair[0][f], pair[1][f]], cuts, REFRACTORY)]
            positives = [o for o in occ if o.keyword == kw]
            found, _ = match([h for h in hits if h.file not in neg], positives)
            fa = sum(1 for h in hits if h.file in neg)
            return len(found) / max(1, len(positives)), fa / (sum(neg.values()) / 3600)

        results = []
        for tune, held in folds:
            scored = [((a, b), *measure((a, b), *tune)) for a in grid for b in grid]
            ok = [s for s in scored if s[2] <= FA_BUDGET]
            if not ok:
                break
            cuts, _, _ = max(ok, key=lambda s: (s[1], s[0][0] + s[0][1]))
            results.append((cuts, *measure(cuts, *held)))
        if len(results) < 2:
            out[keyword] = None
            continue
        out[keyword] = {"cutoffs": [c for c, _, _ in results], "recall": sum(r for _, r, _ in results) / 2,
                        "fa_per_hour": sum(f for _, _, f in results) / 2}
    return out


Half = tuple[list[Occurrence], dict[str, float]]


def _folds(manifest: Manifest) -> list[tuple[Half, Half]]:
    """Two-fold cross-validation: (tune on, measure on) one half then the other, both ways."""
    first, second = _split(manifest, 0), _split(manifest, 1)
    return [(first, second), (second, first)]


def _split(manifest: Manifest, part: int) -> Half:
    """Half of the set: every other scene of each positive file, every other speech file."""
    per_file: dict[str, list[Occurrence]] = defaultdict(list)
    for o in manifest.occurrences:
        per_file[o.file].append(o)
    occ = [o for group in per_file.values() for i, o in enumerate(group) if i % 2 == part]
    speech = {f.path: f.duration for i, f in enumerate(manifest.of_kind("speech")) if i % 2 == part}
    return occ, speech


def analyse(manifest: Manifest, backend: str, r: RunResult) -> dict[str, Any]:
    speech_all = {f.path: f.duration for f in manifest.of_kind("speech")}
    halves = _folds(manifest)
    near = {f.path for f in manifest.of_kind("near_miss")}
    noise = {f.path for f in manifest.of_kind("noise")}
    out: dict[str, Any] = {"rtf": r.cpu_seconds / r.audio_seconds, "keywords": {}}
    for keyword, series in r.series.items():
        cutoff = r.cutoffs[keyword]
        default = quality(keyword, cutoff, REFRACTORY, series, truth=manifest.occurrences,
                          negatives=speech_all)
        engine_found, _ = match([h for h in r.hits if h.keyword == keyword], manifest.occurrences)
        grid = sorted({*default_cutoffs(), cutoff})
        folds = []
        for (tune_occ, tune_neg), (held_occ, held_neg) in halves:
            pick = best_under(sweep(keyword, grid, REFRACTORY, series, truth=tune_occ, negatives=tune_neg),
                              FA_BUDGET)
            folds.append(None if pick is None else quality(keyword, pick.cutoff, REFRACTORY, series,
                                                           truth=held_occ, negatives=held_neg))
        test = _pool(folds)
        full = sweep(keyword, grid, REFRACTORY, series, truth=manifest.occurrences, negatives=speech_all)
        chosen = best_under(full, FA_BUDGET)
        out["keywords"][keyword] = {
            "cutoff": cutoff, "window": resolve(backend, keyword).window,
            "default": _q(default), "engine_recall_check": len(engine_found),
            "near_miss_fa": _count(r.hits, keyword, near), "noise_fa": _count(r.hits, keyword, noise),
            "chosen_cutoff": chosen.cutoff if chosen else None, "chosen": _q(chosen) if chosen else None,
            "fold_cutoffs": [f.cutoff if f else None for f in folds], "test": test,
            "near_miss_fa_chosen": _count_at(series, near, chosen.cutoff) if chosen else None,
            "sweep": [(p.cutoff, p.recall, p.fa_per_hour) for p in full],
            "by_condition": _breakdown(keyword, cutoff, series, manifest.occurrences, _condition_group),
            "by_engine": _breakdown(keyword, cutoff, series, manifest.occurrences,
                                    lambda o: o.voice.split(":")[0]),
            "by_voice": _breakdown(keyword, cutoff, series, manifest.occurrences,
                                   lambda o: ":".join(o.voice.split(":")[:2])),
        }
    return out


def _pool(folds: Sequence[Quality | None]) -> dict[str, Any] | None:
    """Held-out figures of both folds added up (each half measured with the cutoff tuned on the other)."""
    if any(f is None for f in folds):
        return None
    found = sum(f.found for f in folds if f)
    positives = sum(f.positives for f in folds if f)
    fa = sum(f.false_accepts for f in folds if f)
    hours = sum(f.negative_hours for f in folds if f)
    return {"recall": found / positives if positives else 0.0, "found": found, "positives": positives,
            "fa": fa, "fa_per_hour": fa / hours if hours else 0.0}


def _q(q: Quality) -> dict[str, Any]:
    return {"recall": q.recall, "found": q.found, "positives": q.positives, "fa": q.false_accepts,
            "fa_per_hour": q.fa_per_hour, "hours": q.negative_hours,
            "latency_p50": q.latency(0.5), "latency_p90": q.latency(0.9)}


def _count(hits: Sequence[Hit], keyword: str, files: set[str]) -> int:
    return sum(1 for h in hits if h.keyword == keyword and h.file in files)


def _count_at(series: dict[str, Series], files: set[str], cutoff: float) -> int:
    from benchmarks.kws_evaluation import fire_times

    return sum(len(fire_times(s, cutoff, REFRACTORY)) for f, s in series.items() if f in files)


def _condition_group(o: Occurrence) -> str:
    c = o.condition
    if c == "clean":
        return "clean"
    if c.startswith("reverb"):
        return "reverb"
    return "noise " + c.split("@")[1] if "@" in c else c


def _breakdown(keyword: str, cutoff: float, series: dict[str, Series], occ: Sequence[Occurrence],
               group: Any) -> dict[str, tuple[int, int]]:
    groups: dict[str, list[Occurrence]] = defaultdict(list)
    for o in occ:
        if o.keyword == keyword:
            groups[group(o)].append(o)
    out = {}
    for name, members in sorted(groups.items()):
        own = {o.file: series[o.file] for o in members if o.file in series}
        q = quality(keyword, cutoff, REFRACTORY, own, truth=members, negatives={})
        out[name] = (q.found, q.positives)
    return out


def vad_effect(manifest: Manifest, plain: dict[str, Any], reuse: bool) -> dict[str, Any]:
    """The same micro-wakeword run with the VAD gate on: CPU saved, recall lost."""
    config = WakewordConfig(defaults="model", backend="micro-wakeword", keywords=BUILTIN_KEYWORDS[MICRO],
                            refractory=REFRACTORY,
                            vad=VadConfig(enabled=True))
    r = _cached_run(manifest, config, reuse)
    speech_all = {f.path: f.duration for f in manifest.of_kind("speech")}
    found, _ = match(r.hits, manifest.occurrences)
    per_kw = {}
    for keyword in r.cutoffs:
        positives = [o for o in manifest.occurrences if o.keyword == keyword]
        fa = sum(1 for h in r.hits if h.keyword == keyword and h.file in speech_all)
        per_kw[keyword] = {"recall": sum(1 for o in positives if o in found) / max(1, len(positives)),
                           "recall_without": plain["keywords"][keyword]["default"]["recall"], "fa": fa}
    return {"rtf": r.cpu_seconds / r.audio_seconds, "rtf_without": plain["rtf"], "keywords": per_kw,
            "config": dataclasses.asdict(VadConfig(enabled=True))}


VoiceTable = dict[str, dict[str, dict[str, tuple[int, int]]]]


def voice_table(manifest: Manifest, backends: dict[str, Any]) -> VoiceTable:
    """keyword -> voice -> backend -> (found, spoken) at the model's cutoff (all conditions)."""
    out: dict[str, dict[str, dict[str, tuple[int, int]]]] = defaultdict(lambda: defaultdict(dict))
    for backend, result in backends.items():
        for keyword, k in result["keywords"].items():
            for voice, counts in k["by_voice"].items():
                out[keyword][voice][backend] = counts
    return {k: dict(v) for k, v in out.items()}


def voice_check(progress: Any) -> dict[str, dict[str, dict[str, float]]]:
    """Every TTS voice saying each keyword once, clean, at normal speed and pitch, between 1 s of
    silence: the highest smoothed score each backend gives it (what sample media can rely on)."""
    import numpy as np

    from benchmarks.synth import speech as sp
    from benchmarks.synth.texts import KEYWORD_PHRASES

    engines = {b: KeywordEngine.from_config(WakewordConfig(defaults="model", backend=b, keywords=BUILTIN_KEYWORDS[b]))
               for b in _backends(f"{MICRO},{OPEN}")}
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    pad = np.zeros(16000, np.int16)
    for engine_name in sp.available_engines():
        progress(f"voice check: {engine_name}")
        for voice in sp.VOICES[engine_name]:
            for keyword, phrases in KEYWORD_PHRASES.items():
                audio = np.concatenate((pad, sp.speak(phrases[0], engine_name, voice), pad))
                scores: dict[str, float] = {}
                for backend, engine in engines.items():
                    if keyword not in engine.keywords:
                        continue
                    scores[backend] = _peak(engine, audio, keyword)
                out[keyword][f"{engine_name}:{voice}"] = scores
    for engine in engines.values():
        engine.close()
    return dict(out)


def _peak(engine: KeywordEngine, audio: Any, keyword: str) -> float:
    """The highest smoothed score `keyword` reaches on `audio`."""
    best = 0.0

    def sink(_backend: str, name: str, _t: float, score: float) -> None:
        nonlocal best
        if name == keyword:
            best = max(best, score)

    engine.set_score_sink(sink)
    list(spot_file(engine, audio))
    engine.set_score_sink(None)
    return best


# -- rendering --------------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def _s(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}"


def render(results: dict[str, Any]) -> str:
    s = results["set"]
    lines = ["### Quality", "",
             f"Command: `{command_line()}` on {machine()}, {today()}.", "",
             f"Evaluation set (seed {s['seed']}, all synthetic: espeak-ng, flite, festival): "
             f"{s['positives']} spoken keywords ({s['hours']['positive'] * 60:.0f} min of positive streams), "
             f"{s['hours']['speech'] * 60:.0f} min of ordinary speech, "
             f"{s['hours']['near_miss'] * 60:.0f} min of near-miss phrases, "
             f"{s['hours']['noise'] * 60:.0f} min of noise. A detection counts if it fires between the "
             "keyword's start and 1.5 s after its end. Latency: from the end of the keyword to the "
             "detection.",
             "",
             "#### At each model's own cutoff", "",
             "| keyword | backend | cutoff | recall | false accepts/h (speech) | near-miss FAs | noise FAs "
             "| latency p50 / p90 |",
             "|---|---|---|---|---|---|---|---|"]
    for kw, backend, k in _rows(results):
        d = k["default"]
        lines.append(f"| {kw} | {backend} | {k['cutoff']:g} | {_pct(d['recall'])} "
                     f"({d['found']}/{d['positives']}) "
                     f"| {d['fa_per_hour']:.1f} ({d['fa']}) | {k['near_miss_fa']} | {k['noise_fa']} "
                     f"| {_s(d['latency_p50'])} / {_s(d['latency_p90'])} s |")
    lines += ["", f"#### At <= {FA_BUDGET:g} false accepts per hour", "",
              "Held-out: the set is split in halves (alternate scenes of every positive stream, alternate "
              "speech files); a cutoff is tuned on one half (the highest recall within the budget) and "
              "measured on the other, both ways, and the two held-out halves are added up. Tuned on all: "
              "the cutoff the whole set would choose (a recommendation, measured on the data it was "
              "tuned on).", "",
              "| keyword | backend | cutoffs tuned per half | recall (held-out) | false accepts/h (held-out) "
              "| tuned on all: cutoff, recall, FA/h | near-miss FAs there | best family |",
              "|---|---|---|---|---|---|---|---|"]
    best = _best_family(results)
    for kw, backend, k in _rows(results):
        t, c = k["test"], k["chosen"]
        mark = "**yes**" if best.get(kw) == backend else ""
        folds = ", ".join("-" if f is None else f"{f:g}" for f in k["fold_cutoffs"])
        held = (f"{_pct(t['recall'])} ({t['found']}/{t['positives']}) | {t['fa_per_hour']:.1f} ({t['fa']})"
                if t else "- | -")
        tuned = (f"{k['chosen_cutoff']:g}, {_pct(c['recall'])}, {c['fa_per_hour']:.1f} "
                 f"| {k['near_miss_fa_chosen']}" if c else "none within budget | -")
        lines.append(f"| {kw} | {backend} | {folds} | {held} | {tuned} | {mark} |")
    lines += ["", "#### Recall by condition (model's cutoff)", "",
              "| keyword | backend | " + " | ".join(_groups(results)) + " |",
              "|---|---|" + "---|" * len(_groups(results))]
    for kw, backend, k in _rows(results):
        cells = [_frac(k["by_condition"].get(g)) for g in _groups(results)]
        lines.append(f"| {kw} | {backend} | " + " | ".join(cells) + " |")
    lines += ["", "#### Recall by TTS engine (model's cutoff)", "",
              "| keyword | backend | espeak-ng | flite | festival |", "|---|---|---|---|---|"]
    for kw, backend, k in _rows(results):
        cells = [_frac(k["by_engine"].get(e)) for e in ("espeak-ng", "flite", "festival")]
        lines.append(f"| {kw} | {backend} | " + " | ".join(cells) + " |")
    if results.get("fusion"):
        lines += ["", "#### Both families on one keyword", "",
                  "The keyword listed once per backend; a hit from either fires (shared refractory). "
                  "Cutoff pair tuned per half as above; held-out figures averaged over both halves.", "",
                  "| keyword | cutoffs per half (micro-wakeword, openwakeword) | recall (held-out) "
                  "| false accepts/h (held-out) | best single family, held-out |", "|---|---|---|---|---|"]
        best = _best_family(results)
        for kw, f in results["fusion"].items():
            single = results["backends"][best[kw]]["keywords"][kw]["test"]
            single_text = f"{_pct(single['recall'])} ({best[kw]})" if single else "-"
            if f is None:
                lines.append(f"| {kw} | none within budget | - | - | {single_text} |")
                continue
            pairs = "; ".join(f"{a:g}, {b:g}" for a, b in f["cutoffs"])
            lines.append(f"| {kw} | {pairs} | {_pct(f['recall'])} | {f['fa_per_hour']:.1f} | {single_text} |")
    if "vad" in results:
        v = results["vad"]
        lines += ["", "#### VAD gate (micro-wakeword, all four keywords)", "",
                  f"Gate: {v['config']['threshold_db']:g} dBFS, pre-roll {v['config']['pre_roll']:g} s, "
                  f"hangover {v['config']['hangover']:g} s. CPU (real-time factor) {v['rtf_without']:.4f} "
                  f"without, {v['rtf']:.4f} with the gate "
                  f"({100 * (1 - v['rtf'] / v['rtf_without']):.0f}% saved on this set).", "",
                  "| keyword | recall without | recall with | false accepts (speech) with |",
                  "|---|---|---|---|"]
        for kw, k in v["keywords"].items():
            lines.append(f"| {kw} | {_pct(k['recall_without'])} | {_pct(k['recall'])} | {k['fa']} |")
    if "voice_check" in results:
        lines += _render_voices(results["voice_check"], results)
    return "\n".join(lines) + "\n"


def _render_voices(check: dict[str, dict[str, dict[str, float]]], results: dict[str, Any]) -> list[str]:
    cutoffs = {(kw, b): k["cutoff"] for kw, b, k in _rows(results)}
    lines = ["", "#### TTS voices that make reliable keywords (sample media)", "",
             "Each voice says each keyword once, clean, at speed and pitch 1.0, between 1 s of silence. "
             "Cells: the highest smoothed score (micro-wakeword / openwakeword); **bold** when above "
             "the model's cutoff.", "",
             "| voice | " + " | ".join(check) + " |", "|---|" + "---|" * len(check)]
    voices = sorted({v for per in check.values() for v in per})
    for voice in voices:
        cells = []
        for kw, per in check.items():
            parts = []
            for backend in (MICRO, OPEN):
                score = per.get(voice, {}).get(backend)
                if score is None:
                    parts.append("-")
                    continue
                cutoff = cutoffs.get((kw, backend), 1.0)
                parts.append(f"**{score:.2f}**" if score > cutoff else f"{score:.2f}")
            cells.append(" / ".join(parts))
        lines.append(f"| {voice} | " + " | ".join(cells) + " |")
    return lines


def _rows(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    rows = [(kw, b, k) for b, r in results["backends"].items() for kw, k in r["keywords"].items()]
    return sorted(rows, key=lambda x: (x[0], x[1]))


def _groups(results: dict[str, Any]) -> list[str]:
    names = {g for _, _, k in _rows(results) for g in k["by_condition"]}
    order = ["clean", "noise 20dB", "noise 10dB", "noise 5dB", "reverb"]
    return [g for g in order if g in names] + sorted(names - set(order))


def _frac(counts: Sequence[int] | None) -> str:
    if not counts or not counts[1]:
        return "-"
    return f"{100 * counts[0] / counts[1]:.0f}% ({counts[0]}/{counts[1]})"


def _best_family(results: dict[str, Any]) -> dict[str, str]:
    best: dict[str, tuple[float, str]] = {}
    for kw, backend, k in _rows(results):
        recall = k["test"]["recall"] if k["test"] else -1.0
        if kw not in best or recall > best[kw][0]:
            best[kw] = (recall, backend)
    return {kw: b for kw, (_, b) in best.items()}


_COLORS = {MICRO: "tab:blue", OPEN: "tab:orange"}


def plot(results: dict[str, Any], path: Path) -> None:
    try:
        plt = pyplot()
    except ImportError:
        _progress("matplotlib is not installed (pip install 'edged[reports]'): no plot written")
        return
    keywords = sorted({kw for kw, _, _ in _rows(results)})
    fig, axes = plt.subplots(1, len(keywords), figsize=(3.2 * len(keywords), 3.4), sharey=True)
    for ax, kw in zip(axes if len(keywords) > 1 else [axes], keywords, strict=True):
        for backend, r in results["backends"].items():
            k = r["keywords"].get(kw)
            if k is None:
                continue
            pts = sorted(k["sweep"], key=lambda p: -p[0])  # from the highest cutoff down
            xs, ys = [max(p[2], 0.05) for p in pts], [100 * p[1] for p in pts]
            line, = ax.plot(xs, ys, marker=".", label=backend, color=_COLORS.get(backend))
            d = k["default"]
            ax.plot([max(d["fa_per_hour"], 0.05)], [100 * d["recall"]], marker="o", ms=9, mfc="none",
                    color=line.get_color())
        ax.axvline(FA_BUDGET, color="grey", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(kw)
        ax.set_xlabel("false accepts / hour")
        ax.grid(alpha=0.3)
    (axes[0] if len(keywords) > 1 else axes).set_ylabel("recall (%)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker=".", label=b) for b, c in _COLORS.items()
               if b in results["backends"]]
    (axes[0] if len(keywords) > 1 else axes).legend(handles=handles, fontsize=8, loc="lower right")
    fig.suptitle("Threshold sweep on the synthetic set (circle: the model's own cutoff; "
                 "0 FA/h drawn at 0.05)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
