"""Keyword spotting: wake-word backends behind one protocol, a VAD gate, and the spotter thread.

`KeywordEngine` (backends + VAD + refractory) is what both `edged kws` and the daemon's
`KeywordSpotter` run; see docs/keywords.md for backends, custom models and tuning.
"""

from edged.analysis.kws.backend import KeywordBackend
from edged.analysis.kws.catalog import ModelSpec, available, resolve
from edged.analysis.kws.engine import BACKENDS, KeywordEngine, plan_keywords, spot_file
from edged.analysis.kws.errors import AudioFormatError, KwsError, ModelError, UnknownKeywordError
from edged.analysis.kws.scoring import Detection, KeywordSettings
from edged.analysis.kws.spotter import KeywordSpotter
from edged.config.keywords import BUILTIN_KEYWORDS

__all__ = [
    "BACKENDS",
    "BUILTIN_KEYWORDS",
    "AudioFormatError",
    "Detection",
    "KeywordBackend",
    "KeywordEngine",
    "KeywordSettings",
    "KeywordSpotter",
    "KwsError",
    "ModelError",
    "ModelSpec",
    "UnknownKeywordError",
    "available",
    "plan_keywords",
    "resolve",
    "spot_file",
]
