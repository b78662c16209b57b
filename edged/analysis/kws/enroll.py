"""Enrolling a voice: a built-in keyword's shipped verifier adapted to a few recordings of its user.

The shipped verifiers learned what two TTS engines' keywords sound like; another voice loses recall
(docs/keywords.md). Enrolling starts from the shipped weights and moves them toward the user's own
keyword: the openWakeWord embeddings the verifier reads where the first stage fires in their clips.
Three things hold it back from accepting everything that sounds like them:

1. a pull toward the shipped weights (L2 on the change, not on the weights);
2. the user's background audio, if given: whatever the first stage fires on there is a negative;
3. near misses that ship beside each verifier (the tuning negatives it found hardest): half train,
   half set the threshold, so that they pass no more often than with the shipped verifier.

The core (`adapt`, `calibrated`, `enroll`) is pure numpy; `collect` runs the daemon's own engine over
audio and hands back what its verifier would read at each first-stage detection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edged.analysis.kws.engine import KeywordEngine, spot_file
from edged.analysis.kws.errors import ModelError
from edged.analysis.kws.scoring import Detection
from edged.analysis.kws.verifier import Verifier

ENROLL_L2 = 0.1  # pull toward the shipped weights (per standardised input, class-balanced loss)
ITERATIONS = 300
PEAK_BEFORE, PEAK_AFTER = 0.25, 0.5  # s around a clip's strongest first-stage score: the keyword's end
MAX_THRESHOLD = 0.999
MIN_WINDOWS = 3  # fewer keyword windows than this: nothing to learn from
FOLDS = 3  # the clips are also enrolled in this many folds, each judging the clips it left out
KEYWORD_CLIPS = 15  # clips of the keyword `edged enroll` asks for

# What to record as "not the keyword" (`--background`): phrases that share a part, the rhythm or a
# rhyme with the keyword. In the user's own voice they teach what the shipped near misses, in TTS
# voices, cannot: without them an enrolled verifier takes more of its user's near misses.
SOUNDS_LIKE: dict[str, tuple[str, ...]] = {
    "okay_nabu": ("okay now boo", "okay, new book", "okay, maybe", "okay navy", "okay, not now", "hey nobody",
                  "okay neighbour", "okay, the news", "okay numbers", "oh, nab you one", "okay nap time",
                  "okay, a new bulb"),
    "hey_jarvis": ("hey Travis", "hey service", "hey Marvin", "hey harvest", "a jar of this", "hey Davis",
                   "hey Mavis", "hey Jarrod", "hey artist", "hey nervous", "hay harvest", "a jarring noise"),
    "alexa": ("Alex", "a Lexus", "Alexis", "Alaska", "Alicia", "Alex said", "a lecture", "a lexicon",
              "relax a little", "elect a leader", "Electra", "I'll expect her"),
    "hey_mycroft": ("hey Microsoft", "my craft", "Minecraft", "hey micro", "hey my car", "hey Mike",
                    "hey my loft", "hey microchip", "my crowd", "the microphone is on", "hey, my cousin",
                    "my crowbar"),
}


@dataclass(frozen=True)
class Tap:
    """One first-stage detection and the embeddings its verifier reads there (`frames` x 96)."""

    t: float
    score: float
    window: np.ndarray


@dataclass(frozen=True)
class NearMisses:
    """The hardest tuning negatives of a keyword, hardest first: even rows train, odd rows calibrate."""

    windows: np.ndarray  # (n, frames, 96)

    @property
    def train(self) -> np.ndarray:
        return self.windows[0::2]

    @property
    def calibration(self) -> np.ndarray:
        return self.windows[1::2]

    def save(self, path: Path, note: dict[str, Any]) -> Path:
        import json

        np.savez_compressed(path, windows=self.windows.astype(np.float16), note=np.str_(json.dumps(note)))
        return path


def near_misses_path(keyword: str) -> Path:
    return Path(str(resources.files("edged") / "data" / "kws_verifiers" / f"{keyword}.near-misses.npz"))


def shipped_near_misses(keyword: str, frames: int) -> NearMisses:
    """The near misses edged ships for a built-in keyword (ModelError naming the file when missing or
    not matching the verifier)."""
    path = near_misses_path(keyword)
    try:
        with np.load(path, allow_pickle=False) as data:
            windows = data["windows"].astype(np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: no near misses for {keyword!r} to enroll against ({exc})") from None
    if windows.ndim != 3 or windows.shape[1:] != (frames, 96):
        raise ModelError(f"{path}: near misses of shape {windows.shape}, the verifier reads {frames} x 96")
    return NearMisses(windows)


# --- the pure core -------------------------------------------------------------------------------

def probabilities(v: Verifier, windows: np.ndarray) -> np.ndarray:
    """`Verifier.probability` of every window at once (the same arithmetic)."""
    x = np.asarray(windows, np.float64).reshape(len(windows), -1)[:, -v.frames * 96:]
    out: np.ndarray = 1.0 / (1.0 + np.exp(-(((x - v.mean) / v.scale) @ v.weights + v.bias)))
    return out


def adapt(shipped: Verifier, positives: np.ndarray, negatives: np.ndarray, l2: float = ENROLL_L2,
          iterations: int = ITERATIONS) -> Verifier:
    """The shipped verifier moved toward `positives` and away from `negatives` (windows of `frames` x 96),
    pulled back toward its own weights. The standardisation stays the shipped one, so the pull acts on
    the scale it was trained on."""
    if not len(positives):
        raise ValueError("no keyword windows to enroll")
    x = np.concatenate([np.asarray(positives, np.float64).reshape(len(positives), -1),
                        np.asarray(negatives, np.float64).reshape(len(negatives), -1)])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    w, b = fit_logistic((x - shipped.mean) / shipped.scale, y, l2, shipped.weights, shipped.bias, iterations)
    return dataclasses.replace(shipped, weights=w, bias=b, source="")


def fit_logistic(z: np.ndarray, y: np.ndarray, l2: float, w0: np.ndarray, b0: float,
                 iterations: int) -> tuple[np.ndarray, float]:
    """Weights and bias minimising the class-balanced logistic loss on standardised inputs `z` plus
    `l2` / 2 times the squared distance of the weights from `w0`, starting at (`w0`, `b0`): full-batch
    gradient descent with Nesterov momentum (convex: it converges). Zeros for `w0` is plain L2."""
    weight = np.where(y > 0, 0.5 / max(1.0, y.sum()), 0.5 / max(1.0, (1 - y).sum()))
    step = 1.0 / (0.25 * _largest_eigenvalue(z, weight) + l2)
    w, b = w0.copy(), b0
    vw, vb = w.copy(), b
    for k in range(iterations):
        g = weight * (1.0 / (1.0 + np.exp(-(z @ vw + vb))) - y)
        w_next, b_next = vw - step * (z.T @ g + l2 * (vw - w0)), vb - step * float(g.sum())
        momentum = k / (k + 3)
        vw, vb = w_next + momentum * (w_next - w), b_next + momentum * (b_next - b)
        w, b = w_next, b_next
    return w, float(b)


def _largest_eigenvalue(z: np.ndarray, weight: np.ndarray, steps: int = 30) -> float:
    """Of z' diag(weight) z, by power iteration: bounds the loss's curvature, so the step is safe."""
    v = np.ones(z.shape[1]) / np.sqrt(z.shape[1])
    value = 1.0
    for _ in range(steps):
        u = z.T @ (weight * (z @ v))
        value = float(np.linalg.norm(u)) or 1.0
        v = u / value
    return value


def calibrated(shipped: Verifier, adapted: Verifier, near_misses: np.ndarray) -> Verifier:
    """`adapted` with the lowest threshold (not under the shipped one) at which `near_misses` pass no
    more often than with the shipped verifier at its threshold."""
    allowed = int(np.count_nonzero(probabilities(shipped, near_misses) >= shipped.threshold))
    p = np.sort(probabilities(adapted, near_misses))[::-1]
    threshold = shipped.threshold
    if allowed < len(p):
        threshold = max(threshold, float(np.nextafter(p[allowed], 1.0)))
    return dataclasses.replace(adapted, threshold=min(threshold, MAX_THRESHOLD))


def keyword_windows(taps: list[Tap]) -> list[np.ndarray]:
    """The windows of one keyword clip that hold the keyword: the first-stage detections from shortly
    before its strongest score (where the keyword ends) to shortly after."""
    if not taps:
        return []
    peak = max(taps, key=lambda tap: tap.score).t
    return [tap.window for tap in taps if peak - PEAK_BEFORE <= tap.t <= peak + PEAK_AFTER]


@dataclass(frozen=True)
class Enrollment:
    """An adapted verifier and what it does on the recordings it came from: `clips_accepted_after` is
    in-sample (a check that it learned), `clips_accepted_unseen` judges each clip by a verifier
    enrolled without it (an estimate of its recall on the user; docs/benchmarks.md measures that on
    other recordings)."""

    verifier: Verifier
    clips: int
    clips_heard: int  # clips where the first stage fired at all
    keyword_windows: int
    background_windows: int
    near_misses: int
    clips_accepted_before: int  # clips the shipped verifier accepts somewhere
    clips_accepted_after: int
    clips_accepted_unseen: int  # each clip judged by a verifier enrolled without it (`FOLDS` folds)
    background_accepted_before: int  # background detections the verifiers accept
    background_accepted_after: int

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "verifier"}
        out.update(keyword=self.verifier.keyword, threshold=round(self.verifier.threshold, 4))
        return out


def enroll(shipped: Verifier, clips: list[list[Tap]], background: list[Tap], near: NearMisses,
           l2: float = ENROLL_L2) -> Enrollment:
    """Adapt `shipped` to the keyword clips (each: its first-stage detections) against the background
    detections and the shipped near misses, then set its threshold on the other half of those."""
    per_clip = [np.array(keyword_windows(taps)) for taps in clips]
    heard = [w for w in per_clip if len(w)]
    n_windows = sum(len(w) for w in heard)
    if n_windows < MIN_WINDOWS:
        raise ValueError(f"the first stage heard the keyword in {len(heard)} of {len(clips)} clips "
                         f"({n_windows} windows, at least {MIN_WINDOWS} needed)")
    bg = np.array([tap.window for tap in background]).reshape(-1, shipped.frames, 96)
    negatives = np.concatenate([bg, near.train]) if len(bg) else near.train

    def fitted(keyword_clips: list[np.ndarray]) -> Verifier:
        return calibrated(shipped, adapt(shipped, np.concatenate(keyword_clips), negatives, l2), near.calibration)

    adapted = fitted(heard)
    unseen = 0
    for k in range(min(FOLDS, len(heard))):  # what the user can expect of clips it has not heard
        rest = [w for i, w in enumerate(heard) if i % FOLDS != k]
        if rest:
            unseen += _clips_accepted(fitted(rest), heard[k::FOLDS])
    return Enrollment(adapted, len(clips), len(heard), n_windows, len(bg), len(near.windows),
                      _clips_accepted(shipped, heard), _clips_accepted(adapted, heard), unseen,
                      _accepted(shipped, bg), _accepted(adapted, bg))


def _accepted(v: Verifier, windows: np.ndarray) -> int:
    return int(np.count_nonzero(probabilities(v, windows) >= v.threshold)) if len(windows) else 0


def _clips_accepted(v: Verifier, clips: Iterable[np.ndarray]) -> int:
    return sum(bool(_accepted(v, w)) for w in clips)


# --- the I/O shell: the daemon's engine over recordings ------------------------------------------

def collect(engine: KeywordEngine, keyword: str, samples: np.ndarray) -> list[Tap]:
    """Every first-stage detection of `keyword` in one recording (a fresh stream, the daemon's own
    chunking), with the embeddings its verifier reads there."""
    verifier = engine.verifiers.get(keyword)
    if verifier is None:
        raise ValueError(f"keyword {keyword!r} has no verifier in this engine")
    taps: list[Tap] = []

    def tap(detection: Detection, embeddings: np.ndarray) -> None:
        if detection.keyword == keyword and len(embeddings) >= verifier.frames:
            taps.append(Tap(detection.stream_time, detection.score, embeddings[-verifier.frames:].copy()))

    engine.set_verifier_tap(tap)
    try:
        for _ in spot_file(engine, samples):
            pass
    finally:
        engine.set_verifier_tap(None)
    return taps
