"""Typed YAML loading: a YAML document becomes a frozen dataclass tree, or a list of precise errors.

The loader keeps PyYAML's node tree, so every value remembers the file and line it came from. Errors
read `config.yaml:23 cameras.porch.analysis_fps: must be > 0 (got -5)`. Constraints live in each
field's metadata (see `spec`), cross-field rules in a section's `_validate()` method, so the schema
states every default and rule exactly once.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    line: int  # 1-based; 0 when unknown
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(ValueError):
    """A config file broke one or more rules; `problems` says which, where."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class Located:
    """A YAML value with the place it was written."""

    value: Any  # dict[str, Located] | list[Located] | scalar
    file: str
    line: int


def spec(
    doc: str,
    *,
    unit: str = "",
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    duration: bool = False,
    pattern: str | None = None,
    secret: bool = False,
) -> dict[str, Any]:
    """Field metadata: documentation and the rules a value must obey."""
    return {"doc": doc, "unit": unit, "gt": gt, "ge": ge, "le": le, "lt": lt,
            "duration": duration, "pattern": pattern, "secret": secret}


def parse_duration(value: Any) -> float:
    """`90`, `"90s"`, `"1.5m"`, `"100ms"`, `"7d"` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 5m or 7d")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError("must be a duration such as 30s, 5m or 7d")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps: `name: 2024-01-01` is text, never a datetime."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def compose(text: str, file: str) -> Located:
    """Parse YAML text into a `Located` tree (anchors and aliases resolved)."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return Located({}, file, 1)
            return _locate(node, loader, file)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError([Problem(file, line, "", f"invalid YAML: {exc.problem}")]) from None
    except yaml.YAMLError as exc:  # e.g. a character YAML does not allow
        line = text.count("\n", 0, getattr(exc, "position", 0)) + 1
        raise ConfigError([Problem(file, line, "", f"invalid YAML: {exc}")]) from None


def _locate(node: yaml.Node, loader: _Loader, file: str) -> Located:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # YAML merge keys (<<: *defaults)
        out: dict[str, Located] = {}
        for key_node, value_node in node.value:
            # Keys are taken as written: YAML 1.1 would turn `on:` into True.
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError([Problem(file, key_node.start_mark.line + 1, "", "mapping keys must be text")])
            skey = str(key_node.value)
            if skey in out:
                raise ConfigError([Problem(file, key_node.start_mark.line + 1, skey, "key appears twice")])
            out[skey] = _locate(value_node, loader, file)
        return Located(out, file, line)
    if isinstance(node, yaml.SequenceNode):
        return Located([_locate(n, loader, file) for n in node.value], file, line)
    return Located(loader.construct_object(node), file, line)


