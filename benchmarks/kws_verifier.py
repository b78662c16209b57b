"""Keyword verifiers trained on the tuning side and measured held out: `python -m benchmarks kws-verifier`.

The first stage (openWakeWord, or microWakeWord for `MICRO_FIRST`, at a low cutoff) fires on the
keyword and on most near misses alike; a per-keyword logistic regression on the openWakeWord
embeddings up to the detection (`edged.analysis.kws.verifier`) decides. Everything learned or
chosen comes from espeak-ng and festival voices only: the tuning set of `kws-heldout`, the extra
near misses of its second round (even half of pool 2), and `kws_verifier_data`'s own positives and
near-miss pool. The held-out sets (the odd halves of both near-miss pools: flite voices, and in
`held3` MBROLA and Pico voices; `held4` is `held` with a fresh seed) only measure.

Steps: (1) openWakeWord's embeddings at every step where a first stage could fire (recomputed around
those steps from the audio, exactly as the streaming backend has them; cached beside the sets);
(2) per keyword, out-of-fold verifier probabilities on the tuning data (5 folds by minute of audio);
(3) the first stage (family, window, cutoff), verifier variant and threshold with the best recall
within `TUNE_BUDGET` false accepts per hour there, in the held-out recipe's mix of speech and near
misses; (4) that verifier trained on all tuning data
(`--write`: into edged/data/kws_verifiers/) and measured on the held-out sets, first stage alone and
verified; (5) the real engine with the shipped defaults over the held-out sets; a markdown report.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pickle
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.kws_evaluation import MAX_LATENCY
from benchmarks.kws_heldout import KEYWORDS, REFRACTORY, SPLITS, Judge, Outcome, engine_run, eval_set, refractory
from benchmarks.report import today, write_section
from benchmarks.synth.kws_eval import EvalFile, EvalSpec, Manifest
from benchmarks.synth.speech import NONFREE_ENGINES
from edged.analysis.kws.catalog import resolve
from edged.analysis.kws.enroll import fit_logistic, probabilities
from edged.analysis.kws.openwakeword import EMBEDDING, STEP_SAMPLES, OpenWakeWordBackend
from edged.analysis.kws.scoring import KeywordSettings
from edged.analysis.kws.verifier import Verifier
from edged.config.keywords import MICRO, OPEN
from edged.sources.audio.files import read_recording

FLOOR = 0.01  # steps scored above this by some keyword are kept (every cutoff searched is above it)
FRAMES = 16  # embeddings the first stage's classifiers read (v0.1 models)
WARM = 30  # steps of audio before a kept step: mel (9.5 steps) + 16 embeddings, recomputed exactly
STEP = STEP_SAMPLES / 16000


def progress(message: str) -> None:
    print(f"[kws-verifier {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_set(folder: Path) -> Manifest:
    """A cached set's manifest (spec fields this checkout does not know are ignored: only read)."""
    data = json.loads((folder / "manifest.json").read_text())
    known = {f.name for f in dataclasses.fields(EvalSpec)}
    spec = {k: v for k, v in data["spec"].items() if k in known}
    spec["keywords"] = tuple(spec["keywords"])
    spec["engines"] = tuple(spec.get("engines", ()))
    from benchmarks.kws_evaluation import Occurrence

    return Manifest(folder, EvalSpec(**spec), tuple(EvalFile(**f) for f in data["files"]),
                    tuple(Occurrence(**o) for o in data["occurrences"]))


# -- (1) embeddings at the steps where the first stage could fire -------------------------------------

@dataclass
class Steps:
    """One file's kept steps: time, every keyword's openWakeWord score, and the embedding window."""

    times: np.ndarray  # (n,)
    scores: dict[str, np.ndarray]  # keyword -> (n,)
    windows: np.ndarray  # (n, FRAMES, 96) float32


class _Recorder(OpenWakeWordBackend):
    """The real backend, also keeping (time, scores, embedding window) of every step."""

    def __init__(self) -> None:
        specs = [resolve(OPEN, k) for k in KEYWORDS]
        super().__init__(specs, [KeywordSettings(0.999999, 1)] * len(specs))
        self.rows: list[tuple[float, dict[str, float], np.ndarray]] = []
        self.keep_all = False  # snippets keep every step (the wanted ones are picked afterwards)
        self._now: dict[str, float] = {}
        self.set_score_sink(lambda k, _t, s: self._now.__setitem__(k, s))

    def _classify(self, t: float) -> list[Any]:
        self._now = {}
        super()._classify(t)
        if self.keep_all or max(self._now.values()) > FLOOR:
            self.rows.append((t, self._now, self._embs[-FRAMES:].copy()))
        return []


