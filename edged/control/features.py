"""Runtime features: the switches, numbers and texts MQTT `/set` changes (and Home Assistant shows).

Each feature knows its range and how to apply a value. Values set at run time are saved to a small
JSON file and restored on the next start, unless the config's own value for that feature changed
since (then the config wins: the user edited it on purpose).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edged.control.commands import CommandError, parse_number, parse_switch
from edged.events import FeatureState
from edged.logs import get_logger

Value = bool | float | str
TextCheck = Callable[[str], str | None]  # a text feature's rule: what is wrong with a value, or None


@dataclass(frozen=True)
class Feature:
    """One runtime setting of one source (or of the device)."""

    source: str
    name: str
    kind: Literal["switch", "number", "text"]
    initial: Value  # the config's value
    apply: Callable[[Value], None]
    minimum: float = 0.0  # numbers: the range; texts: the length in characters
    maximum: float = 1.0
    step: float = 1.0  # numbers move in these steps (how Home Assistant presents it lives with discovery)
    check: TextCheck | None = None  # texts: a rule beyond the length

    @property
    def key(self) -> str:
        return f"{self.source}/{self.name}"

    def parse(self, text: str) -> Value:
        if self.kind == "switch":
            return parse_switch(text)
        if self.kind == "text":
            return self._parse_text(text)
        return parse_number(text, self.minimum, self.maximum)

    def _parse_text(self, text: str) -> str:
        value = text.strip()
        if not self.minimum <= len(value) <= self.maximum:
            raise CommandError(f"must be {self.minimum:g} to {self.maximum:g} characters (got {len(value)})")
        problem = self.check(value) if self.check is not None else None
        if problem:
            raise CommandError(problem)
        return value

    def accepts(self, value: object) -> bool:
        """A stored value this feature can take again (the store is a file: anything may be in it)."""
        if self.kind == "switch":
            return isinstance(value, bool)
        if self.kind == "text":
            return isinstance(value, str) and self.minimum <= len(value) <= self.maximum and not (
                self.check is not None and self.check(value))
        return isinstance(value, int | float) and not isinstance(value, bool) and (
            self.minimum <= value <= self.maximum)


class FeatureStore:
    """`features.json` in the state directory: {key: {"value": v, "config": config value when set}}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log = get_logger(component="features")
        self._data: dict[str, dict[str, Any]] = self._load()
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            get_logger(component="features").warning("feature_store_unreadable", path=str(self.path), error=str(exc))
            return {}
        return data if isinstance(data, dict) else {}

    def restored(self, feature: Feature) -> Value | None:
        entry = self._data.get(feature.key)
        if not isinstance(entry, dict) or entry.get("config") != feature.initial:
            return None
        value = entry.get("value")
        if not feature.accepts(value):
            return None
        return float(value) if feature.kind == "number" else value  # type: ignore[arg-type]

    def save(self, feature: Feature, value: Value) -> None:
        with self._lock:
            self._data[feature.key] = {"value": value, "config": feature.initial}
            tmp = self.path.with_suffix(".tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True), encoding="utf-8")
                os.replace(tmp, self.path)  # atomic: a crash leaves the old file or the new one
            except OSError as exc:
                self.log.warning("feature_store_write_failed", path=str(self.path), error=str(exc))


class FeatureRegistry:
    """All runtime features, their current values, and the `/set` entry point."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
        self._features: dict[str, Feature] = {}
        self._values: dict[str, Value] = {}
        self._lock = threading.Lock()

    def add(self, feature: Feature) -> Value:
        """Register a feature, apply its restored (or configured) value, and return that value."""
        value = self._store.restored(feature)
        value = feature.initial if value is None else value
        with self._lock:
            self._features[feature.key] = feature
            self._values[feature.key] = value
        if value != feature.initial:
            feature.apply(value)
        return value

    def remove_source(self, source: str) -> None:
        with self._lock:
            for key in [k for k, f in self._features.items() if f.source == source]:
                del self._features[key]
                del self._values[key]

    def set(self, source: str, name: str, text: str) -> FeatureState:
        """Validate and apply `/set`; raises `CommandError` (and changes nothing) on bad input."""
        with self._lock:
            feature = self._features.get(f"{source}/{name}")
            if feature is None:
                raise CommandError(self._unknown(source, name))
        value = feature.parse(text)
        feature.apply(value)
        with self._lock:
            self._values[feature.key] = value
        self._store.save(feature, value)
        return FeatureState(source, name, value)

    def _unknown(self, source: str, name: str) -> str:
        sources = sorted({f.source for f in self._features.values()})
        if source not in sources:
            return f"unknown source {source!r} (known: {', '.join(sources) or 'none'})"
        names = sorted(f.name for f in self._features.values() if f.source == source)
        return f"{source} has no feature {name!r} (features: {', '.join(names)})"

    def value(self, source: str, name: str) -> Value | None:
        with self._lock:
            return self._values.get(f"{source}/{name}")

    def features(self) -> list[Feature]:
        with self._lock:
            return list(self._features.values())

    def states(self) -> list[FeatureState]:
        with self._lock:
            return [FeatureState(f.source, f.name, self._values[k]) for k, f in self._features.items()]