def plain(node: Located) -> Any:
    """The `Located` tree as plain Python data."""
    if isinstance(node.value, dict):
        return {k: plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [plain(v) for v in node.value]
    return node.value


def merge(base: Located, override: Located) -> Located:
    """Deep-merge two mappings; the override wins and keeps its own line numbers."""
    if not (isinstance(base.value, dict) and isinstance(override.value, dict)):
        return override
    merged = dict(base.value)
    for key, value in override.value.items():
        merged[key] = merge(merged[key], value) if key in merged else value
    return Located(merged, override.file, override.line)


class Builder:
    """Builds dataclasses from `Located` trees, collecting every problem instead of stopping at one."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self.problems: list[Problem] = []
        self.base_dir = base_dir  # relative paths in the file are relative to the file

    def fail(self, node: Located | None, key: str, message: str) -> None:
        file, line = (node.file, node.line) if node is not None else ("", 0)
        self.problems.append(Problem(file, line, key, message))

    def build(self, cls: type[T], node: Located, key: str, **context: Any) -> T:
        """Build dataclass `cls` from a mapping node; `context` fills fields the YAML doesn't hold."""
        if not isinstance(node.value, dict):
            self.fail(node, key, f"must be a mapping (got {_show(node.value)})")
            node = Located({}, node.file, node.line)
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        yaml_names = {f.name: _yaml_name(f) for f in fields.values()}
        known = {yaml_names[n]: n for n in fields if n not in context}
        values: dict[str, Any] = dict(context)
        problems_before = len(self.problems)
        forbidden: Mapping[str, str] = getattr(cls, "_forbidden", {})
        for yname, child in node.value.items():
            if yname in forbidden:
                self.fail(child, _join(key, yname), forbidden[yname])
                continue
            if yname not in known:
                self._unknown_key(child, _join(key, yname), yname, list(known))
                continue
            field = fields[known[yname]]
            values[field.name] = self.value(hints[field.name], child, _join(key, yname), field.metadata)
        for name, field in fields.items():
            if name not in values and _required(field):
                self.fail(node, _join(key, yaml_names[name]), "is required")
        try:
            obj = cls(**{k: v for k, v in values.items() if v is not _INVALID})
        except TypeError:  # a required field was invalid or missing: already reported
            invalid: T = _INVALID
            return invalid
        validate = getattr(obj, "_validate", None)
        if validate is not None and len(self.problems) == problems_before:  # cross-field rules need valid fields
            for sub, message in validate():
                self.fail(_child(node, sub), _join(key, sub), message)
        return obj

    def value(self, tp: Any, node: Located, key: str, meta: Mapping[str, Any]) -> Any:
        """Convert one node to type `tp`, checking the field's rules."""
        origin = get_origin(tp)
        args = get_args(tp)
        if origin in (Union, types.UnionType):
            return self._union(args, node, key, meta)
        if origin is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
            return self._choice(tp, args, node, key)
        if origin in (tuple, list):
            return self._sequence(args[0], node, key, meta)
        if origin in (dict, Mapping) or origin is typing.Mapping:
            return self._mapping(args[1], node, key, meta)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, node, key)  # type: ignore[arg-type]
        return self._scalar(tp, node, key, meta)

    def _choice(self, tp: Any, args: tuple[Any, ...], node: Located, key: str) -> Any:
        """One of a Literal's values, or an Enum member by its value."""
        choices = [m.value for m in typing.cast("type[enum.Enum]", tp)] if isinstance(tp, type) else list(args)
        if node.value not in choices:
            self.fail(node, key, f"must be one of {', '.join(str(c) for c in choices)} (got {_show(node.value)})")
            return _INVALID
        return tp(node.value) if isinstance(tp, type) else node.value

    def _union(self, args: tuple[Any, ...], node: Located, key: str, meta: Mapping[str, Any]) -> Any:
        non_none = [a for a in args if a is not type(None)]
        if node.value is None and len(non_none) < len(args):
            return None
        shaped = [a for a in non_none if _shape(a) == _shape_of(node.value)]
        if len(shaped) == 1:  # only one branch fits the node's shape: its own errors are the useful ones
            return self.value(shaped[0], node, key, meta)
        if len(non_none) == 1:
            return self.value(non_none[0], node, key, meta)
        for candidate in non_none:  # first matching branch wins (e.g. float | str)
            trial = Builder(self.base_dir)
            result = trial.value(candidate, node, key, meta)
            if not trial.problems:
                return result
        names = " or ".join(_type_name(a) for a in non_none)
        self.fail(node, key, f"must be {names} (got {_show(node.value)})")
        return _INVALID

    def _sequence(self, item_tp: Any, node: Located, key: str, meta: Mapping[str, Any]) -> Any:
        if not isinstance(node.value, list):
            self.fail(node, key, f"must be a list (got {_show(node.value)})")
            return _INVALID
        items = [self.value(item_tp, child, f"{key}[{i}]", meta) for i, child in enumerate(node.value)]
        return _INVALID if any(item is _INVALID for item in items) else tuple(items)

    def _mapping(self, item_tp: Any, node: Located, key: str, meta: Mapping[str, Any]) -> Any:
        if not isinstance(node.value, dict):
            self.fail(node, key, f"must be a mapping (got {_show(node.value)})")
            return _INVALID
        out = {}
        for name, child in node.value.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                self.fail(child, _join(key, name), "names may use only letters, digits, '_' and '-'")
                continue
            if isinstance(item_tp, type) and dataclasses.is_dataclass(item_tp):
                out[name] = self.build(item_tp, child, _join(key, name), id=name)
            else:
                out[name] = self.value(item_tp, child, _join(key, name), meta)
        if any(v is _INVALID for v in out.values()):
            return _INVALID
        return types.MappingProxyType(out)

    def _scalar(self, tp: Any, node: Located, key: str, meta: Mapping[str, Any]) -> Any:
        raw = node.value
        if isinstance(raw, dict | list):
            self.fail(node, key, f"must be {_type_name(tp)} (got a {'mapping' if isinstance(raw, dict) else 'list'})")
            return _INVALID
        try:
            value = self._convert(tp, raw, meta)
        except ValueError as exc:
            self.fail(node, key, f"{exc} (got {_show(raw)})")
            return _INVALID
        message = _check_range(value, meta)
        if message:
            self.fail(node, key, f"{message} (got {_show(raw)})")
            return _INVALID
        return value

    def _convert(self, tp: Any, raw: Any, meta: Mapping[str, Any]) -> Any:
        if meta.get("duration") and tp is float:
            return parse_duration(raw)
        if tp is bool:
            if not isinstance(raw, bool):
                raise ValueError("must be true or false")
            return raw
        if tp is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise ValueError("must be a whole number")
            return raw
        if tp is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError("must be a number")
            return float(raw)
        if tp is str:
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                raise ValueError("must be text")
            text = str(raw)
            pattern = meta.get("pattern")
            if pattern and not re.fullmatch(pattern, text):
                raise ValueError(f"must match {pattern}")
            return text
        if tp is Path:
            if not isinstance(raw, str):
                raise ValueError("must be a file path")
            return resolve_path(raw, self.base_dir)
        raise TypeError(f"unsupported config type {tp!r}")

    def _unknown_key(self, node: Located, key: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(known))}"
        self.fail(node, key, f"unknown key{hint}")