def _steps(rows: list[tuple[float, dict[str, float], np.ndarray]]) -> Steps:
    rows = sorted({round(r[0] / STEP): r for r in rows}.values(), key=lambda r: r[0])
    if not rows:
        return Steps(np.zeros(0), {k: np.zeros(0) for k in KEYWORDS}, np.zeros((0, FRAMES, EMBEDDING), np.float32))
    return Steps(np.array([r[0] for r in rows]), {k: np.array([r[1][k] for r in rows]) for k in KEYWORDS},
                 np.stack([r[2] for r in rows]).astype(np.float32))


def wanted_steps(folder: Path, file: str) -> list[int] | None:
    """Step numbers (1-based) where some keyword scored above FLOOR in kws-heldout's recorded raw
    scores, or None when the set has none recorded (then the whole file is run)."""
    path = folder / "raw-openwakeword.pickle"
    if not path.is_file():
        return None
    raw = _raw(path)
    out: set[int] = set()
    for series in raw.series.values():
        s = series.get(file)
        if s is not None:
            t, v = s.arrays()
            out.update(int(np.rint(x / STEP)) for x in t[v > FLOOR])
    return sorted(out)


_RAW: dict[Path, Any] = {}


def _raw(path: Path) -> Any:
    if path not in _RAW:
        _RAW[path] = pickle.loads(path.read_bytes())[1]
    return _RAW[path]


def extract_file(rec: _Recorder, samples: np.ndarray, steps: list[int] | None) -> Steps:
    """Kept steps of one file: the whole file streamed, or only snippets around `steps`."""
    rec.rows = []
    if steps is not None and not steps:
        return _steps([])
    if steps is None:
        rec.reset()
        rec._run(samples, len(samples) / 16000)  # the backend's own streaming step
        return _steps(rec.rows)
    rec.keep_all = True
    for first, last in _clusters(steps):
        k0 = max(0, first - WARM)
        rec.reset()
        rec._run(samples[k0 * STEP_SAMPLES:last * STEP_SAMPLES], last * STEP)
    rec.keep_all = False
    want = set(steps)
    return _steps([r for r in rec.rows if round(r[0] / STEP) in want])


def _clusters(steps: list[int]) -> Iterable[tuple[int, int]]:
    start = prev = steps[0]
    for s in steps[1:]:
        if s - prev > WARM:
            yield start, prev
            start = s
        prev = s
    yield start, prev


