"""The config schema: one frozen dataclass per YAML section, each default and rule stated once here.

Field metadata (`spec`) carries the documentation, the unit and the range rules the loader checks;
`_validate()` on a section holds its cross-field rules and returns `(key, message)` pairs.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from edged.config.keywords import (
    BUILTIN_KEYWORDS,
    FAMILY_DEFAULTS,
    KEYWORD_DEFAULTS,
    MICRO,
    VERIFIED_KEYWORDS,
    KeywordDefaults,
    canonical,
    looks_like_path,
    other_family,
)
from edged.config.loader import spec
from edged.config.secrets import SecretRef, secret_ref
from edged.config.urls import has_inline_password
from edged.events import TriggerKind

ID_PATTERN = r"[A-Za-z0-9_-]+"
Problems = Iterator[tuple[str, str]]


def _default_device_id() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()).strip("-").lower() or "edged"


def _empty() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True)
class DeviceConfig:
    """The board itself: the Home Assistant host device."""

    id: str = field(default_factory=_default_device_id,
                    metadata=spec("Stable id of this board (topics, unique ids)", pattern=ID_PATTERN))
    name: str = field(default="", metadata=spec("Display name (defaults to the id)"))

    @property
    def display_name(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class BackoffConfig:
    """Capped exponential back-off with jitter between reconnect attempts."""

    initial: float = field(default=1.0, metadata=spec("First retry delay", unit="s", duration=True, gt=0))
    max: float = field(default=30.0, metadata=spec("Longest retry delay", unit="s", duration=True, gt=0))
    jitter: float = field(default=0.2, metadata=spec("Random spread, as a fraction of the delay", ge=0, le=1))

    def _validate(self) -> Problems:
        if self.max < self.initial:
            yield "max", f"must be >= initial ({self.initial:g}s)"


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the broker; the server's certificate is always verified unless `insecure`."""

    ca: Path | None = field(default=None, metadata=spec("CA bundle (default: the system store)"))
    cert: Path | None = field(default=None, metadata=spec("Client certificate (PEM)"))
    key: Path | None = field(default=None, metadata=spec("Client private key (PEM file; never inline)"))
    insecure: bool = field(default=False, metadata=spec("Skip hostname verification (testing only)"))

    def _validate(self) -> Problems:
        if (self.cert is None) != (self.key is None):
            yield ("cert" if self.cert is None else "key"), "cert and key must be given together"


@dataclass(frozen=True)
class DiscoveryConfig:
    """Home Assistant MQTT discovery."""

    enabled: bool = field(default=True, metadata=spec("Publish discovery configs"))
    prefix: str = field(default="homeassistant", metadata=spec("Discovery prefix", pattern=ID_PATTERN))
    mode: Literal["device", "component"] = field(
        default="device", metadata=spec("device: one config per device (HA >= 2024.12); component: one per entity"))


@dataclass(frozen=True)
class OutboxConfig:
    """Persistent store-and-forward queue of events during broker outages."""

    path: Path | None = field(default=None, metadata=spec("SQLite file (default: <state_dir>/outbox.db)"))
    max_events: int = field(default=100_000, metadata=spec("Most events kept; oldest evicted first", ge=1))
    ttl: float = field(default=7 * 86400.0, metadata=spec("Events older than this are evicted", unit="s",
                                                          duration=True, gt=0))


@dataclass(frozen=True)
class MqttConfig:
    """The broker connection. Passwords come from files or systemd credentials, never inline."""

    host: str = field(default="127.0.0.1", metadata=spec("Broker host name or address"))
    port: int = field(default=1883, metadata=spec("Broker port", ge=1, le=65535))
    username: str | None = field(default=None, metadata=spec("User name"))
    password_file: Path | None = field(default=None, metadata=spec("File holding the password", secret=True))
    password_credential: str | None = field(
        default=None, metadata=spec("systemd credential holding the password", secret=True))
    tls: TlsConfig | None = field(default=None, metadata=spec("TLS settings; absent: plain TCP"))
    allow_insecure: bool = field(
        default=False, metadata=spec("Allow a password over plain TCP to a non-loopback broker"))
    base_topic: str = field(default="edged", metadata=spec("Topic root; the device id is appended",
                                                           pattern=r"[A-Za-z0-9_/-]+"))
    client_id: str | None = field(default=None, metadata=spec("MQTT client id (default edged-<device id>)"))
    protocol: Literal["3.1.1", "5"] = field(default="5", metadata=spec("MQTT protocol version"))
    keepalive: float = field(default=30.0, metadata=spec("Keep-alive interval", unit="s", duration=True, ge=5))
    stats_interval: float = field(default=60.0, metadata=spec("How often stats are published", unit="s",
                                                              duration=True, ge=1))
    reconnect: BackoffConfig = field(default_factory=lambda: BackoffConfig(initial=1.0, max=30.0))
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)

    _forbidden = MappingProxyType({
        "password": "inline passwords are not allowed: write it to a file and set password_file "
                    "(or password_credential under systemd's LoadCredential=)",
    })

    @property
    def password(self) -> SecretRef | None:
        return secret_ref(self.password_file, self.password_credential)

    def _validate(self) -> Problems:
        if self.password_file is not None and self.password_credential is not None:
            yield "password_credential", "set password_file or password_credential, not both"
        if self.password is not None and self.username is None:
            yield "username", "is required when a password is set"
        loopback = self.host in ("localhost", "::1") or self.host.startswith("127.")
        if self.password is not None and self.tls is None and not loopback and not self.allow_insecure:
            yield "tls", (f"a password to {self.host} over plain TCP would travel in clear text; "
                          "configure tls, or set allow_insecure: true")


