"""Tuning-side data for the keyword verifiers (`python -m benchmarks kws-verifier`): a third pool of
near-miss phrases and more keyword scenes, spoken by espeak-ng and festival only.

The held-out sets (flite voices, the odd halves of near-miss pools 1 and 2 of
`benchmarks.synth.texts`) are never used to train or choose anything; `VERIFIER_NEAR_MISSES` shares
no phrase with either pool (checked by `check_disjoint`, which the build runs first). Each keyword's
list has its words alone, names and words that share its first or last part, and its carrier with
the name changed by one sound ("hey my cart" for "hey mycroft").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.synth.kws_eval import EvalSpec, Manifest, _Builder, _write, near_miss_scenes, positive_files
from benchmarks.synth.texts import EXTRA_NEAR_MISSES, NEAR_MISSES, near_misses

VERIFIER_NEAR_MISSES: dict[str, tuple[str, ...]] = {
    "okay_nabu": ("okay", "nabu", "okay Nebo", "okay, Nepal", "okay Nadal", "okay, neighbourhood",
                  "okay, a new boat", "okay, knee boots", "okay Nabil", "okay, now you", "okay Nemo",
                  "okay Zulu", "okay canoe", "okay, no boos", "okay, tofu", "okay, Malibu", "okay, nap too",
                  "okay, a new view", "okay, Naples", "okay, new moon", "okay Manu", "okay, Honolulu",
                  "okay Kanu", "okay, Navarro", "okay, snowboard", "okay Nala", "hey, Nabu's", "a cab to you"),
    "hey_jarvis": ("hey", "jarvis", "hey Jeeves", "hey, Java", "hey Jamie", "hey, Janice", "hey, Jack",
                   "hey, Avis", "hey Gervais", "hey Jarrah", "hey, carvery", "hey, jarhead", "hey Harvard",
                   "hey, Garvin", "hey, starfish", "hey Jarek", "they carve it", "hey, Otis", "hey Jerry",
                   "hey Harris", "hey, jammy", "hey Largo", "hey, Jarrow", "hey Travers", "hey, Charvet",
                   "hey, Chavez", "a jar is", "hey, jars of"),
    "alexa": ("a galaxy", "relax her", "Lexington", "Alessia", "Alesha", "Alec, sir", "Alec's house",
              "a lexical", "Alice", "Alyx", "elixirs", "a lesson", "a legend", "Alec sat", "Ella sat",
              "Alexandria", "a Lexmark", "Lexus car", "the axle", "Alex and Sam", "a lax one", "eleven",
              "Angela", "a Mexican", "Alberta", "Alaskan", "elect sir", "unless a"),
    "hey_mycroft": ("hey", "mycroft", "hey my cart", "hey my crib", "hey my crush", "hey my crate",
                    "hey my cream", "hey my croquet", "hey Mike Ross", "hey, mice crawl", "hey my cave",
                    "hey my crook", "hey my cuff", "hey micro fibre", "hey Michael", "hey my scarf",
                    "hey my crane", "hey my credit", "hey, mighty", "hey my soft", "hey my gift",
                    "hey Mykonos", "hey my cradle", "hey Mick Ross", "hey my crumpet", "hey my crisp",
                    "hey, my Kraft", "my crofts"),
}

def check_disjoint(held_out: dict[str, tuple[str, ...]] | None = None) -> None:
    """Raise if a verifier phrase is one of pools 1 or 2 (either half) or of `held_out`'s phrases."""
    def norm(p: str) -> str:
        return "".join(ch for ch in p.lower() if ch.isalnum() or ch == " ").strip()

    pool2 = {k: near_misses(k, None, pool=2) for k in VERIFIER_NEAR_MISSES}
    taken = {norm(p) for table in (NEAR_MISSES, EXTRA_NEAR_MISSES, pool2, held_out or {}) for ps in table.values()
             for p in ps}
    mine = {norm(p) for ps in VERIFIER_NEAR_MISSES.values() for p in ps}
    clash = sorted(mine & taken)
    if clash:
        raise ValueError(f"verifier near misses also in the evaluation pools: {clash}")


# The extra tuning set: espeak-ng and festival, the tuning half of the sentences, its own seed.
EXTRA_SPEC = EvalSpec(seed=31, positives=60, speech_minutes=0.0, near_miss_voices=3, noise_minutes=0.0,
                      keywords=("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft"),
                      engines=("espeak-ng", "festival"), part=0)


def build_extra(folder: Path, progress: Callable[[str], None] = print) -> Manifest:
    """Positives of every keyword (60 more scenes each) and the verifier near misses, 3 voices each."""
    check_disjoint()
    spec = EXTRA_SPEC
    folder.mkdir(parents=True, exist_ok=True)
    b = _Builder(spec, progress)
    files, occurrences = positive_files(b, folder)
    for keyword in spec.keywords:
        b.progress(f"verifier near misses {keyword}")
        pieces = near_miss_scenes(b, VERIFIER_NEAR_MISSES[keyword])
        files.append(_write(folder, f"near_miss_{keyword}.flac", b.floor(np.concatenate(pieces)), "near_miss"))
    manifest = Manifest(folder, spec, tuple(files), tuple(occurrences))
    manifest.save()
    return manifest
