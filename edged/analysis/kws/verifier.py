"""A learned second stage for keyword detections: per keyword, a logistic regression on openWakeWord's
speech embeddings up to the detection.

Both model families are trained on many voices but few near misses, so phrases that share most of a
keyword ("hey my cart" for "hey mycroft") score as high as the keyword itself. openWakeWord's
embeddings still tell many of them apart; a small linear model trained on the keyword against such
phrases (the idea of openWakeWord's "custom verifier models") does. The engine runs it only when a
first stage (either family) fires, on the last `frames` embeddings the openWakeWord backend already
holds, so its cost is one dot product per detection. numpy only: the weights ship as .npz files in
`edged/data/kws_verifiers/` (made by `python -m benchmarks kws-verifier --write`, see
docs/benchmarks.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edged.analysis.kws.errors import ModelError

FORMAT = 1


class EmbeddingSource(Protocol):
    """What a verifier reads from: the openWakeWord backend's kept embeddings (imported only where that
    family is installed, so the engine names the ability, not the class)."""

    def embeddings_until(self, t: float) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Verifier:
    """p(keyword | the last `frames` embeddings) = sigmoid(w . (x - mean) / scale + bias); accepted at
    or above `threshold`."""

    keyword: str
    frames: int
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    source: str = ""  # the file it came from, for logs and check-config

    def probability(self, embeddings: np.ndarray) -> float:
        """`embeddings`: the backend's recent embeddings, oldest first (at least `frames` rows)."""
        x = np.asarray(embeddings, dtype=np.float64)[-self.frames:].reshape(-1)
        z = float(np.dot((x - self.mean) / self.scale, self.weights)) + self.bias
        return float(1.0 / (1.0 + np.exp(-z)))

    def accepts(self, embeddings: np.ndarray) -> bool:
        return self.probability(embeddings) >= self.threshold

    def save(self, path: Path, note: dict[str, Any] | None = None) -> Path:
        np.savez(path, format=np.int64(FORMAT), frames=np.int64(self.frames), mean=self.mean,
                 scale=self.scale, weights=self.weights, bias=np.float64(self.bias),
                 threshold=np.float64(self.threshold), keyword=np.str_(self.keyword),
                 note=np.str_(json.dumps(note or {}, sort_keys=True)))
        return path


def load_verifier(path: Path | str, keyword: str | None = None) -> Verifier:
    """A verifier from its .npz file (ModelError naming the file if it is not one, or not `keyword`'s)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != FORMAT:
                raise ModelError(f"{path}: verifier format {int(data['format'])}, this edged reads {FORMAT}")
            frames = int(data["frames"])
            v = Verifier(str(data["keyword"]), frames, data["mean"].astype(np.float64),
                         data["scale"].astype(np.float64), data["weights"].astype(np.float64),
                         float(data["bias"]), float(data["threshold"]), str(path))
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: not a keyword verifier ({exc})") from None
    if not (v.mean.shape == v.scale.shape == v.weights.shape == (frames * 96,)):
        raise ModelError(f"{path}: verifier arrays do not match {frames} embeddings of 96 values")
    if keyword is not None and v.keyword != keyword:
        raise ModelError(f"{path}: a verifier for {v.keyword!r}, not {keyword!r}")
    return v


def shipped_path(keyword: str) -> Path | None:
    """The verifier edged ships for a built-in keyword, if any."""
    path = Path(str(resources.files("edged") / "data" / "kws_verifiers" / f"{keyword}.npz"))
    return path if path.is_file() else None
