"""Structured captions: a title, a summary and a threat level 0-2 (the fields of Frigate's review summaries)
asked of the model and read back from whatever it wrote.

The prompt asks for three labelled lines rather than JSON: a 2B model keeps a `Label: value` shape far more
often than it closes every quote and brace, and a line format degrades gracefully (a missing line costs
that field only). The parser still takes JSON (fenced or bare, with Frigate's key names too), markdown
decorations and different label spellings. When nothing it recognises is there, the whole text is the
summary and the threat level is absent: a caption is never lost to a format the model did not follow.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from edged.events import TITLE_LIMIT
from edged.scheduling.captions import title_of

STRUCTURED_PROMPT = (
    "Describe this camera image in exactly three lines:\n"
    "Title: a few words naming what happens\n"
    "Summary: one or two sentences describing the people, vehicles, animals and what they do\n"
    "Threat: 0 if normal activity, 1 if suspicious, 2 if a threat such as a weapon, a break-in or violence"
)

_LABELS = {"title": "title", "headline": "title",
           "summary": "summary", "shortsummary": "summary", "short summary": "summary", "scene": "summary",
           "description": "summary", "caption": "summary",
           "threat": "threat", "threat level": "threat", "threat_level": "threat",
           "potential threat level": "threat", "potential_threat_level": "threat"}
# `Title: ...` with markdown around the label (`**Title:**`, `- Title -`, `1. Title:`) and any case.
_LINE = re.compile(r"^[\s>*#\-\d.)]*\**\s*(?P<label>[A-Za-z_ ]{4,24}?)\s*\**\s*[:=\-]\s*\**\s*(?P<value>.*)$")
_WORD_LEVELS = {"none": 0, "no": 0, "normal": 0, "low": 0, "safe": 0, "zero": 0,
                "suspicious": 1, "unusual": 1, "medium": 1, "moderate": 1, "one": 1,
                "high": 2, "critical": 2, "severe": 2, "threat": 2, "dangerous": 2, "danger": 2, "two": 2}


@dataclass(frozen=True)
class Summary:
    """What a structured caption says; `followed` is False when the model ignored the format."""

    title: str
    summary: str
    threat_level: int | None
    followed: bool


def parse_summary(text: str) -> Summary:
    """The title, summary and threat level in `text` (JSON or `Label: value` lines); see the module doc."""
    body = _unfence(text.strip())
    fields = _from_json(body)
    if fields is None:
        fields = _from_lines(body)
    title = _clean(fields.get("title", ""))
    summary = _clean(fields.get("summary", ""))
    level = threat_level_of(fields.get("threat"))
    if not title and not summary:
        plain = " ".join(body.split())
        return Summary(title_of(plain), plain, None, followed=False)
    return Summary(_fit_title(title) if title else title_of(summary), summary or title, level, followed=True)


def threat_level_of(value: Any) -> int | None:
    """0, 1 or 2 from a number or a word ("2", "Level 1", "none", "suspicious"); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value) if value in (0, 1, 2) else None
    words = re.findall(r"[a-z]+|\d+", str(value).lower())
    for word in words:
        if word.isdigit():
            return int(word) if word in ("0", "1", "2") else None
        if word in _WORD_LEVELS:
            return _WORD_LEVELS[word]
    return None


def _unfence(text: str) -> str:
    """The inside of a ```json ... ``` block, if the text is one."""
    match = re.search(r"```[a-zA-Z]*\s*(.*?)(?:```|$)", text, re.DOTALL)
    return match.group(1).strip() if match else text


def _from_json(text: str) -> dict[str, Any] | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start:end + 1])
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = _LABELS.get(str(key).strip().lower())
        if field is not None and field not in out and value is not None:
            out[field] = value if field == "threat" else str(value)
    return out or None


def _from_lines(text: str) -> dict[str, Any]:
    """`Label: value` lines; an unlabelled line continues the field before it."""
    out: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        match = _LINE.match(line)
        field = _LABELS.get(match.group("label").strip().lower()) if match else None
        if match and field is not None:
            current = field
            out.setdefault(field, "")
            out[field] = f"{out[field]} {match.group('value')}".strip()
        elif current in ("title", "summary") and line.strip():
            out[current] = f"{out[current]} {line.strip()}"
    return dict(out)


def _clean(value: Any) -> str:
    """One line of text without markdown emphasis or wrapping quotes."""
    text = " ".join(str(value).replace("**", "").split())
    return text.strip().strip('"').strip()


def _fit_title(title: str) -> str:
    """At most Home Assistant's state length, cut at a word."""
    if len(title) <= TITLE_LIMIT:
        return title
    return title[: TITLE_LIMIT - 1].rsplit(" ", 1)[0] + "…"