def resolve_path(raw: str, base_dir: Path | None) -> Path:
    """`~` expanded; a relative path taken relative to the config file's directory."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _yaml_name(field: dataclasses.Field[Any]) -> str:
    return str(field.metadata.get("yaml", field.name))


def _child(node: Located, sub: str) -> Located:
    """The node at dotted path `sub` below `node`, or `node` when it isn't written there."""
    current = node
    for part in sub.split(".") if sub else []:
        if isinstance(current.value, dict) and part in current.value:
            current = current.value[part]
        else:
            break
    return current


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _check_range(value: Any, meta: Mapping[str, Any]) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    unit = meta.get("unit") or ""
    suffix = f" {unit}" if unit and unit != "s" else ("s" if unit == "s" else "")
    rules: Iterator[tuple[str, Callable[[float, float], bool], str]] = iter([
        ("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
        ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<="),
    ])
    for name, ok, sign in rules:
        bound = meta.get(name)
        if bound is not None and not ok(value, bound):
            return f"must be {sign} {bound:g}{suffix}"
    return ""


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _shape(tp: Any) -> str:
    if dataclasses.is_dataclass(tp) or get_origin(tp) in (dict, Mapping):
        return "mapping"
    return "list" if get_origin(tp) in (list, tuple) else "scalar"


def _shape_of(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", Path: "a file path"}
    if tp in names:
        return names[tp]
    if get_origin(tp) in (list, tuple):
        return "a list"
    if dataclasses.is_dataclass(tp) or get_origin(tp) in (dict, Mapping):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))
