"""Keyword names the config knows without loading a model: each backend's built-in keywords, the aliases
of their spellings, and what a model path looks like. The catalog (`edged.analysis.kws.catalog`)
turns these names into model files.
"""

from __future__ import annotations

import re

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
