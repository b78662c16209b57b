"""Keyword names the config knows without loading a model: each backend's built-in keywords, the aliases
of their spellings, and what a model path looks like. The catalog (`edged.analysis.kws.catalog`)
turns these names into model files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MICRO = "micro-wakeword"
OPEN = "openwakeword"
BACKEND_NAMES = (MICRO, OPEN)

# Names each backend has without any file from the user (the packages' own models).
BUILTIN_KEYWORDS: dict[str, tuple[str, ...]] = {
    MICRO: ("alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"),
    OPEN: ("alexa", "hey_jarvis", "hey_mycroft", "hey_rhasspy", "okay_nabu"),
}
ALIASES = {"ok_nabu": "okay_nabu"}  # openWakeWord's spelling of the same phrase

_VERSION_SUFFIX = re.compile(r"_v\d+(\.\d+)*$")


def looks_like_path(name: str) -> bool:
    """Whether a keyword entry is a file path rather than a name."""
    return "/" in name or name.endswith((".json", ".tflite", ".onnx"))


def canonical(name: str) -> str:
    """The event name of a keyword: aliases folded, model version suffixes dropped."""
    stem = _VERSION_SUFFIX.sub("", name)
    return ALIASES.get(stem, stem)


@dataclass(frozen=True)
class Tuned:
    """A keyword's settings on one family: cutoff and sliding window (scores averaged)."""

    cutoff: float
    window: int


@dataclass(frozen=True)
class KeywordDefaults:
    """What naming a built-in keyword gets: its family, cutoff and window, optionally a second
    family that must agree (its cutoff and window, and how far apart both crossings may be), and
    whether its learned verifier checks each detection.

    Chosen per keyword on a tuning set and checked on held-out ones by `python -m benchmarks
    kws-heldout` and, with a verifier, `kws-verifier` (docs/benchmarks.md). `FAMILY_DEFAULTS` holds
    the best settings of each family on its own, for a keyword named on the other family or with
    its second stage or verifier switched off.
    """

    backend: str
    cutoff: float
    window: int
    confirm: str | None = None  # the family that must also cross its cutoff (None: no second stage)
    confirm_cutoff: float | None = None
    confirm_window: int | None = None
    within: float = 1.0  # seconds of audio the two crossings may lie apart
    verify: bool = False  # each detection of the first family checked by the keyword's shipped verifier


# Tuned by `python -m benchmarks kws-heldout` on its tuning set (docs/benchmarks.md, "Keyword
# defaults"), pasted from what it prints. hey_mycroft has none: nothing kept 25% of its recall within
# the false-accept budget ("hey my ..." near misses score 1.0 in both families), so it keeps its
# model's own settings.
FAMILY_DEFAULTS: dict[tuple[str, str], Tuned] = {
    ("okay_nabu", MICRO): Tuned(0.98, 3),
    ("okay_nabu", OPEN): Tuned(0.05, 1),
    ("hey_jarvis", MICRO): Tuned(0.05, 1),
    ("hey_jarvis", OPEN): Tuned(0.5, 1),
    ("alexa", MICRO): Tuned(0.99, 8),
    ("alexa", OPEN): Tuned(0.5, 2),
}
KEYWORD_DEFAULTS: dict[str, KeywordDefaults] = {
    # first stage and verifier chosen together by `python -m benchmarks kws-verifier` (docs/benchmarks.md,
    # "Keyword verifiers"): a low cutoff for recall, the verifier (its threshold is in its file) for the
    # near misses
    "okay_nabu": KeywordDefaults(OPEN, 0.02, 1, verify=True),
    "hey_jarvis": KeywordDefaults(OPEN, 0.02, 1, verify=True),
    "alexa": KeywordDefaults(OPEN, 0.05, 1, verify=True),
    "hey_mycroft": KeywordDefaults(MICRO, 0.05, 1, verify=True),
}


# Keywords edged ships a learned verifier for (edged/data/kws_verifiers/<name>.npz; it reads
# openWakeWord's speech embeddings, behind a first stage of either family). Made by
# `python -m benchmarks kws-verifier --write`.
VERIFIED_KEYWORDS: tuple[str, ...] = ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft")


def other_family(backend: str) -> str:
    return OPEN if backend == MICRO else MICRO