@dataclass(frozen=True)
class RemoteConfig:
    """An OpenAI-compatible chat-completions endpoint (llama.cpp server, Ollama, vLLM)."""

    url: str = field(metadata=spec("Base URL, e.g. http://gpu-box:8080/v1"))
    model: str = field(default="", metadata=spec("Model name sent in the request"))
    api_key_file: Path | None = field(default=None, metadata=spec("File holding a bearer token", secret=True))
    api_key_credential: str | None = field(default=None, metadata=spec("systemd credential with the token",
                                                                       secret=True))
    timeout: float = field(default=60.0, metadata=spec("Per-request timeout", unit="s", duration=True, gt=0))
    retries: int = field(default=2, metadata=spec("Retries after a failed request", ge=0, le=10))
    image_width: int = field(default=672, metadata=spec("Frames are scaled to this width before sending",
                                                        unit="px", ge=64, le=4096))
    blur_faces: bool = field(default=False, metadata=spec(
        "Pixelate every face before a frame leaves the board (needs `edged models pull face-detector`)"))
    face_model: Path | None = field(default=None, metadata=spec(
        "Face detector file (default: <state_dir>/models/face-detector/face_detection_short_range.tflite)"))

    @property
    def api_key(self) -> SecretRef | None:
        return secret_ref(self.api_key_file, self.api_key_credential)

    def _validate(self) -> Problems:
        if not re.match(r"^https?://", self.url):
            yield "url", f"must start with http:// or https:// (got {self.url!r})"


@dataclass(frozen=True)
class CaptionerConfig:
    """The vision-language model that writes captions and answers questions."""

    backend: Literal["onnx", "remote", "none"] = field(default="onnx", metadata=spec("Model backend"))
    family: Literal["glm-edge-v"] = field(default="glm-edge-v", metadata=spec("Model family"))
    path: Path | None = field(default=None, metadata=spec(
        "Model bundle directory (default: <state_dir>/models/glm-edge-v-2b; `edged models pull` fills it)"))
    variant: str = field(default="", metadata=spec("Bundle variant, e.g. int4 (default: the manifest's)"))
    threads: int = field(default=0, metadata=spec("Intra-op threads (0: all cores but one)", ge=0, le=64))
    providers: tuple[str, ...] = field(default=("CPUExecutionProvider",),
                                       metadata=spec("onnxruntime execution providers, in order"))
    max_new_tokens: int = field(default=48, metadata=spec("Longest caption", unit="tokens", ge=1, le=1024))
    repetition_penalty: float = field(default=1.1, metadata=spec("Greedy repetition penalty", ge=1, le=2))
    prompt: str = field(default="Describe what is happening in one sentence.",
                        metadata=spec("Default caption prompt"))
    graph_optimization: Literal["none", "basic", "extended", "all"] = field(
        default="all", metadata=spec("onnxruntime graph optimisation level"))
    optimized_cache: bool = field(default=True, metadata=spec(
        "Keep optimised graphs in <path>/.ort-cache so restarts skip the rewrites"))
    verify_hashes: bool = field(default=True, metadata=spec(
        "Check every bundle file's sha256 at load (off: sizes only, faster start on slow storage)"))
    remote: RemoteConfig | None = field(default=None, metadata=spec("Settings of the remote backend"))

    def _validate(self) -> Problems:
        if self.backend == "remote" and self.remote is None:
            yield "remote", "is required when backend is remote"


KwsBackend = Literal["micro-wakeword", "openwakeword"]


@dataclass(frozen=True)
class ConfirmConfig:
    """A second stage: the keyword fires only when a second model family hears it too."""

    backend: KwsBackend | None = field(default=None, metadata=spec(
        "Family that must agree (default: the other one)"))
    cutoff: float | None = field(default=None, metadata=spec(
        "Its cutoff (default: the tuned one for a built-in keyword, else the model's)", gt=0, lt=1))
    window: int | None = field(default=None, metadata=spec("Its sliding window (default: tuned or the model's)",
                                                           unit="scores", ge=1, le=100))
    within: float = field(default=1.0, metadata=spec("Both families cross their cutoffs at most this far apart",
                                                     unit="s", duration=True, ge=0, le=5))
    enabled: bool = field(default=True, metadata=spec(
        "false: no second stage for this keyword (not even the tuned default one)"))


@dataclass(frozen=True)
class KeywordConfig:
    """One wake word / keyword, with settings that override the tuned defaults and the model's own."""

    name: str = field(metadata=spec(
        "Model name (okay_nabu, hey_jarvis, alexa, hey_mycroft; hey_rhasspy for openwakeword), a name in "
        "models_dir, or a path to the model (microWakeWord: its .json; openWakeWord: .tflite or .onnx)"))
    cutoff: float | None = field(default=None, metadata=spec(
        "Probability cutoff (default: the tuned one for a built-in keyword, else the model's)", gt=0, lt=1))
    window: int | None = field(default=None, metadata=spec(
        "Sliding window (default: the tuned one for a built-in keyword, else the model's)",
        unit="scores", ge=1, le=100))
    enabled: bool = field(default=True, metadata=spec("Spot this keyword (switchable at run time)"))
    backend: KwsBackend | None = field(default=None, metadata=spec(
        "Model family for this keyword (default: models.wakeword.backend)"))
    confirm: ConfirmConfig | None = field(default=None, metadata=spec(
        "Second family that must agree (default: the tuned one of a built-in keyword, if any)"))
    verify: bool | None = field(default=None, metadata=spec(
        "Check each detection with the keyword's shipped verifier, a small model on openWakeWord's speech "
        "embeddings trained against near misses (default: on where the tuned defaults use it; false: off)"))
    verifier: Path | None = field(default=None, metadata=spec(
        "Your own verifier for this keyword, made by `edged enroll` from your recordings: used instead of "
        "the shipped one"))


