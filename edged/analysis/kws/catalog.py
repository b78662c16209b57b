"""Which keyword names which model files, for each backend.

A keyword is a built-in name (`okay_nabu`), a name found in `models_dir`, or a path to a model
file. `resolve()` turns it into a `ModelSpec` (files plus the model's own defaults) or raises an
error that names the file at fault or lists the keywords there are. Only file names and small JSON
files are read here; models are loaded by the backends.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.analysis.kws.errors import ModelError, UnknownKeywordError
from edged.config.keywords import (
    BACKEND_NAMES,
    BUILTIN_KEYWORDS,
    MICRO,
    OPEN,
    canonical,
    looks_like_path,
)

# openWakeWord's models carry no config; these are its own (and wyoming-openwakeword's) defaults.
OPEN_DEFAULT_CUTOFF = 0.5
OPEN_DEFAULT_WINDOW = 1
OPEN_FEATURE_MODELS = ("melspectrogram", "embedding_model")
OPEN_PACKAGE_HINT = "pip install 'edged[openwakeword]' (the pyopen-wakeword package ships the models)"

@dataclass(frozen=True)
class ModelSpec:
    """A keyword's model files and the model's own defaults."""

    keyword: str  # the name events carry (event_type)
    backend: str
    model: Path  # .tflite (or .onnx for openWakeWord)
    wake_word: str  # the spoken phrase, for humans
    cutoff: float
    window: int  # scores averaged before the cutoff applies
    languages: tuple[str, ...] = ()


def phrase(keyword: str) -> str:
    """`hey_jarvis` -> `Hey Jarvis`."""
    return " ".join(w.capitalize() for w in keyword.split("_"))


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def available(backend: str, models_dir: Path | None = None) -> list[str]:
    """Every keyword name `backend` can load (built-in ones present on this machine, plus models_dir's)."""
    names = set(_builtin_files(backend))
    if models_dir is not None and models_dir.is_dir():
        suffixes = (".json",) if backend == MICRO else (".tflite", ".onnx")
        for path in models_dir.iterdir():
            if path.suffix in suffixes and path.stem not in OPEN_FEATURE_MODELS:
                names.add(canonical(path.stem))
    return sorted(names)


def resolve(backend: str, name: str, models_dir: Path | None = None) -> ModelSpec:
    """The model behind keyword `name` for `backend`."""
    if backend not in BACKEND_NAMES:
        raise UnknownKeywordError(f"unknown keyword backend {backend!r} "
                                  f"(backends: {', '.join(BACKEND_NAMES)})")
    if looks_like_path(name):
        return _from_path(backend, Path(name).expanduser())
    key = canonical(name)
    if models_dir is not None:
        for suffix in ((".json",) if backend == MICRO else (".tflite", ".onnx")):
            for stem in {name, key}:
                candidate = models_dir / f"{stem}{suffix}"
                if candidate.is_file():
                    return _from_path(backend, candidate)
    builtin = _builtin_files(backend)
    if key in builtin:
        return _from_path(backend, builtin[key], keyword=key)
    names = available(backend, models_dir)
    hint = ""
    if backend == OPEN and not builtin:
        hint = f"; openWakeWord's models are not installed: {OPEN_PACKAGE_HINT}"
    where = f" (searched {models_dir} and the built-in models)" if models_dir else ""
    raise UnknownKeywordError(f"unknown keyword {name!r} for backend {backend}{where}; "
                              f"available: {', '.join(names) or 'none'}{hint}")


def open_feature_models(models_dir: Path | None = None) -> tuple[Path, Path]:
    """openWakeWord's shared melspectrogram and embedding models (models_dir's first, else the package's)."""
    found: list[Path] = []
    for stem in OPEN_FEATURE_MODELS:
        path = _first_file(models_dir, stem) or _first_file(_open_package_models(), stem)
        if path is None:
            raise ModelError(f"openWakeWord feature model {stem}.tflite not found: {OPEN_PACKAGE_HINT}, "
                             f"or put {stem}.tflite (or .onnx) in models_dir")
        found.append(path)
    return found[0], found[1]


def _first_file(folder: Path | None, stem: str) -> Path | None:
    if folder is None:
        return None
    for suffix in (".tflite", ".onnx"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _open_package_models() -> Path | None:
    for package in ("pyopen_wakeword", "wyoming_openwakeword"):
        folder = package_dir(package)
        if folder is not None and (folder / "models").is_dir():
            return folder / "models"
    return None


def _builtin_files(backend: str) -> dict[str, Path]:
    """Built-in keyword -> its model file (.json for microWakeWord, .tflite for openWakeWord)."""
    out: dict[str, Path] = {}
    if backend == MICRO:
        folder = package_dir("pymicro_wakeword")
        for name in BUILTIN_KEYWORDS[MICRO]:
            if folder is not None and (folder / "models" / f"{name}.json").is_file():
                out[name] = folder / "models" / f"{name}.json"
        return out
    models = _open_package_models()
    if models is None:
        return out
    for path in sorted(models.glob("*.tflite")):
        key = canonical(path.stem)
        if key in BUILTIN_KEYWORDS[OPEN] and key not in out:
            out[key] = path
    return out


def _from_path(backend: str, path: Path, keyword: str | None = None) -> ModelSpec:
    if backend == MICRO:
        if path.suffix == ".tflite":
            path = path.with_suffix(".json")
            if not path.is_file():
                raise ModelError(f"{path}: a microWakeWord model needs its .json next to the .tflite")
        return _micro_spec(path, keyword)
    if path.suffix == ".json":
        raise ModelError(f"{path}: openWakeWord models are .tflite or .onnx files (the .json is optional "
                         "and sits next to the model)")
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    meta = _read_json(path.with_suffix(".json")) if path.with_suffix(".json").is_file() else {}
    key = keyword or canonical(str(meta.get("keyword", path.stem)))
    try:
        cutoff = float(meta.get("probability_cutoff", OPEN_DEFAULT_CUTOFF))
        window = int(meta.get("sliding_window_size", OPEN_DEFAULT_WINDOW))
    except (TypeError, ValueError):
        raise ModelError(f"{path.with_suffix('.json')}: probability_cutoff and sliding_window_size must be "
                         "numbers") from None
    return ModelSpec(key, OPEN, path, str(meta.get("wake_word", phrase(key))), cutoff, window,
                     tuple(meta.get("trained_languages", ())))


def _micro_spec(path: Path, keyword: str | None) -> ModelSpec:
    config = _read_json(path)
    try:
        micro = config["micro"]
        model = path.parent / str(config["model"])
        cutoff = float(micro["probability_cutoff"])
        window = int(micro["sliding_window_size"])
    except KeyError as exc:
        raise ModelError(f"{path}: not a microWakeWord model config (missing key {exc.args[0]!r})") from None
    except (TypeError, ValueError):
        raise ModelError(f"{path}: micro.probability_cutoff and micro.sliding_window_size must be "
                         "numbers") from None
    if config.get("type", "micro") != "micro":
        raise ModelError(f"{path}: model type {config.get('type')!r} is not a microWakeWord ('micro') model")
    if not model.is_file():
        raise ModelError(f"{model}: model file not found (named by {path})")
    key = keyword or canonical(path.stem)
    return ModelSpec(key, MICRO, model, str(config.get("wake_word", phrase(key))), cutoff, window,
                     tuple(config.get("trained_languages", ())))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: model config not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read model config ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: model config is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: model config must be a JSON object")
    return data