class _StepsUnpickler(pickle.Unpickler):
    """Reads step files written when this module ran as `__main__`."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__" and name == "Steps":
            return Steps
        return super().find_class(module, name)


def extract_set(manifest: Manifest, tag: str = "",
                wanted: Callable[[Path, str], list[int] | None] | None = None) -> dict[str, Steps]:
    """Kept steps of every file of a set (cached beside the set's folder). `wanted(folder, file)`
    names the steps to keep (default: where openWakeWord scored above FLOOR)."""
    path = manifest.folder.parent / f"verifier-steps-{tag}{manifest.folder.name}.pickle"
    if path.is_file():
        with path.open("rb") as fh:
            return _StepsUnpickler(fh).load()  # type: ignore[no-any-return]
    rec = _Recorder()
    out: dict[str, Steps] = {}
    cpu = 0.0
    for i, f in enumerate(manifest.files):
        if f.kind == "noise":
            continue
        samples = read_recording(manifest.folder / f.path).samples
        c0 = time.process_time()
        out[f.path] = extract_file(rec, samples, (wanted or wanted_steps)(manifest.folder, f.path))
        cpu += time.process_time() - c0
        progress(f"{manifest.folder.name}: embeddings of {i + 1}/{len(manifest.files)} files ({cpu:.0f} s CPU)")
    rec.close()
    path.write_bytes(pickle.dumps(out))
    return out



def micro_raw(manifest: Manifest) -> Any:
    """microWakeWord's raw scores of every keyword on a set (kws-heldout's cache, or computed here)."""
    from benchmarks.kws_heldout import raw_config, score_raw

    path = manifest.folder / "raw-micro-wakeword.pickle"
    if not path.is_file():
        result = score_raw(manifest, MICRO, raw_config(MICRO), progress)
        path.write_bytes(pickle.dumps((None, result)))
    return _raw(path)


def micro_wanted(keywords: tuple[str, ...]) -> Callable[[Path, str], list[int]]:
    """The openWakeWord steps a verifier reads behind microWakeWord candidates of `keywords`: the last
    step at or before every time a sliding mean of up to `max(MICRO_WINDOWS)` scores can cross FLOOR."""
    def wanted(folder: Path, file: str) -> list[int]:
        raw = _raw(folder / "raw-micro-wakeword.pickle")
        out: set[int] = set()
        reach = (max(MICRO_WINDOWS) - 1) * MICRO_STEP
        for k in keywords:
            s = raw.series[k].get(file)
            if s is None:
                continue
            t, v = s.arrays()
            for x in t[v > FLOOR]:
                out.update(range(_step_at(x), _step_at(x + reach) + 1))
        return sorted(s for s in out if s >= 1)
    return wanted


def _step_at(t: float) -> int:
    """The openWakeWord step (1-based) last computed at or before stream time `t`."""
    return int(np.floor(t / STEP + 1e-6))


# -- (2) rows per keyword, labels, folds -------------------------------------------------------------

POSITIVE_BEFORE_END = 0.25  # a step counts as the keyword from this long before its end (earlier: unlabelled)
MICRO_STEP = 0.03
MICRO_WINDOWS = (1, 3, 5, 8)


@dataclass
class Rows:
    """Every kept openWakeWord step of some sets for one keyword: where, its window of embeddings, its
    label (1 keyword, 0 not, -1 part of the keyword: not trained on) and its fold."""

    keys: list[tuple[str, str]]  # (set, file) per row
    times: np.ndarray
    windows: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    index: dict[tuple[str, str, int], int]  # (set, file, step) -> row


@dataclass
class Candidates:
    """Where the first stage could fire: (set, file), time, smoothed score, and the row whose
    embeddings the verifier reads there."""

    keys: list[tuple[str, str]]
    times: np.ndarray
    scores: np.ndarray
    rows: np.ndarray


@dataclass
class Sets:
    """Several sets together: what to score recall on and what counts as false accepts."""

    manifests: dict[str, Manifest]
    steps: dict[str, dict[str, Steps]]

    def rows(self, keyword: str, only_scored: bool = True, folds: int = 5) -> Rows:
        import zlib

        keys: list[tuple[str, str]] = []
        parts: dict[str, list[np.ndarray]] = defaultdict(list)
        index: dict[tuple[str, str, int], int] = {}
        for name, m in self.manifests.items():
            occ = _occ_by_file(m, keyword)
            for f in m.files:
                s = self.steps[name].get(f.path)
                if s is None or not len(s.times):
                    continue
                if only_scored:
                    s = _only(s, s.scores[keyword] > FLOOR)
                label = np.zeros(len(s.times), np.int8)
                if f.kind == "positive" and f.keyword == keyword:
                    for start, end in occ.get(f.path, []):
                        label[(s.times >= start) & (s.times < end - POSITIVE_BEFORE_END)] = -1
                        label[(s.times >= end - POSITIVE_BEFORE_END) & (s.times <= end + MAX_LATENCY)] = 1
                minute = (s.times // 60).astype(int)
                fold = np.array([zlib.crc32(f"{name}/{f.path}/{x}".encode()) % folds for x in minute], dtype=int)
                for j, t in enumerate(s.times):
                    index[(name, f.path, int(np.rint(t / STEP)))] = len(keys) + j
                keys += [(name, f.path)] * len(s.times)
                for field, value in (("t", s.times), ("w", s.windows), ("y", label), ("f", fold)):
                    parts[field].append(value)
        return Rows(keys, np.concatenate(parts["t"]), np.concatenate(parts["w"]), np.concatenate(parts["y"]),
                    np.concatenate(parts["f"]), index)

    def open_candidates(self, keyword: str, rows: Rows) -> Candidates:
        """openWakeWord (window 1) as the first stage: every kept step is a candidate."""
        scores = np.concatenate([_only(s, s.scores[keyword] > FLOOR).scores[keyword]
                                 for name, m in self.manifests.items() for f in m.files
                                 if (s := self.steps[name].get(f.path)) is not None and len(s.times)])
        return Candidates(rows.keys, rows.times, scores, np.arange(len(rows.times)))

    def micro_candidates(self, keyword: str, rows: Rows, window: int) -> Candidates:
        """microWakeWord (sliding mean of `window`) as the first stage: its steps above FLOOR, each
        reading the embeddings of the last openWakeWord step at or before it."""
        keys: list[tuple[str, str]] = []
        times, scores, idx = [], [], []
        for name, m in self.manifests.items():
            raw = micro_raw(m)
            for f in m.files:
                s = raw.series[keyword].get(f.path)
                if s is None or f.kind == "noise":
                    continue
                t, v = s.arrays()
                mean = np.zeros_like(v)
                if len(v) >= window:
                    c = np.concatenate(([0.0], np.cumsum(v)))
                    mean[window - 1:] = (c[window:] - c[:-window]) / window
                for x, y in zip(t[mean > FLOOR], mean[mean > FLOOR], strict=True):
                    row = rows.index.get((name, f.path, _step_at(x)))
                    if row is not None:
                        keys.append((name, f.path))
                        times.append(x)
                        scores.append(y)
                        idx.append(row)
        return Candidates(keys, np.array(times), np.array(scores), np.array(idx, dtype=int))

    def hours(self, kind: str, names: Iterable[str] | None = None) -> float:
        """Hours of audio of `kind` in the sets `names` (default: all of them)."""
        chosen = (self.manifests[n] for n in names) if names is not None else self.manifests.values()
        return sum(f.duration for m in chosen for f in m.files if f.kind == kind) / 3600

    def negative_hours(self) -> float:
        return self.hours("speech") + self.hours("near_miss")

    def near_share(self, name: str) -> float:
        """How much of set `name`'s negatives are near misses."""
        near = self.hours("near_miss", (name,))
        return near / (near + self.hours("speech", (name,)))

    def mixed_fa_rate(self, o: Outcome, near_share: float) -> float:
        """False accepts per hour of negatives mixed as an evaluation set mixes them (`near_share` of
        the hour near misses). The tuning sets together hold about twice the held-out sets' share of
        near misses, which cause most false accepts, so their plain rate overstates the held-out one."""
        speech, near = self.hours("speech"), self.hours("near_miss")
        return (o.speech_fa / speech if speech else 0.0) * (1 - near_share) + \
            (o.near_fa / near if near else 0.0) * near_share

    def outcome(self, keyword: str, cand: Candidates, accepted: np.ndarray) -> Outcome:
        """Recall, false accepts and latency when the engine fires on the `accepted` candidates
        (refractory applied per file), counted as `kws-heldout` does."""
        by_file: dict[tuple[str, str], list[float]] = defaultdict(list)
        for i in np.nonzero(accepted)[0]:
            by_file[cand.keys[i]].append(float(cand.times[i]))
        speech = near = found = positives = 0
        lat: list[float] = []
        for name, m in self.manifests.items():
            occ = _occ_by_file(m, keyword)
            positives += sum(len(v) for v in occ.values())
            for f in m.files:
                fires = refractory(np.array(sorted(by_file.get((name, f.path), []))), REFRACTORY)
                if f.kind == "speech":
                    speech += len(fires)
                elif f.kind == "near_miss":
                    near += len(fires)
                elif f.kind == "positive" and f.keyword == keyword:
                    hit = [False] * len(occ[f.path])
                    for t in fires:
                        for j, (start, end) in enumerate(occ[f.path]):
                            if not hit[j] and start <= t <= end + MAX_LATENCY:
                                hit[j] = True
                                lat.append(t - end)
                                break
                    found += sum(hit)
        return Outcome(positives, found, speech, near, self.negative_hours(), tuple(lat))


