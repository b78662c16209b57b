"""`KeywordEngine`: the configured backends, the VAD gate and the refractory period, for one stream.

This is the code both the daemon's `KeywordSpotter` thread and `edged kws` run, so what the CLI
reports on a file is what the daemon would publish. `BACKENDS` is the explicit registry keyed by
the config's `backend` name; a keyword may pick its own backend (`keywords: [{name: hey_jarvis,
backend: openwakeword}]`), and the engine runs one backend object per family in use.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from edged.analysis.kws.backend import KeywordBackend
from edged.analysis.kws.catalog import ModelSpec, available, resolve
from edged.analysis.kws.errors import KwsError, ModelError, UnknownKeywordError
from edged.analysis.kws.scoring import Agreement, Detection, KeywordSettings, Refractory
from edged.analysis.kws.vad import VadGate
from edged.analysis.kws.verifier import EmbeddingSource, Verifier, load_verifier, shipped_path
from edged.config.keywords import MICRO, OPEN, canonical
from edged.config.schema import KeywordConfig, VadConfig, WakewordConfig
from edged.logs import get_logger
from edged.sources.audio.chunk import SAMPLE_RATE, AudioChunk
from edged.sources.audio.files import iter_chunks

CONFIG_KEY = "models.wakeword.keywords"


@dataclass(frozen=True)
class KeywordPlan:
    """One configured keyword on one family, resolved: its model and its effective settings.

    A keyword with a second stage (`confirm`) has two plans: its own and the confirming family's
    (`confirms` is set on that one: its detections only ever confirm, never fire)."""

    spec: ModelSpec
    settings: KeywordSettings
    key: str  # where it was configured, for error messages
    confirms: bool = False
    within: float = 0.0  # for a confirming plan: how far apart both crossings may be (s)
    verifier: Path | None = None  # the learned second stage checking this family's detections


def _micro(plans: Sequence[KeywordPlan], models_dir: Path | None) -> KeywordBackend:
    from edged.analysis.kws.microwakeword import MicroWakeWordBackend

    return MicroWakeWordBackend([p.spec for p in plans], [p.settings for p in plans])


def _open(plans: Sequence[KeywordPlan], models_dir: Path | None) -> KeywordBackend:
    from edged.analysis.kws.openwakeword import OpenWakeWordBackend

    return OpenWakeWordBackend([p.spec for p in plans], [p.settings for p in plans], models_dir)


BackendFactory = Callable[[Sequence[KeywordPlan], "Path | None"], KeywordBackend]
BACKENDS: dict[str, BackendFactory] = {MICRO: _micro, OPEN: _open}


def plan_keywords(config: WakewordConfig) -> list[KeywordPlan]:
    """Resolve every configured keyword (and its second stage) to its model; no model is loaded yet.

    Raises `UnknownKeywordError` / `ModelError` prefixed with the config key of the keyword.
    """
    plans = []
    for i, effective in enumerate(config.keyword_settings):
        key = f"{CONFIG_KEY}[{i}]"
        kw = _installed(config, i, effective)
        plans.append(_plan(config, kw, key))
        if kw.confirm is not None:
            c = kw.confirm
            confirm = KeywordConfig(kw.name, c.cutoff, c.window, kw.enabled, c.backend)
            plans.append(dataclasses.replace(_plan(config, confirm, f"{key}.confirm"), confirms=True,
                                             within=c.within))
    seen: dict[tuple[str, str], str] = {}
    for plan in plans:
        ident = (plan.spec.backend, plan.spec.keyword)
        if ident in seen:
            raise UnknownKeywordError(f"{plan.key}: keyword {plan.spec.keyword!r} is already configured at "
                                      f"{seen[ident]} for the {plan.spec.backend} backend")
        seen[ident] = plan.key
    return plans


def _installed(config: WakewordConfig, i: int, kw: KeywordConfig) -> KeywordConfig:
    """Keyword `i`'s settings with what the tuned defaults wanted but is not installed left out: a
    tuned openWakeWord family or second stage without the package (the config did not ask for it)."""
    raw = config.keywords[i]
    own = raw if isinstance(raw, KeywordConfig) else KeywordConfig(raw)
    if _open_missing(kw.backend) and config.backend == "auto" and own.backend is None:
        get_logger().warning("kws_family_fallback", keyword=kw.name, wanted=OPEN, using=MICRO,
                             fix="pip install 'edged[openwakeword]'")
        kw = dataclasses.replace(config, backend="micro-wakeword").keyword_settings[i]
    if kw.verify and not available(OPEN) and own.verify is None:
        # a verifier reads openWakeWord's embeddings; without them the keyword gets the family's
        # settings for use without one (the tuned cutoff assumed the verifier)
        get_logger().warning("kws_verifier_dropped", keyword=kw.name, wanted=OPEN,
                             fix="pip install 'edged[openwakeword]'")
        keywords = list(config.keywords)
        keywords[i] = dataclasses.replace(own, verify=False)
        kw = dataclasses.replace(config, keywords=tuple(keywords)).keyword_settings[i]
    if kw.confirm is not None and not kw.confirm.enabled:
        return dataclasses.replace(kw, confirm=None)
    if kw.confirm is not None and _open_missing(kw.confirm.backend) and own.confirm is None:
        get_logger().warning("kws_second_stage_dropped", keyword=kw.name, wanted=OPEN,
                             fix="pip install 'edged[openwakeword]'")
        return dataclasses.replace(kw, confirm=None)
    return kw


def _plan(config: WakewordConfig, kw: KeywordConfig, key: str) -> KeywordPlan:
    backend = kw.backend or MICRO
    try:
        spec = resolve(backend, kw.name, config.models_dir)
        settings = KeywordSettings(kw.cutoff if kw.cutoff is not None else spec.cutoff,
                                   kw.window if kw.window is not None else spec.window, kw.enabled)
    except (KwsError, ValueError) as exc:
        raise type(exc)(f"{key}: {exc}") from None
    verifier = None
    if kw.verify:
        verifier = kw.verifier or shipped_path(canonical(kw.name))
        if verifier is None:  # the config checked the name; a missing file is a broken install
            raise ModelError(f"{key}: edged's verifier for {kw.name!r} is missing from the installed package")
    return KeywordPlan(spec, settings, key, verifier=verifier)


def _load_verifier(plan: KeywordPlan) -> Verifier:
    assert plan.verifier is not None
    try:
        return load_verifier(plan.verifier, plan.spec.keyword)
    except ModelError as exc:
        raise ModelError(f"{plan.key}.verifier: {exc}") from None


def _open_missing(backend: str | None) -> bool:
    return backend == OPEN and not available(OPEN)


class KeywordEngine:
    """Backends + VAD gate + refractory period over one audio stream (single-threaded use,
    except the setters, which are safe from any thread)."""

    def __init__(self, backends: Sequence[KeywordBackend], refractory: float = 2.0,
                 vad: VadGate | None = None, pre_roll: float = 0.5,
                 agreements: Mapping[str, Agreement] | None = None,
                 verifiers: Mapping[str, Verifier] | None = None) -> None:
        self.backends = tuple(backends)
        self.agreements = dict(agreements or {})  # keyword -> its second stage
        self.verifiers = dict(verifiers or {})  # keyword -> its learned verifier
        # the openWakeWord backend, whose embeddings the verifiers read
        self._features = cast("EmbeddingSource | None", next((b for b in self.backends if b.name == OPEN), None))
        if self.verifiers and self._features is None:
            raise ValueError("a keyword verifier needs the openwakeword backend's embeddings")
        self.rejected = 0  # detections a verifier turned down
        self._verifier_tap: Callable[[Detection, np.ndarray], None] | None = None
        self.refractory = Refractory(refractory)
        self.vad = vad
        self.pre_roll = pre_roll
        self.detections = 0

    @classmethod
    def from_config(cls, config: WakewordConfig) -> KeywordEngine:
        """Resolve and load every configured keyword's model (errors name the keyword or file)."""
        plans = plan_keywords(config)
        by_backend: dict[str, list[KeywordPlan]] = {}
        for plan in plans:
            by_backend.setdefault(plan.spec.backend, []).append(plan)
        backends: list[KeywordBackend] = []
        verified = [p for p in plans if p.verifier is not None]
        if verified and OPEN not in by_backend:
            by_backend[OPEN] = []  # no keyword of its own: only the verifiers' embeddings
        try:
            verifiers = {p.spec.keyword: _load_verifier(p) for p in verified}
            for name, group in by_backend.items():
                backends.append(BACKENDS[name](group, config.models_dir))
        except BaseException:
            for backend in backends:
                backend.close()
            raise
        agreements = {p.spec.keyword: Agreement(p.spec.backend, p.within) for p in plans if p.confirms}
        return cls(backends, config.refractory, make_gate(config.vad), config.vad.pre_roll, agreements, verifiers)

    @property
    def keywords(self) -> tuple[str, ...]:
        """Every keyword spotted, each once, in backend then config order."""
        out: list[str] = []
        for backend in self.backends:
            out.extend(k for k in backend.keywords if k not in out)
        return tuple(out)

    def describe(self) -> list[dict[str, Any]]:
        """Keyword, backend, role and settings of everything spotted (for logs and `edged kws`)."""
        out = []
        for b in self.backends:
            for k in b.keywords:
                rule = self.agreements.get(k)
                role = "detect" if rule is None else (
                    f"confirm within {rule.within:g} s" if b.name == rule.confirm_backend else "detect, confirmed")
                verifier = self.verifiers.get(k)
                if verifier is not None and not role.startswith("confirm"):
                    own = "" if verifier.source == str(shipped_path(canonical(k))) else f" by {verifier.source}"
                    role += f", verified{own} (threshold {verifier.threshold:.3g})"
                out.append({"keyword": k, "backend": b.name, "role": role, **dataclasses.asdict(b.settings(k))})
        return out

    def process(self, chunk: AudioChunk) -> list[Detection]:
        """Feed one chunk; the detections that fire (refractory applied), in stream order."""
        if self.vad is not None and not self.vad.push(chunk):
            for backend in self.backends:
                backend.idle(chunk, self.pre_roll)
            return []
        hits: list[Detection] = []
        for backend in self.backends:
            hits.extend(backend.process(chunk))
        if not hits:
            return []
        if len(hits) > 1:
            hits.sort(key=lambda d: d.stream_time)
        if self.verifiers:
            hits = [d for d in hits if self._verified(d)]
        if self.agreements:
            hits = [d for d in map(self._agree, hits) if d is not None]
        fired = [d for d in hits if self.refractory.admit(d.keyword, d.stream_time)]
        self.detections += len(fired)
        return fired

    def _verified(self, detection: Detection) -> bool:
        """Whether the keyword's verifier (if any) accepts a detection of its detecting family, from the
        openWakeWord embeddings up to the detection's time."""
        verifier = self.verifiers.get(detection.keyword)
        rule = self.agreements.get(detection.keyword)
        if verifier is None or (rule is not None and detection.backend == rule.confirm_backend):
            return True
        assert self._features is not None  # checked when the engine was made
        embeddings = self._features.embeddings_until(detection.stream_time)
        if self._verifier_tap is not None:
            self._verifier_tap(detection, embeddings)
        if verifier.accepts(embeddings):
            return True
        self.rejected += 1
        return False

    def set_verifier_tap(self, tap: Callable[[Detection, np.ndarray], None] | None) -> None:
        """Hand `tap(detection, embeddings)` every first-stage detection a verifier judges, with the
        embeddings it reads, before it judges (`edged enroll` collects them; None stops it)."""
        self._verifier_tap = tap

    def _agree(self, detection: Detection) -> Detection | None:
        rule = self.agreements.get(detection.keyword)
        return detection if rule is None else rule.push(detection)

    def reset(self) -> None:
        """A new stream (next file, or the source restarted)."""
        for backend in self.backends:
            backend.reset()
        self.refractory.reset()
        for rule in self.agreements.values():
            rule.reset()
        if self.vad is not None:
            self.vad.reset()

    def _owners(self, keyword: str, confirming: bool = True) -> list[KeywordBackend]:
        """The backends that spot `keyword` (without the one that only confirms it, unless `confirming`)."""
        rule = self.agreements.get(keyword)
        owners = [b for b in self.backends if keyword in b.keywords
                  and (confirming or rule is None or b.name != rule.confirm_backend)]
        if not owners:
            raise UnknownKeywordError(f"keyword {keyword!r} is not configured "
                                      f"(configured: {', '.join(self.keywords) or 'none'})")
        return owners

    def set_enabled(self, keyword: str, enabled: bool) -> None:
        for backend in self._owners(keyword):
            backend.set_enabled(keyword, enabled)

    def set_cutoff(self, keyword: str, cutoff: float) -> None:
        """The cutoff of the family that detects `keyword` (a confirming family keeps its own)."""
        owners = self._owners(keyword, confirming=False)
        KeywordSettings(cutoff, 1)  # validate once, before changing anything
        for backend in owners:
            backend.set_cutoff(keyword, cutoff)

    def settings(self, keyword: str) -> KeywordSettings:
        return self._owners(keyword, confirming=False)[0].settings(keyword)

    def set_score_sink(self, sink: Callable[[str, str, float, float], None] | None) -> None:
        """Hand every smoothed score to `sink(backend, keyword, stream_time, score)` (None stops it)."""
        for backend in self.backends:
            if sink is None:
                backend.set_score_sink(None)
            else:
                backend.set_score_sink(functools.partial(sink, backend.name))

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


def make_gate(vad: VadConfig) -> VadGate | None:
    return VadGate(vad.threshold_db, vad.hangover) if vad.enabled else None


def spot_file(engine: KeywordEngine, samples: np.ndarray, chunk_ms: int = 10) -> Iterator[Detection]:
    """Run a whole recording through `engine` as a fresh stream, in chunks of `chunk_ms`."""
    engine.reset()
    for chunk in iter_chunks(samples, SAMPLE_RATE * chunk_ms // 1000):
        yield from engine.process(chunk)
