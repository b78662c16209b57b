"""Caption text: titles, the near-duplicate text gate, labels from synonyms, and rule matching."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edged.events import TITLE_LIMIT, TriggerKind

# Words that map to each label; the config's `labels:` extends or replaces these lists.
DEFAULT_LABELS: dict[str, tuple[str, ...]] = {
    "person": ("person", "people", "man", "men", "woman", "women", "child", "children", "kid", "boy", "girl",
               "someone", "somebody", "pedestrian", "visitor", "courier", "delivery driver", "mail carrier",
               "postman", "worker", "adult", "baby", "toddler", "human"),
    "vehicle": ("car", "truck", "van", "bus", "motorcycle", "motorbike", "scooter", "vehicle", "suv", "pickup",
                "tractor", "bicycle", "bike"),
    "animal": ("dog", "cat", "bird", "deer", "fox", "squirrel", "rabbit", "animal", "pet", "horse", "cow",
               "raccoon", "hedgehog", "puppy", "kitten"),
    "package": ("package", "parcel", "box", "delivery", "envelope", "mail"),
}
_NEGATIONS = {"no", "not", "without", "nobody", "nothing", "none", "neither", "nor", "empty", "absent", "zero"}
_FILLER = {"a", "an", "the", "is", "are", "there", "this", "that", "of", "in", "on", "at", "image", "picture",
           "shows", "showing", "scene", "photo", "can", "be", "seen", "visible", "appears", "to"}


def title_of(text: str, limit: int = TITLE_LIMIT) -> str:
    """The caption's first sentence, cut at a word boundary to fit Home Assistant's state limit."""
    first = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0] if text.strip() else ""
    if len(first) <= limit:
        return first
    cut = first[: limit - 1].rsplit(" ", 1)[0]
    return cut + "…"


def normalise(text: str) -> list[str]:
    """Lower-case word stems without punctuation or filler, for comparing captions."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    return [_stem(w) for w in words if w not in _FILLER]


def _stem(word: str) -> str:
    """A crude suffix strip ("standing", "stands" -> "stand") so re-wordings compare equal."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def similarity(a: str, b: str) -> float:
    """How alike two captions read (0..1): the better of word-sequence and word-set overlap."""
    wa, wb = normalise(a), normalise(b)
    if not wa and not wb:
        return 1.0
    if not wa or not wb:
        return 0.0
    seq = difflib.SequenceMatcher(None, wa, wb).ratio()
    sa, sb = set(wa), set(wb)
    return max(seq, len(sa & sb) / len(sa | sb))


def label_table(overrides: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """The default synonym table with the config's lists put in (a listed label replaces its default)."""
    table = dict(DEFAULT_LABELS)
    table.update({label: tuple(words) for label, words in overrides.items()})
    return table


def labels_of(text: str, table: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """Labels whose words appear in `text`, unless negated just before ("no people", "without a car")."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    found = []
    for label, synonyms in table.items():
        if any(_mentioned(words, syn.lower().split()) for syn in synonyms):
            found.append(label)
    return tuple(found)


def _mentioned(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    for i in range(len(words) - n + 1):
        if all(_same_word(words[i + k], phrase[k]) for k in range(n)):
            window = words[max(0, i - 3):i]
            if not _NEGATIONS.intersection(window):
                return True
    return False


def _same_word(word: str, base: str) -> bool:
    """`box` matches box, boxes; `car` matches cars, car's."""
    return word in (base, base + "s", base + "es", base + "'s")


@dataclass(frozen=True)
class Rule:
    """A named event raised when a caption matches (labels and/or a regular expression)."""

    name: str
    cameras: tuple[str, ...] = ()  # empty: every camera
    labels: tuple[str, ...] = ()  # any of these
    pattern: re.Pattern[str] | None = None
    triggers: tuple[TriggerKind, ...] = ()  # empty: every kind

    def matches(self, camera: str, trigger: TriggerKind, text: str, labels: Sequence[str]) -> bool:
        if self.cameras and camera not in self.cameras:
            return False
        if self.triggers and trigger not in self.triggers:
            return False
        if self.labels and not set(self.labels) & set(labels):
            return False
        return not (self.pattern is not None and not self.pattern.search(text))


def matching_rules(rules: Sequence[Rule], camera: str, trigger: TriggerKind, text: str,
                   labels: Sequence[str]) -> list[str]:
    return [r.name for r in rules if r.matches(camera, trigger, text, labels)]