def _only(s: Steps, keep: np.ndarray) -> Steps:
    return Steps(s.times[keep], {k: v[keep] for k, v in s.scores.items()}, s.windows[keep])


def _occ_by_file(m: Manifest, keyword: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for o in m.occurrences:
        if o.keyword == keyword:
            out[o.file].append((o.start, o.end))
    return out


# -- (3) the model: L2-regularised logistic regression, numpy only -----------------------------------

def fit(windows: np.ndarray, labels: np.ndarray, frames: int, l2: float, keyword: str,
        iterations: int = 400) -> Verifier:
    """Class-balanced L2-regularised logistic regression on the last `frames` embeddings, standardised
    (`edged.analysis.kws.enroll.fit_logistic` from zero weights)."""
    x = windows[:, -frames:, :].reshape(len(windows), -1).astype(np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    w, b = fit_logistic((x - mean) / scale, labels.astype(np.float64), l2, np.zeros(x.shape[1]), 0.0, iterations)
    return Verifier(keyword, frames, mean, scale, w, b, 0.5)


def out_of_fold(rows: Rows, frames: int, l2: float, keyword: str) -> np.ndarray:
    """Each row's probability from a verifier trained without its fold (labelled rows only train)."""
    p = np.zeros(len(rows.times))
    for k in np.unique(rows.folds):
        train = (rows.folds != k) & (rows.labels >= 0)
        model = fit(rows.windows[train], rows.labels[train], frames, l2, keyword)
        test = rows.folds == k
        p[test] = probabilities(model, rows.windows[test])
    return p


# -- (4) choosing the first stage and the verifier threshold -----------------------------------------

OPEN_CUTOFFS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
MICRO_CUTOFFS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
THRESHOLDS = (0.0, *np.round(np.arange(0.05, 0.951, 0.05), 2).tolist(), 0.97, 0.99)  # 0: no verifier
VARIANTS = ((16, 0.1), (8, 0.1), (16, 0.01))  # (embeddings read, L2 strength)
TUNE_BUDGET = 2.0  # false accepts/h allowed on the tuning data, in the held-out mix (the target is 4 held out)
TARGET_FA = 4.0
TARGET_RECALL = 0.70


@dataclass(frozen=True)
class FirstStage:
    family: str
    window: int = 1


@dataclass(frozen=True)
class Choice:
    first: FirstStage
    cutoff: float
    threshold: float  # 0: the first stage alone
    outcome: Outcome
    fa_rate: float  # false accepts per hour in the evaluation's mix of speech and near misses


def candidates(sets: Sets, keyword: str, rows: Rows, first: FirstStage) -> Candidates:
    if first.family == OPEN:
        return sets.open_candidates(keyword, rows)
    return sets.micro_candidates(keyword, rows, first.window)


def choose(sets: Sets, keyword: str, first: FirstStage, cand: Candidates, p: np.ndarray, near_share: float,
           thresholds: Iterable[float] = THRESHOLDS, budget: float = TUNE_BUDGET) -> Choice | None:
    """Best recall within `budget` false accepts/h, counted in the evaluation's mix of speech and near
    misses (`Sets.mixed_fa_rate`); ties: fewer false accepts, then higher cutoff."""
    best: tuple[tuple[float, float, float], Choice] | None = None
    pc = p[cand.rows]
    for c in (OPEN_CUTOFFS if first.family == OPEN else MICRO_CUTOFFS):
        for v in thresholds:
            o = sets.outcome(keyword, cand, (cand.scores > c) & (pc >= v))
            rate = sets.mixed_fa_rate(o, near_share)
            if rate > budget:
                continue
            rank = (o.recall, -rate, c)
            if best is None or rank > best[0]:
                best = (rank, Choice(first, c, float(v), o, rate))
    return None if best is None else best[1]


def open_sets(root: Path, names: Iterable[str], micro: bool) -> Sets:
    manifests = {n: load_set(root / n) for n in names}
    if micro:
        for m in manifests.values():
            micro_raw(m)
        return Sets(manifests, {n: extract_set(m, "micro-", micro_wanted(MICRO_FIRST)) for n, m in manifests.items()})
    return Sets(manifests, {n: extract_set(m) for n, m in manifests.items()})


TUNING = ("tune", "tune-near2", "extra")
HELD = ("held", "held2", "held3", "held4")
# kws-heldout's sets (tune, held) and its second round's (near-miss pool 2: the even half spoken by the
# tuning engines, the odd half in a fresh flite set); built on first use, like `extra`
SET_SPECS: dict[str, EvalSpec] = {
    **SPLITS,
    "tune-near2": EvalSpec(seed=24, positives=0, speech_minutes=0.0, near_miss_voices=2, noise_minutes=0.0,
                           keywords=KEYWORDS, engines=SPLITS["tune"].engines, part=0, near_miss_pool=2),
    "held2": EvalSpec(seed=23, positives=60, speech_minutes=45.0, near_miss_voices=2, noise_minutes=1.0,
                      keywords=KEYWORDS, engines=("flite",), part=1, near_miss_pool=2),
    # held out a third time: `held`'s recipe and phrases, spoken by two engines nothing was tuned on
    # (MBROLA's diphone voices and Pico, Debian non-free); built after the rule above was fixed
    "held3": EvalSpec(seed=44, positives=60, speech_minutes=45.0, near_miss_voices=4, noise_minutes=1.0,
                      keywords=KEYWORDS, engines=NONFREE_ENGINES, part=1),
    # held's recipe again with a fresh seed, built and run once with the budget as shipped: held and
    # held2 were looked at when that budget was chosen, so they are no longer untouched
    "held4": EvalSpec(seed=45, positives=60, speech_minutes=45.0, near_miss_voices=4, noise_minutes=1.0,
                      keywords=KEYWORDS, engines=("flite",), part=1),
}
MICRO_FIRST = ("hey_mycroft", "okay_nabu")  # keywords also tried behind microWakeWord


def experiment(root: Path, out_dir: Path | None, keywords: Iterable[str] = KEYWORDS) -> dict[str, Any]:
    """Steps (2)-(4) for every keyword; writes the verifiers to `out_dir` when given."""
    tuning = {fam: open_sets(root, TUNING, fam == MICRO) for fam in (OPEN, MICRO)}
    held = {n: {fam: open_sets(root, (n,), fam == MICRO) for fam in (OPEN, MICRO)}
            for n in HELD if (root / n / "manifest.json").is_file()}
    share = tuning[OPEN].near_share("tune")  # built to the held-out sets' recipe
    results: dict[str, Any] = {"keywords": {}, "tuning_hours": tuning[OPEN].negative_hours(), "near_share": share,
                               "held_hours": {n: s[OPEN].negative_hours() for n, s in held.items()}}
    for k in keywords:
        firsts = [FirstStage(OPEN)] + ([FirstStage(MICRO, w) for w in MICRO_WINDOWS] if k in MICRO_FIRST else [])
        r: dict[str, Any] = {"alone": {}, "tried": []}
        best: tuple[tuple[float, float], Any] | None = None
        for fam in {f.family for f in firsts}:
            rows = tuning[fam].rows(k, only_scored=fam == OPEN)
            labelled = rows.labels >= 0
            for frames, l2 in VARIANTS:
                p = out_of_fold(rows, frames, l2, k)
                for first in (f for f in firsts if f.family == fam):
                    cand = candidates(tuning[fam], k, rows, first)
                    alone = choose(tuning[fam], k, first, cand, p, share, (0.0,))
                    r["alone"][first] = alone
                    c = choose(tuning[fam], k, first, cand, p, share)
                    r["tried"].append((first, frames, l2, c))
                    progress(f"{k}: {first.family} w{first.window}, verifier {frames} embeddings, L2 {l2}: "
                             f"{_label(c)} (alone: {_label(alone)})")
                    if c is not None and (best is None or _rank(c) > best[0]):
                        best = (_rank(c), (first, frames, l2, c, rows, labelled))
        if best is None:
            results["keywords"][k] = r
            continue
        first, frames, l2, chosen, rows, labelled = best[1]
        model = fit(rows.windows[labelled], rows.labels[labelled], frames, l2, k)
        model = dataclasses.replace(model, threshold=max(chosen.threshold, 1e-6))
        r.update(first=first, frames=frames, l2=l2, chosen=chosen, model=model,
                 rows=int(labelled.sum()), positives=int((rows.labels == 1).sum()), held={})
        for name, s in held.items():
            hs = s[first.family]
            hrows = hs.rows(k, only_scored=first.family == OPEN)
            cand = candidates(hs, k, hrows, first)
            hp = probabilities(model, hrows.windows)[cand.rows]
            above = cand.scores > chosen.cutoff
            r["held"][name] = {"verified": hs.outcome(k, cand, above & (hp >= model.threshold)),
                               "first stage": hs.outcome(k, cand, above)}
        results["keywords"][k] = r
        if out_dir is not None:
            note = {"made_by": "python -m benchmarks kws-verifier", "date": today(), "trained_on": list(TUNING),
                    "first_stage": f"{first.family} cutoff {chosen.cutoff:g} window {first.window}",
                    "rows": r["rows"], "positive_rows": r["positives"], "l2": l2,
                    "tuning_recall": chosen.outcome.recall, "tuning_fa_per_hour": chosen.fa_rate}
            out_dir.mkdir(parents=True, exist_ok=True)
            model.save(out_dir / f"{k}.npz", note)
    return results


def stale_defaults(results: dict[str, Any]) -> list[str]:
    """The chosen first stages that `KEYWORD_DEFAULTS` does not hold, as the lines it should hold."""
    from edged.config.keywords import KEYWORD_DEFAULTS, KeywordDefaults

    out = []
    for k, r in results["keywords"].items():
        if "chosen" not in r:
            continue
        want = KeywordDefaults(r["first"].family, r["chosen"].cutoff, r["first"].window, verify=True)
        if KEYWORD_DEFAULTS.get(k) != want:
            out.append(f'    "{k}": KeywordDefaults({r["first"].family!r}, {want.cutoff:g}, {want.window}, '
                       'verify=True),')
    return out


def _rank(c: Choice | None) -> tuple[float, float]:
    return (-1.0, 0.0) if c is None else (c.outcome.recall, -c.fa_rate)


def _label(c: Choice | None) -> str:
    if c is None:
        return "nothing within budget"
    o = c.outcome
    return (f"cutoff {c.cutoff:g}, threshold {c.threshold:g}: recall {100 * o.recall:.0f}%, "
            f"{c.fa_rate:.1f} FA/h ({o.speech_fa} speech, {o.near_fa} near misses)")




# -- (5) the real engine with the shipped defaults, and the report ----------------------------------

def engine_check(root: Path, name: str) -> tuple[dict[str, Outcome], float, int]:
    """`keywords: [the four]` and nothing else, through the real engine over a held-out set:
    per keyword outcome, CPU seconds per audio second, and how many detections the verifiers rejected."""
    m = load_set(root / name)
    hits, rtf, rejected = engine_run(m)
    out: dict[str, Outcome] = {}
    for k in KEYWORDS:
        found = Judge(m, None, k).outcome(functools.partial(_hits_in, hits[k]))  # type: ignore[arg-type]
        assert found is not None  # no false-accept limit given
        out[k] = found
    return out, rtf, rejected


def _hits_in(hits: dict[str, list[float]], file: str) -> list[float]:
    return hits.get(file, [])


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _cells(o: Outcome | None) -> str:
    if o is None:
        return "- | - | - | -"
    return (f"{_pct(o.recall)} | {o.fa_per_hour:.1f} | {o.speech_fa} + {o.near_fa} | "
            f"{o.latency(0.5):.2f} / {o.latency(0.9):.2f} s")


def render(results: dict[str, Any], engine: dict[str, tuple[dict[str, Outcome], float, int]]) -> str:
    from benchmarks.report import machine

    kws = results["keywords"]
    lines = ["### Keyword verifiers: a learned second stage, tuned on one set and measured on another", "",
             f"Command: `python -m benchmarks {' '.join(sys.argv[1:])}` on {machine()}, {today()}; "
             f"training and choosing {results['minutes']:.0f} min with the embeddings cached, then the real "
             "engine over each held-out set.", "",
             f"Tuning data (espeak-ng and festival only): {', '.join(TUNING)}; "
             f"{results['tuning_hours']:.2f} h of ordinary speech and near misses. Held out: "
             f"{', '.join(f'{n} {h:.2f} h' for n, h in results['held_hours'].items())} "
             "(held, held2 and held4 flite, held3 MBROLA and Pico). "
             f"Rule: best out-of-fold recall within {TUNE_BUDGET:g} false accepts/h on the tuning data, "
             f"counted in the held-out recipe's mix ({100 * results['near_share']:.0f}% of the negatives near "
             "misses, as in `tune`), over "
             "first stage (openWakeWord window 1, or microWakeWord for "
             f"{', '.join(MICRO_FIRST)}), cutoff, verifier threshold and variant "
             "(embeddings read, L2).", "",
             "| keyword | chosen on tuning data | tuning (out of fold): recall, FA/h | set | settings "
             "| recall | FA/h | FAs speech + near misses | latency p50 / p90 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k in KEYWORDS:
        r = kws[k]
        if "chosen" not in r:
            lines.append(f"| {k} | nothing within budget | - | | | | | | |")
            continue
        c = r["chosen"]
        label = (f"{r['first'].family} {c.cutoff:g}/w{r['first'].window}, verifier {r['frames']} embeddings "
                 f"(L2 {r['l2']:g}) >= {r['model'].threshold:.3g}")
        first = True
        for name, hv in r["held"].items():
            for what, o in (("first stage alone", hv["first stage"]), ("with the verifier", hv["verified"])):
                head = f"| {k} | {label} | {_pct(c.outcome.recall)}, {c.fa_rate:.1f} |" if first \
                    else "| | | |"
                lines.append(f"{head} {name} | {what} | {_cells(o)} |")
                first = False
    lines += [""]
    for name, per in _means(results).items():
        lines.append(f"- {name}: mean recall with the verifiers {_pct(per[0])} (target {_pct(TARGET_RECALL)}: "
                     f"{'met' if per[0] >= TARGET_RECALL else 'not met'}); keywords within "
                     f"{TARGET_FA:g} FA/h: {per[1]} of {len(KEYWORDS)}.")
    for name, (outcomes, rtf, rejected) in engine.items():
        mean = sum(o.recall for o in outcomes.values()) / len(outcomes)
        lines += ["", f"The real engine configured with nothing but `keywords: [{', '.join(KEYWORDS)}]` (the "
                  f"shipped defaults) on {name}: mean recall {_pct(mean)}, CPU {rtf:.4f} s per audio second "
                  f"for all four, {rejected} detections rejected by the verifiers.", "",
                  "| keyword | recall | FA/h | FAs speech + near misses | latency p50 / p90 |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {_cells(outcomes[k])} |" for k in KEYWORDS]
    return "\n".join(lines) + "\n"


def _means(results: dict[str, Any]) -> dict[str, tuple[float, int]]:
    out: dict[str, tuple[float, int]] = {}
    for name in HELD:
        rows = [r["held"][name]["verified"] for r in results["keywords"].values() if name in r.get("held", {})]
        if rows:
            out[name] = (sum(o.recall for o in rows) / len(KEYWORDS), sum(o.fa_per_hour <= TARGET_FA for o in rows))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default=".cache/kws-verifier",
                   help="the sets (tune, tune-near2, held, held2 from kws-heldout; extra is built here)")
    p.add_argument("--write", action="store_true", help="write the verifiers into edged/data/kws_verifiers/")
    p.add_argument("--engine", nargs="*", default=["held"], help="held-out sets to run the real engine on")
    p.add_argument("--markdown", default="docs/benchmarks.md", help="report file ('' for none)")


def run(args: argparse.Namespace) -> int:
    from benchmarks.kws_verifier_data import build_extra

    t0 = time.monotonic()
    root = Path(args.dir)
    if not (root / "extra" / "manifest.json").is_file():
        build_extra(root / "extra", progress)
    for name, spec in SET_SPECS.items():
        if not (root / name / "manifest.json").is_file():
            eval_set(root / name, spec)
    out_dir = Path(__file__).resolve().parent.parent / "edged" / "data" / "kws_verifiers" if args.write else None
    results = experiment(root, out_dir)
    results["minutes"] = (time.monotonic() - t0) / 60
    stale = stale_defaults(results)
    if stale and args.engine:
        print("The real engine runs edged's KEYWORD_DEFAULTS, which differ from the first stages chosen here; "
              "set them in edged/config/keywords.py and run again:\n" + "\n".join(stale), file=sys.stderr)
        return 1
    engine = {name: engine_check(root, name) for name in args.engine}
    text = render(results, engine)
    print(text)
    if args.markdown:
        write_section(Path(args.markdown), "kws-verifier", text, "Keyword spotting: cost and quality")
    return 0
