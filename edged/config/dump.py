"""The effective config as plain data, with every secret field redacted (for the `config` command)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REDACTED = "<redacted>"


def to_plain(value: Any) -> Any:
    """Dataclass tree -> JSON-ready data; fields marked `secret` show only whether they are set."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            out[f.name] = (REDACTED if item is not None else None) if f.metadata.get("secret") else to_plain(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