@dataclass(frozen=True)
class VadConfig:
    """Level gate in front of keyword spotting: no inference while the room is quiet."""

    enabled: bool = field(default=False, metadata=spec("Skip keyword inference during silence"))
    threshold_db: float = field(default=-50.0, metadata=spec(
        "Chunks at or above this RMS level open the gate", unit="dBFS", le=0, ge=-90))
    pre_roll: float = field(default=0.5, metadata=spec("Audio replayed when sound starts", unit="s",
                                                       duration=True, ge=0, le=5))
    hangover: float = field(default=1.0, metadata=spec("Keep spotting this long after the last loud chunk",
                                                       unit="s", duration=True, ge=0, le=10))


@dataclass(frozen=True)
class WakewordConfig:
    """Keyword spotting on every microphone."""

    backend: Literal["auto", "micro-wakeword", "openwakeword"] = field(default="auto", metadata=spec(
        "Model family of keywords without their own: auto = each built-in keyword's tuned family "
        "(micro-wakeword for other keywords)"))
    defaults: Literal["tuned", "model"] = field(default="tuned", metadata=spec(
        "Settings a built-in keyword gets when the config names none: tuned (family, cutoff, window, "
        "second stage; docs/keywords.md) or model (each model's own cutoff and window, no second stage)"))
    keywords: tuple[str | KeywordConfig, ...] = field(default=("okay_nabu",),
                                                      metadata=spec("Keywords to spot"))
    probability_cutoff: float | None = field(default=None, metadata=spec(
        "Cutoff for every keyword without its own (default: the tuned one, else each model's)", gt=0, lt=1))
    refractory: float = field(default=2.0, metadata=spec("Quiet time after a hit, per keyword", unit="s",
                                                         duration=True, ge=0, le=60))
    models_dir: Path | None = field(default=None, metadata=spec("Extra directory of user models"))
    vad: VadConfig = field(default_factory=VadConfig)

    @property
    def keyword_settings(self) -> tuple[KeywordConfig, ...]:
        """Every keyword's effective settings: plain names expanded, the family filled in, the tuned
        defaults of a built-in keyword applied where the config sets nothing (a `cutoff` or `window`
        left None is the model's own, known once the model is resolved)."""
        return tuple(self._effective(KeywordConfig(name=kw) if isinstance(kw, str) else kw)
                     for kw in self.keywords)

    def _tuned(self, name: str) -> KeywordDefaults | None:
        if self.defaults != "tuned" or looks_like_path(name):
            return None
        return KEYWORD_DEFAULTS.get(canonical(name))

    def _effective(self, kw: KeywordConfig) -> KeywordConfig:
        tuned = self._tuned(kw.name)
        backend: KwsBackend = kw.backend or (  # type: ignore[assignment]
            self.backend if self.backend != "auto" else (tuned.backend if tuned else MICRO))
        staged = tuned is not None and tuned.confirm is not None and backend == tuned.backend and (
            kw.confirm is None or (kw.confirm.enabled and kw.confirm.backend in (None, tuned.confirm)))
        cutoff = kw.cutoff if kw.cutoff is not None else self.probability_cutoff
        window = kw.window
        # the tuned cutoff of a verified default was chosen for use with its verifier: without it, the
        # family's best setting on its own
        verified = tuned is not None and tuned.verify and backend == tuned.backend and kw.verify is not False
        if tuned is not None:
            whole = staged or verified
            own = (tuned.cutoff, tuned.window) if whole else _family_defaults(kw.name, backend)
            cutoff = own[0] if cutoff is None else cutoff
            window = own[1] if window is None else window
        confirm = kw.confirm
        if staged and tuned is not None:
            base = confirm or ConfirmConfig(within=tuned.within)
            confirm = dataclasses.replace(
                base, backend=tuned.confirm,  # type: ignore[arg-type]
                cutoff=tuned.confirm_cutoff if base.cutoff is None else base.cutoff,
                window=tuned.confirm_window if base.window is None else base.window)
        elif confirm is not None and confirm.enabled:  # a disabled one stays, so this stays idempotent
            confirm = dataclasses.replace(confirm, backend=confirm.backend or other_family(backend))  # type: ignore[arg-type]
        verify = verified if kw.verify is None else kw.verify
        return dataclasses.replace(kw, backend=backend, cutoff=cutoff, window=window, confirm=confirm,
                                   verify=verify)

    def _validate(self) -> Problems:
        seen: set[tuple[str, str | None]] = set()
        for i, kw in enumerate(self.keyword_settings):
            key = f"keywords[{i}]"
            if (kw.name, kw.backend) in seen:
                yield key, (f"keyword {kw.name!r} is listed twice for {kw.backend} (a name without its own "
                            "backend runs on models.wakeword.backend, or with auto on its tuned family: give "
                            "each entry its backend to spot it on both)")
            seen.add((kw.name, kw.backend))
            yield from self._check_name(key, kw.name, kw.backend or MICRO)
            if kw.verify and (looks_like_path(kw.name) or canonical(kw.name) not in VERIFIED_KEYWORDS):
                yield f"{key}.verify", (f"no verifier for {kw.name!r}: edged ships them for "
                                        f"{', '.join(VERIFIED_KEYWORDS)}")
            elif kw.verifier is not None and kw.verifier.suffix != ".npz":
                yield f"{key}.verifier", (f"a verifier is the .npz file `edged enroll` writes (got "
                                          f"{str(kw.verifier)!r})")
            elif kw.verifier is not None and not kw.verify:
                yield f"{key}.verifier", (f"{kw.name!r} runs without a verifier here (verify: false, or not its "
                                          "tuned family): an enrolled verifier checks its tuned first stage")
            if kw.confirm is not None and kw.confirm.enabled and kw.confirm.backend is not None:
                if kw.confirm.backend == kw.backend:
                    yield f"{key}.confirm.backend", (f"must be the other family than the keyword's own "
                                                     f"({kw.backend}): a family cannot confirm itself")
                else:
                    yield from self._check_name(f"{key}.confirm", kw.name, kw.confirm.backend)

    def _check_name(self, key: str, name: str, backend: str) -> Problems:
        builtin = BUILTIN_KEYWORDS[backend]
        if self.models_dir is None and not looks_like_path(name) and canonical(name) not in builtin:
            close = difflib.get_close_matches(name, builtin, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            yield key, (f"unknown keyword {name!r} for backend {backend}; {hint}available: "
                        f"{', '.join(builtin)} (or a model path, or set models_dir)")


def _family_defaults(name: str, backend: str) -> tuple[float | None, int | None]:
    tuned = FAMILY_DEFAULTS.get((canonical(name), backend))
    return (tuned.cutoff, tuned.window) if tuned else (None, None)


@dataclass(frozen=True)
class ModelsConfig:
    """The models edged runs."""

    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    wakeword: WakewordConfig = field(default_factory=WakewordConfig)


@dataclass(frozen=True)
class MotionConfig:
    """Motion detection on low-resolution luma of every analysed frame."""

    enabled: bool = field(default=True, metadata=spec("Detect motion"))
    threshold: int = field(default=15, metadata=spec(
        "Luma change that counts as moving, on a 0..255 scale stretched to the scene's contrast", ge=1, le=255))
    contour_area: int = field(default=10, metadata=spec("Smallest moving blob", unit="px at frame_height",
                                                        ge=1))
    frame_height: int = field(default=100, metadata=spec("Analysis height", unit="px", ge=32, le=720))
    improve_contrast: bool = field(default=True, metadata=spec("Normalise contrast before comparing"))
    lightning_threshold: float = field(default=0.8, metadata=spec(
        "Share of the frame changing at once that means a light change, not motion", gt=0, le=1))
    off_delay: float = field(default=30.0, metadata=spec("Motion OFF after this long without motion",
                                                         unit="s", duration=True, ge=0))
    noise_factor: float = field(default=4.5, metadata=spec(
        "A pixel must also differ by this many times its own learnt noise (raises thresholds on noisy "
        "pixels and swaying leaves)", ge=1, le=20))
    background_time: float = field(default=5.0, metadata=spec(
        "Time constant of the background on still parts of the scene", unit="s", duration=True, gt=0, le=600))
    masks: tuple[tuple[tuple[float, float], ...], ...] = field(default=(), metadata=spec(
        "Polygons ignored by motion (and blanked before inference), as [x, y] points in 0..1"))

    def _validate(self) -> Problems:
        for i, polygon in enumerate(self.masks):
            if len(polygon) < 3:
                yield "masks", f"mask {i} needs at least 3 points (got {len(polygon)})"
            if any(not (0 <= c <= 1) for point in polygon for c in point):
                yield "masks", f"mask {i}: coordinates must be in 0..1 (fractions of width and height)"


@dataclass(frozen=True)
class IntervalConfig:
    """Bounds of the adaptive periodic caption."""

    min: float = field(default=60.0, metadata=spec("Shortest interval (busy scene)", unit="s",
                                                   duration=True, gt=0))
    max: float = field(default=900.0, metadata=spec("Longest interval (quiet scene)", unit="s",
                                                    duration=True, gt=0))

    def _validate(self) -> Problems:
        if self.max < self.min:
            yield "max", f"must be >= min ({self.min:g}s)"


@dataclass(frozen=True)
class DeadlinesConfig:
    """How long a caption may wait before it is stale, per trigger."""

    request: float = field(default=30.0, metadata=spec("MQTT caption_now / ask", unit="s", duration=True, gt=0))
    keyword: float = field(default=15.0, metadata=spec("Keyword heard", unit="s", duration=True, gt=0))
    motion: float = field(default=20.0, metadata=spec("Motion started", unit="s", duration=True, gt=0))
    periodic: float = field(default=120.0, metadata=spec("Periodic caption", unit="s", duration=True, gt=0))
    watch: float = field(default=60.0, metadata=spec(
        "Due watches (`watches:`) asked in a job of their own (no caption pending to carry them)",
        unit="s", duration=True, gt=0))

    def seconds(self, kind: TriggerKind) -> float:
        """The deadline of a trigger of `kind` (a question counts as a request)."""
        match kind:
            case TriggerKind.WATCH:
                return self.watch
            case TriggerKind.ASK | TriggerKind.REQUEST:
                return self.request
            case TriggerKind.KEYWORD:
                return self.keyword
            case TriggerKind.MOTION:
                return self.motion
            case TriggerKind.PERIODIC:
                return self.periodic


@dataclass(frozen=True)
class CaptionsConfig:
    """When a camera gets captioned."""

    enabled: bool = field(default=True, metadata=spec("Caption this camera"))
    on: tuple[TriggerKind, ...] = field(
        default=(TriggerKind.MOTION, TriggerKind.KEYWORD, TriggerKind.REQUEST, TriggerKind.PERIODIC),
        metadata=spec("Triggers that ask for a caption (request: caption_now and ask)"))
    interval: IntervalConfig = field(default_factory=IntervalConfig)
    deadlines: DeadlinesConfig = field(default_factory=DeadlinesConfig)
    prompt: str = field(default="", metadata=spec("Camera-specific prompt (default: the model's)"))
    context: str = field(default="", metadata=spec("What the camera looks at, prepended to the prompt"))
    scene_change: float = field(default=0.01, metadata=spec(  # edged.analysis.scene.SCENE_CHANGED
        "Periodic captions are skipped while the scene differs less than this from the last captioned frame",
        ge=0, le=1))
    text_similarity: float = field(default=0.8, metadata=spec(
        "A periodic caption this similar to the previous one is not published again (a heartbeat instead)",
        gt=0, le=1))
    summary: Literal["plain", "structured"] = field(default="plain", metadata=spec(
        "plain: the caption is the model's sentence; structured: the model writes a title, a summary and a "
        "threat level 0-2 (Frigate's review-summary fields), parsed into the caption"))
    summary_prompt: str = field(default="", metadata=spec(
        "Prompt of structured captions (default: edged's, which asks for Title/Summary/Threat lines)"))
    summary_max_tokens: int = field(default=96, metadata=spec(
        "Longest structured caption (three lines need more than one sentence)", unit="tokens", ge=16, le=1024))

    def _validate(self) -> Problems:
        if TriggerKind.ASK in self.on:
            yield "on", "a question is a request: list request (it admits caption_now and ask)"
        if TriggerKind.WATCH in self.on:
            yield "on", "watch is not a caption trigger: standing questions go under the camera's watches:"


QUESTION_LIMIT = 255  # characters: a watch's question is a Home Assistant text entity, whose state holds 255
WATCH_TRIGGERS = (TriggerKind.MOTION, TriggerKind.KEYWORD, TriggerKind.PERIODIC)
RESERVED_WATCH_NAMES = ("set", "state")  # <base>/<cam>/watch/set would read as a `/set` command
# Home Assistant's binary_sensor device classes (2025.4): how the state is shown (door: Open/Closed, ...).
BinarySensorClass = Literal[
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas",
    "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power",
    "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window"]


@dataclass(frozen=True)
class WatchConfig:
    """A standing yes/no question about a camera ("Is there a package on the doormat?"), answered from the
    model's probabilities of yes and no, and published as an ON/OFF state once `hold` confident answers
    in a row agree."""

    id: str = field(metadata=spec("Watch name: its key under watches (topics, Home Assistant ids)",
                                  pattern=ID_PATTERN))
    question: str = field(default="", metadata=spec(
        f"A yes/no question about what the camera sees (at most {QUESTION_LIMIT} characters)"))
    name: str = field(default="", metadata=spec("Display name in Home Assistant (default: the watch name)"))
    enabled: bool = field(default=True, metadata=spec("Ask it (switchable at run time)"))
    on: tuple[TriggerKind, ...] = field(default=(TriggerKind.MOTION, TriggerKind.PERIODIC), metadata=spec(
        "When it is asked: motion (motion started), keyword (a keyword heard), periodic (every interval, "
        "motion or not); it also rides along with any caption of the camera"))
    interval: float | None = field(default=None, metadata=spec(
        "How often a periodic watch is asked (default 5m; needs periodic in on)", unit="s", duration=True,
        ge=5, le=86400))
    min_confidence: float = field(default=0.7, metadata=spec(
        "An answer counts when its side's probability (p_yes for yes, 1 - p_yes for no) is at least this",
        gt=0.5, lt=1))
    hold: int = field(default=2, metadata=spec(
        "Confident answers in a row, on the other side, that change the state (debounce)", ge=1, le=20))
    device_class: BinarySensorClass | None = field(default=None, metadata=spec(
        "Home Assistant device class of its binary_sensor (garage_door shows Open/Closed, occupancy "
        "Detected/Clear, ...); default none: On/Off"))

    @property
    def display_name(self) -> str:
        return self.name or self.id.replace("_", " ").replace("-", " ").capitalize()

    @property
    def period(self) -> float | None:
        """Seconds between periodic askings, or None when it is not periodic."""
        if TriggerKind.PERIODIC not in self.on:
            return None
        return self.interval if self.interval is not None else 300.0

    def _validate(self) -> Problems:
        yield from question_problems(self.question)
        for kind in self.on:
            if kind not in WATCH_TRIGGERS:
                yield "on", (f"a watch is asked on {', '.join(WATCH_TRIGGERS)} (got {kind}); it also rides "
                             "along with every caption and question of its camera")
        if not self.on:
            yield "on", "a watch needs at least one of motion, keyword, periodic"
        if self.interval is not None and TriggerKind.PERIODIC not in self.on:
            yield "interval", "is only used with periodic in on (add periodic, or remove interval)"


def question_problems(question: str) -> Iterator[tuple[str, str]]:
    """What is wrong with a watch's question (the config's and a `/set`'s rule)."""
    if not question.strip():
        yield "question", "is required: a yes/no question about what the camera sees"
    elif len(question) > QUESTION_LIMIT:
        yield "question", (f"is {len(question)} characters; the limit is {QUESTION_LIMIT} (a Home Assistant "
                           "text entity holds that many)")
    elif any(unicodedata.category(c) == "Cc" for c in question.strip()):
        yield "question", "holds control characters (a line break, a tab): write it on one line"
    elif "<|" in question:
        yield "question", "holds '<|', which the model reads as a chat-template token (like <|user|>)"


@dataclass(frozen=True)
class SnapshotConfig:
    """JPEG snapshots published with events and captions."""

    height: int = field(default=360, metadata=spec("Snapshot height", unit="px", ge=64, le=2160))
    quality: int = field(default=70, metadata=spec("JPEG quality", ge=10, le=100))


@dataclass(frozen=True)
class MicrophoneConfig:
    """A microphone: ALSA device, media file, FIFO, stdin, or a stream's audio track."""

    id: str = field(default="", metadata=spec("Microphone id (topics)", pattern=ID_PATTERN))
    device: str = field(default="", metadata=spec(
        'ALSA name ("hw:1,0", "default"), a WAV/FLAC/media path, "fifo:PATH", "-" (stdin), an rtsp:// URL, '
        'or "camera" for the co-located camera\'s audio track'))
    name: str = field(default="", metadata=spec("Display name"))
    camera: str | None = field(default=None, metadata=spec("Co-located camera (for keyword -> caption)"))
    enabled: bool = field(default=True, metadata=spec("Capture this microphone"))
    sample_rate: int = field(default=16000, metadata=spec("Rate of raw PCM input (stdin, FIFO)", unit="Hz",
                                                          ge=8000, le=192000))
    channels: int = field(default=1, metadata=spec("Channels of raw PCM input", ge=1, le=8))
    loop: bool = field(default=False, metadata=spec("Loop a file forever"))
    realtime: bool = field(default=True, metadata=spec("Pace files at real time"))
    chunk_ms: int = field(default=10, metadata=spec("Chunk length handed to keyword spotting", unit="ms",
                                                    ge=5, le=100))
    queue_seconds: float = field(default=2.0, metadata=spec("Audio buffered before overruns", unit="s",
                                                            duration=True, gt=0, le=30))
    reconnect: BackoffConfig = field(default_factory=lambda: BackoffConfig(initial=0.5, max=3.0))
    keywords: bool = field(default=True, metadata=spec("Spot keywords on this microphone"))

    @property
    def display_name(self) -> str:
        return self.name or self.id

    def _validate(self) -> Problems:
        if not self.device:
            yield "device", "is required"


@dataclass(frozen=True)
class CameraConfig:
    """One camera. Every field but `url` can be given once under `defaults:` for all cameras."""

    id: str = field(metadata=spec("Camera id: its key under cameras", pattern=ID_PATTERN))
    url: str = field(default="", metadata=spec("rtsp:// URL, /dev/videoN, or a video file path"))
    password_file: Path | None = field(default=None, metadata=spec(
        "File with the camera password (the url carries only the user: rtsp://user@host/...)", secret=True))
    password_credential: str | None = field(default=None, metadata=spec(
        "systemd credential with the camera password", secret=True))
    name: str = field(default="", metadata=spec("Display name"))
    enabled: bool = field(default=True, metadata=spec("Capture this camera"))
    privacy: bool = field(default=False, metadata=spec("Start in privacy mode (nothing captured)"))
    analysis_fps: float = field(default=5.0, metadata=spec("Frames analysed per second", unit="fps",
                                                           gt=0, le=60))
    loop: bool = field(default=False, metadata=spec("Loop a file forever"))
    realtime: bool = field(default=True, metadata=spec("Pace files at their native frame rate"))
    open_timeout: float = field(default=10.0, metadata=spec("Stream open timeout", unit="s", duration=True,
                                                            gt=0, le=120))
    read_timeout: float = field(default=5.0, metadata=spec("Stream read timeout", unit="s", duration=True,
                                                           gt=0, le=120))
    stall_intervals: float = field(default=10.0, metadata=spec(
        "A stall is this many expected frame intervals without a frame (at least 2 s)", ge=2, le=1000))
    queue_size: int = field(default=2, metadata=spec("Frames buffered between capture and analysis", ge=1,
                                                     le=64))
    history: float = field(default=4.0, metadata=spec("Recent analysed frames kept for frame choice",
                                                      unit="s", duration=True, gt=0, le=60))
    # Retrying a dead camera is cheap; a short cap means a camera is back within seconds of its return.
    reconnect: BackoffConfig = field(default_factory=lambda: BackoffConfig(initial=0.5, max=3.0))
    microphone: MicrophoneConfig | None = field(default=None, metadata=spec("The camera's microphone"))
    motion: MotionConfig = field(default_factory=MotionConfig)
    captions: CaptionsConfig = field(default_factory=CaptionsConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    watches: Mapping[str, WatchConfig] = field(default_factory=_empty, metadata=spec(  # type: ignore[arg-type]
        "Standing yes/no questions, by name (each a Home Assistant binary_sensor)"))

    @property
    def display_name(self) -> str:
        return self.name or self.id

    @property
    def is_file(self) -> bool:
        return source_kind(self.url) == "file"

    @property
    def password(self) -> SecretRef | None:
        return secret_ref(self.password_file, self.password_credential)

    @property
    def stall_timeout(self) -> float:
        """Seconds without a frame that count as a stall."""
        return max(2.0, self.stall_intervals / self.analysis_fps)

    def _validate(self) -> Problems:
        if not self.url:
            yield "url", "is required"
        elif has_inline_password(self.url):
            yield "url", ("inline passwords are not allowed: keep rtsp://user@host/... and put the password "
                          "in password_file (or password_credential)")
        if self.password_file is not None and self.password_credential is not None:
            yield "password_credential", "set password_file or password_credential, not both"
        seen: dict[str, str] = {}
        for name in self.watches:  # Home Assistant's unique ids turn '-' into '_': one entity for both
            if name in RESERVED_WATCH_NAMES:
                yield f"watches.{name}", (f"the name {name!r} is reserved (its topic <camera>/watch/{name} would "
                                          "read as a command)")
            if _ha_key(name) in seen:
                yield f"watches.{name}", (f"watch {name!r} and {seen[_ha_key(name)]!r} differ only in '-' and "
                                          "'_': Home Assistant would see one entity")
            seen[_ha_key(name)] = name


@dataclass(frozen=True)
class RuleConfig:
    """A named event raised when a caption matches: any of `labels`, and/or the `text` pattern."""

    name: str = field(metadata=spec("Rule name (the event type in Home Assistant)", pattern=ID_PATTERN))
    cameras: tuple[str, ...] = field(default=(), metadata=spec("Cameras it applies to (default: all)"))
    labels: tuple[str, ...] = field(default=(), metadata=spec("Labels, any of which matches"))
    text: str = field(default="", metadata=spec("Regular expression the caption must match (case-insensitive)"))
    on: tuple[TriggerKind, ...] = field(default=(), metadata=spec("Triggers it applies to (default: all)"))

    @property
    def pattern(self) -> re.Pattern[str] | None:
        return re.compile(self.text, re.IGNORECASE) if self.text else None

    def _validate(self) -> Problems:
        if not self.labels and not self.text:
            yield "labels", "a rule needs labels, a text pattern, or both"
        try:
            self.pattern  # noqa: B018 - compiling is the check
        except re.error as exc:
            yield "text", f"is not a valid regular expression ({exc})"


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` for IPv6) -> (host, port); raises ValueError naming what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port, e.g. 127.0.0.1:11435 or [::1]:11435")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError("an IPv6 address goes in brackets: [::1]:11435")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets: [::1]:11435")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be 1-65535 (got {port!r})")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether `host` (a listen address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class ApiConfig:
    """An OpenAI- and Ollama-compatible HTTP endpoint (Frigate, LLM Vision, Home Assistant's Ollama
    integration), off unless this section is present. Its requests share the model with the cameras, at
    `request` priority with their own deadline."""

    enabled: bool = field(default=True, metadata=spec("Serve the endpoint (false keeps the settings, serves nothing)"))
    listen: str = field(default="127.0.0.1:11435", metadata=spec(
        "Address and port to listen on; anything but loopback needs a token"))
    token_file: Path | None = field(default=None, metadata=spec(
        "File holding the bearer token clients must send", secret=True))
    token_credential: str | None = field(default=None, metadata=spec(
        "systemd credential holding the bearer token", secret=True))
    max_body_mb: float = field(default=16.0, metadata=spec("Largest request body", unit="MB", gt=0, le=256))
    max_image_mb: float = field(default=8.0, metadata=spec("Largest image, once base64-decoded", unit="MB",
                                                           gt=0, le=64))
    max_images: int = field(default=4, metadata=spec(
        "Most images in one request (several are tiled into one picture for the model)", ge=1, le=16))
    max_concurrent: int = field(default=2, metadata=spec(
        "Requests queued or running at once; more are answered 429 with Retry-After", ge=1, le=64))
    max_tokens: int = field(default=128, metadata=spec(
        "Longest answer (a request's max_tokens may ask for fewer)", unit="tokens", ge=1, le=1024))
    deadline: float = field(default=60.0, metadata=spec(
        "A request not answered by then gets 503 with Retry-After", unit="s", duration=True, gt=0, le=600))
    allow_image_urls: bool = field(default=False, metadata=spec(
        "Fetch http(s) image URLs named in requests (off: data URLs and base64 only)"))

    _forbidden = MappingProxyType({
        "token": "inline tokens are not allowed: write it to a file and set token_file "
                 "(or token_credential under systemd's LoadCredential=)",
    })

    @property
    def token(self) -> SecretRef | None:
        return secret_ref(self.token_file, self.token_credential)

    @property
    def address(self) -> tuple[str, int]:
        return split_listen(self.listen)

    def _validate(self) -> Problems:
        try:
            host, _port = split_listen(self.listen)
        except ValueError as exc:
            yield "listen", str(exc)
            return
        if self.token_file is not None and self.token_credential is not None:
            yield "token_credential", "set token_file or token_credential, not both"
        if self.token is None and not is_loopback(host):
            yield "listen", (f"{host} is reachable from other machines: set token_file (or token_credential) "
                             "so only clients with the token are answered, or listen on 127.0.0.1")
        if self.max_body_mb < self.max_image_mb * 4 / 3:
            yield "max_body_mb", (f"must be >= {self.max_image_mb * 4 / 3:.1f} (max_image_mb in base64, which "
                                  "is a third larger), or the largest allowed image could never be sent")


@dataclass(frozen=True)
class HistoryConfig:
    """The memory: every caption and answer, with its snapshot, in a bounded SQLite database with
    full-text search, on the board (`edged history search`, MQTT `request/search`)."""

    enabled: bool = field(default=True, metadata=spec("Record captions and answers"))
    path: Path | None = field(default=None, metadata=spec(
        "Directory of the database and snapshots (default: <state_dir>/history)"))
    max_age: float = field(default=30 * 86400.0, metadata=spec(
        "Moments older than this are deleted", unit="s", duration=True, ge=60))
    max_size_mb: float = field(default=512.0, metadata=spec(
        "Database plus snapshots; the oldest moments are deleted beyond it", unit="MB", ge=1, le=1_000_000))
    snapshots: bool = field(default=True, metadata=spec("Keep the frame of each moment as a JPEG"))
    snapshot_height: int = field(default=360, metadata=spec("Height of kept snapshots", unit="px", ge=64,
                                                            le=2160))
    snapshot_quality: int = field(default=70, metadata=spec("JPEG quality of kept snapshots", ge=10, le=100))
    queue_size: int = field(default=16, metadata=spec(
        "Moments waiting to be written; more are dropped (counted and logged)", ge=1, le=1024))


@dataclass(frozen=True)
class LogConfig:
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=spec("Lowest level"))
    format: Literal["auto", "json", "console"] = field(
        default="auto", metadata=spec("auto: console on a terminal, JSON lines otherwise (systemd)"))


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration."""

    source: str = field(metadata=spec("File the config was read from"))
    device: DeviceConfig = field(default_factory=DeviceConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    state_dir: Path = field(default=Path("/var/lib/edged"), metadata=spec("Writable state directory"))
    cameras: Mapping[str, CameraConfig] = field(default_factory=_empty)  # type: ignore[arg-type]
    microphones: Mapping[str, MicrophoneConfig] = field(default_factory=_empty)  # type: ignore[arg-type]
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=_empty, metadata=spec(  # type: ignore[arg-type]
        "Label -> words in a caption that mean it (extends the built-in person/vehicle/animal/package)"))
    rules: tuple[RuleConfig, ...] = field(default=(), metadata=spec("Named events raised by caption matches"))
    api: ApiConfig | None = field(default=None, metadata=spec(
        "The OpenAI- and Ollama-compatible HTTP endpoint; absent: off"))
    history: HistoryConfig = field(default_factory=HistoryConfig)

    @property
    def base_topic(self) -> str:
        return f"{self.mqtt.base_topic}/{self.device.id}"

    @property
    def outbox_path(self) -> Path:
        return self.mqtt.outbox.path or self.state_dir / "outbox.db"

    @property
    def history_path(self) -> Path:
        """Directory of the history database and its snapshots."""
        return self.history.path or self.state_dir / "history"

    @property
    def model_path(self) -> Path:
        return self.models.captioner.path or self.state_dir / "models" / "glm-edge-v-2b"

    @property
    def captioner(self) -> CaptionerConfig:
        """The captioner section with every default path filled in from `state_dir`."""
        cap = self.models.captioner
        remote = cap.remote
        if remote is not None and remote.face_model is None:
            face = self.state_dir / "models" / "face-detector" / "face_detection_short_range.tflite"
            remote = dataclasses.replace(remote, face_model=face)
        return dataclasses.replace(cap, path=self.model_path, remote=remote)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edged-{self.device.id}"

    @property
    def secret_refs(self) -> dict[str, SecretRef]:
        """Every secret the config names, by key path: read (or checked) up front, never logged."""
        remote = self.models.captioner.remote
        refs = {"mqtt.password": self.mqtt.password,
                **{f"cameras.{cam.id}.password": cam.password for cam in self.cameras.values()},
                "models.captioner.remote.api_key": remote.api_key if remote is not None else None,
                "api.token": self.api.token if self.api is not None and self.api.enabled else None}
        return {key: ref for key, ref in refs.items() if ref is not None}

    @property
    def all_microphones(self) -> tuple[MicrophoneConfig, ...]:
        """Top-level microphones plus those nested under cameras."""
        nested = tuple(c.microphone for c in self.cameras.values() if c.microphone is not None)
        return tuple(self.microphones.values()) + nested

    def _validate(self) -> Problems:
        # Ids are compared as Home Assistant's unique ids spell them ('-' becomes '_'): `front-door` and
        # `front_door` would be one entity there.
        seen: dict[str, str] = {}
        for cam in self.cameras:
            if _ha_key(cam) in seen:
                yield "cameras", f"camera {cam!r} and {seen[_ha_key(cam)]} differ only in '-' and '_'"
            seen[_ha_key(cam)] = f"cameras.{cam}"
        # Nested microphones get their id (`<camera>_mic`) after validation: check the ids they will have.
        nested = {id(c.microphone): f"{c.id}_mic" for c in self.cameras.values() if c.microphone is not None}
        for mic in self.all_microphones:
            mic_id = mic.id or nested.get(id(mic), "")
            where = f"microphone {mic_id!r}"
            if _ha_key(mic_id) in seen:
                yield "microphones", f"{where} uses the id of {seen[_ha_key(mic_id)]}; ids must be unique " \
                                     "(after '-' becomes '_', as in Home Assistant's unique ids)"
            seen[_ha_key(mic_id)] = where
            if mic.camera is not None and mic.camera not in self.cameras:
                known = ", ".join(self.cameras) or "none"
                yield "microphones", f"{where}: camera {mic.camera!r} is not configured (cameras: {known})"
        for rule in self.rules:
            for cam in rule.cameras:
                if cam not in self.cameras:
                    yield "rules", f"rule {rule.name!r}: camera {cam!r} is not configured"


def _ha_key(source_id: str) -> str:
    return source_id.replace("-", "_")


def source_kind(url: str) -> Literal["rtsp", "v4l2", "file", "http"]:
    """What kind of video source a camera url names."""
    lower = url.lower()
    if lower.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if lower.startswith(("http://", "https://")):
        return "http"
    if lower.startswith("/dev/video") or lower.isdigit():
        return "v4l2"
    return "file"


def microphone_kind(device: str) -> Literal["stdin", "fifo", "stream", "wav", "media", "camera", "alsa"]:
    """Which reader a microphone's `device` string asks for."""
    lower = device.lower()
    if device == "-":
        return "stdin"
    if device == "camera":
        return "camera"
    if device.startswith("fifo:"):
        return "fifo"
    if lower.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return "stream"
    if lower.endswith(".wav"):
        return "wav"
    if "/" in device or Path(device).suffix:
        return "media"
    return "alsa"
