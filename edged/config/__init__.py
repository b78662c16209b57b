"""Typed configuration: `load_config(path)` returns a frozen `Config` or raises `ConfigError`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

from edged.config.loader import Builder, ConfigError, Located, Problem, compose, merge, resolve_path
from edged.config.schema import (
    CameraConfig,
    CaptionerConfig,
    CaptionsConfig,
    Config,
    KeywordConfig,
    MicrophoneConfig,
    MotionConfig,
    MqttConfig,
    WakewordConfig,
    microphone_kind,
    source_kind,
)
from edged.config.secrets import SecretError, SecretRef

__all__ = [
    "CameraConfig",
    "CaptionerConfig",
    "CaptionsConfig",
    "Config",
    "ConfigError",
    "KeywordConfig",
    "MicrophoneConfig",
    "MotionConfig",
    "MqttConfig",
    "Problem",
    "SecretError",
    "SecretRef",
    "WakewordConfig",
    "load_config",
    "parse_config",
    "source_kind",
]


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file; raises `ConfigError` naming every problem and its line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(name, 0, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, 0, "", f"cannot read: {exc}")]) from None
    return parse_config(text, name, Path(path).resolve().parent)


def parse_config(text: str, name: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate YAML text as a config (see `load_config`); relative paths are taken from `base_dir`."""
    root = compose(text, name)
    if not isinstance(root.value, dict):
        raise ConfigError([Problem(name, root.line, "", "the config must be a mapping of sections")])
    builder = Builder(base_dir)
    sections = dict(root.value)
    defaults = sections.pop("defaults", None)
    if defaults is not None:
        _check_defaults(builder, defaults)
        cameras = sections.get("cameras")
        if cameras is not None and isinstance(cameras.value, dict):
            merged = {cam: merge(defaults, node) for cam, node in cameras.value.items()}
            sections["cameras"] = Located(merged, cameras.file, cameras.line)
    config = builder.build(Config, Located(sections, root.file, root.line), "", source=name)
    if builder.problems:
        raise ConfigError(_unique(builder.problems))
    config = _link_microphones(config, base_dir)
    final = Builder()
    for key, message in config._validate():
        final.fail(root.value.get(key.split(".")[0], root), key, message)
    if final.problems:
        raise ConfigError(final.problems)
    return config


def _check_defaults(builder: Builder, defaults: Located) -> None:
    """Validate `defaults:` once as a camera (with a placeholder url), reporting under `defaults.`."""
    if not isinstance(defaults.value, dict):
        builder.fail(defaults, "defaults", "must be a mapping of camera settings")
        return
    if "url" in defaults.value:
        builder.fail(defaults.value["url"], "defaults.url", "each camera needs its own url")
    probe = merge(Located({"url": Located("placeholder.mp4", defaults.file, defaults.line)},
                          defaults.file, defaults.line), defaults)
    builder.build(CameraConfig, probe, "defaults", id="defaults")


def _link_microphones(config: Config, base_dir: Path | None) -> Config:
    """Give each camera's nested microphone its id (`<camera>_mic`) and camera; resolve relative media paths."""
    cameras = {}
    for cam_id, cam in config.cameras.items():
        mic = cam.microphone
        if mic is not None:
            mic = _resolve_mic(dataclasses.replace(mic, id=mic.id or f"{cam_id}_mic", camera=cam_id), base_dir)
        url = str(resolve_path(cam.url, base_dir)) if source_kind(cam.url) == "file" else cam.url
        cameras[cam_id] = dataclasses.replace(cam, url=url, microphone=mic)
    mics = {mic_id: _resolve_mic(mic, base_dir) for mic_id, mic in config.microphones.items()}
    return dataclasses.replace(config, cameras=MappingProxyType(cameras), microphones=MappingProxyType(mics))


def _resolve_mic(mic: MicrophoneConfig, base_dir: Path | None) -> MicrophoneConfig:
    kind = microphone_kind(mic.device)
    if kind == "fifo":
        return dataclasses.replace(mic, device="fifo:" + str(resolve_path(mic.device[5:], base_dir)))
    if kind in ("wav", "media"):
        return dataclasses.replace(mic, device=str(resolve_path(mic.device, base_dir)))
    return mic


def _unique(problems: list[Problem]) -> list[Problem]:
    """Problems in file order, each once (a bad default is reported under `defaults.` only)."""
    seen: set[tuple[str, int, str]] = set()
    out = []
    for p in problems:
        sig = (p.file, p.line, p.message)
        if sig not in seen:
            seen.add(sig)
            out.append(p)
    return sorted(out, key=lambda p: (p.file, p.line))
