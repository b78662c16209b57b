"""What a search asks for, checked and turned into SQLite FTS5 syntax: pure functions, no database.

A user's words are never handed to FTS5 as they are: its query language has columns (`title:`), `NEAR()`,
`^`, `+` and brackets, and a stray quote is a syntax error. The words are read here, with a small grammar
of their own, and every term goes to FTS5 as a quoted string. So nothing a user types can be FTS5
syntax: punctuation separates words, and the only operators are these:

- `red car`: moments with both words (any word form: `cars`, `parked` match `car`, `park`);
- `"red car"`: the phrase;
- `deliv*`: a word starting so;
- `cat OR dog`: either side (each side may have several words);
- `-night` or `NOT night`: without that word (a query needs at least one word it looks for).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from edged.config.loader import parse_duration

MAX_QUERY = 500  # characters
MAX_TERMS = 16
MAX_LIMIT = 200
DEFAULT_LIMIT = 20
KINDS = ("caption", "answer", "watch")
# A quoted phrase (maybe unterminated, which is an error), or a run of word characters with an optional
# `-` before and `*` after. Everything else (punctuation, FTS5's operators) separates words.
_TOKEN = re.compile(r'(?P<neg>-?)"(?P<phrase>[^"]*)(?P<end>"?)|(?P<wneg>-?)(?P<word>\w+)(?P<star>\*?)')


class QueryError(ValueError):
    """A search that cannot be run; the text says what is wrong (shown to the user)."""


@dataclass(frozen=True)
class SearchQuery:
    """A checked search: the FTS5 expression of the words, and the filters."""

    text: str  # as the user wrote it
    match: str  # FTS5 expression built from it
    since: float | None = None  # wall-clock seconds
    until: float | None = None
    camera: str | None = None
    kind: str | None = None
    limit: int = DEFAULT_LIMIT


def build_query(text: object, *, since: object = None, until: object = None, camera: object = None,
                kind: object = None, limit: object = None, now: float) -> SearchQuery:
    """A `SearchQuery` from raw values (the CLI's or a request's); raises `QueryError` naming the problem."""
    if not isinstance(text, str):
        raise QueryError("the query must be text")
    start = parse_time(since, now, "since")
    end = parse_time(until, now, "until")
    if start is not None and end is not None and end <= start:
        raise QueryError("until must be later than since")
    if camera is not None and (not isinstance(camera, str) or not camera):
        raise QueryError("camera must be a camera id")
    if kind is not None and kind not in KINDS:
        raise QueryError(f"kind must be one of {', '.join(KINDS)} (got {str(kind)[:40]!r})")
    return SearchQuery(text, fts_expression(text), start, end, camera, kind,
                       parse_limit(limit))


def fts_expression(text: str) -> str:
    """The FTS5 MATCH expression of a user's search words (see the module doc); raises `QueryError`."""
    if len(text) > MAX_QUERY:
        raise QueryError(f"the query is {len(text)} characters; the limit is {MAX_QUERY}")
    alternatives: list[list[str]] = [[]]
    excluded: list[str] = []
    negate_next = False
    terms = 0
    for token in _TOKEN.finditer(text):
        if token.group("word") in ("OR", "NOT") and not token.group("wneg") and not token.group("star"):
            if token.group("word") == "OR" and alternatives[-1]:
                alternatives.append([])
            negate_next = token.group("word") == "NOT"
            continue
        term, negative = _term(token)
        if term is None:
            continue
        terms += 1
        if terms > MAX_TERMS:
            raise QueryError(f"the query has more than {MAX_TERMS} words")
        if negative or negate_next:
            excluded.append(term)
        else:
            alternatives[-1].append(term)
        negate_next = False
    groups = [" AND ".join(a) for a in alternatives if a]
    if not groups:
        raise QueryError("the query has no words to look for" if not excluded else
                         "the query only excludes words; add one to look for")
    expression = " OR ".join(f"({g})" for g in groups)
    return " NOT ".join([f"({expression})", *excluded]) if excluded else expression


def _term(token: re.Match[str]) -> tuple[str | None, bool]:
    """One token as a quoted FTS5 string (or prefix), and whether it is excluded."""
    if token.group("word") is not None:
        return f'"{token.group("word")}"' + ("*" if token.group("star") else ""), bool(token.group("wneg"))
    if not token.group("end"):
        raise QueryError("a double quote is not closed")
    words = re.findall(r"\w+", token.group("phrase"))
    if not words:
        return None, False
    return '"' + " ".join(words) + '"', bool(token.group("neg"))


def parse_time(value: object, now: float, name: str) -> float | None:
    """`since` / `until`: a duration back from now ("90m", "1d"), an ISO date or date-time (local time
    without a zone), or a number of seconds since the epoch."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise QueryError(f"{name} must be a duration such as 1d or a date such as 2026-05-01")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise QueryError(f"{name} must be a duration such as 1d or a date such as 2026-05-01")
    try:
        return now - parse_duration(value.strip())
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise QueryError(f"{name} must be a duration such as 30m, 1d or a date such as 2026-05-01 "
                         f"(got {value[:40]!r})") from None
    return when.timestamp()  # a naive time is local time


def parse_limit(value: object) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_LIMIT} (got {str(value)[:20]})")
    return value
