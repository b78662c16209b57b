"""The model bundle's `manifest.json`: what the exporter wrote, and the checks made before loading it.

A bundle is a directory holding the ONNX graphs, the fp16 embedding table, the tokenizer and this
manifest. Every file is listed with its size and sha256; `verify` rehashes them, so a truncated
download or a flipped bit is an error naming the file and the command that fixes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edged.inference.protocol import ModelUnavailable

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PULL_HINT = "run `edged models pull glm-edge-v-2b` (or point models.captioner.path at a bundle)"

T = TypeVar("T")


class BundleError(ModelUnavailable):
    """A model bundle is missing, incomplete or corrupt."""


@dataclass(frozen=True)
class LmArch:
    """The language model's numbers, read from the source config and asserted at export."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    rotary_dim: int
    rotary_interleaved: bool
    tie_word_embeddings: bool
    attention_bias: bool


@dataclass(frozen=True)
class VisionArch:
    """The SigLIP tower and adapter."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    image_size: int
    patch_size: int
    layer_norm_eps: float
    num_image_tokens: int  # (image / patch / 2)^2 + boi + eoi


@dataclass(frozen=True)
class Preprocessing:
    """How pixels are made (transformers' Mllama processor with one tile)."""

    size: int
    fit: str = "mllama_single_tile"
    resample: str = "bicubic"
    pad: str = "bottom_right"
    pad_value_pixel: int = 0
    rescale_factor: float = 1 / 255
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PromptSpec:
    """Token ids around the user's text, rendered once from the real chat template.

    The sequence is `prefix_ids + [image_token_id] * num_image_tokens + between_ids +
    tokenize(prompt) + suffix_ids`. `default_prompt_ids` is the whole sequence for the default
    prompt, tokenized in one piece (exact even when the split is not).
    """

    prefix_ids: tuple[int, ...]
    between_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    default_prompt: str
    default_prompt_ids: tuple[int, ...]
    split_exact: bool
    template_sha256: str = ""


@dataclass(frozen=True)
class Generation:
    """Decoding defaults (greedy)."""

    max_new_tokens: int = 48
    repetition_penalty: float = 1.0
    stop_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle."""

    sha256: str
    size: int
    role: str
    precision: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    external_data: str = ""


@dataclass(frozen=True)
class Variant:
    """A pair of vision and decoder graphs that run together."""

    vision: str
    decoder: str
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest of one bundle."""

    schema_version: int
    family: str
    name: str
    lm: LmArch
    vision: VisionArch
    image_token_id: int
    preprocessing: Preprocessing
    prompt: PromptSpec
    generation: Generation
    special_ids: Mapping[str, int]
    files: Mapping[str, FileEntry]
    variants: Mapping[str, Variant]
    default_variant: str
    embeddings: str
    tokenizer: str
    source: Mapping[str, Any] = field(default_factory=dict)
    exporter: Mapping[str, Any] = field(default_factory=dict)
    goldens: Mapping[str, Any] = field(default_factory=dict)

    def variant(self, name: str = "") -> Variant:
        """The named variant (the manifest's default when `name` is empty)."""
        key = name or self.default_variant
        if key not in self.variants:
            known = ", ".join(self.variants)
            hint = "run `edged models quantize DIR`" if key in ("int8", "int4", "int8-vision") else ""
            raise BundleError(f"model bundle {self.name} has no variant {key!r} (has: {known})", hint)
        return self.variants[key]


def _build(cls: type[T], data: Mapping[str, Any]) -> T:
    """A flat dataclass from a dict, lists turned into tuples, unknown keys ignored (forward compatible)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return cls(**kwargs)


def manifest_from_dict(data: Mapping[str, Any]) -> Manifest:
    """Parse a manifest dict (raises KeyError / TypeError on a malformed one)."""
    arch = data["arch"]
    return Manifest(
        schema_version=int(data["schema_version"]),
        family=data["family"],
        name=data["name"],
        lm=_build(LmArch, arch["lm"]),
        vision=_build(VisionArch, arch["vision"]),
        image_token_id=int(arch["image_token_id"]),
        preprocessing=_build(Preprocessing, data["preprocessing"]),
        prompt=_build(PromptSpec, data["prompt"]),
        generation=_build(Generation, data["generation"]),
        special_ids=dict(data["special_ids"]),
        files={k: _build(FileEntry, v) for k, v in data["files"].items()},
        variants={k: _build(Variant, v) for k, v in data["variants"].items()},
        default_variant=data["default_variant"],
        embeddings=data["embeddings"],
        tokenizer=data["tokenizer"],
        source=data.get("source", {}),
        exporter=data.get("exporter", {}),
        goldens=data.get("goldens", {}),
    )


def manifest_to_dict(m: Manifest) -> dict[str, Any]:
    """The JSON form of a manifest."""
    out = dataclasses.asdict(m)
    out["arch"] = {
        "lm": out.pop("lm"),
        "vision": out.pop("vision"),
        "image_token_id": out.pop("image_token_id"),
    }
    return out


def load_manifest(directory: Path) -> Manifest:
    """Read `directory/manifest.json`, or raise `BundleError` saying what is wrong and how to fix it."""
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise BundleError(f"model bundle {directory} does not exist", PULL_HINT)
    if not path.is_file():
        raise BundleError(f"{path} is missing: {directory} is not a model bundle", PULL_HINT)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = manifest_from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(
            f"{path} is not a valid manifest ({type(exc).__name__}: {exc})", PULL_HINT
        ) from None
    if manifest.schema_version != SCHEMA_VERSION:
        raise BundleError(
            f"{path} has schema version {manifest.schema_version}; this edged reads version {SCHEMA_VERSION}",
            "re-export the bundle with this edged version",
        )
    return manifest


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def files_of_variant(m: Manifest, variant: Variant) -> list[str]:
    """Every bundle file a variant needs (graphs, their external data, embeddings, tokenizer)."""
    names = [variant.vision, variant.decoder, m.embeddings, m.tokenizer]
    extra = [
        m.files[n].external_data
        for n in (variant.vision, variant.decoder)
        if n in m.files and m.files[n].external_data
    ]
    return names + extra


def verify(directory: Path, m: Manifest, names: Iterable[str] | None = None, *, hashes: bool = True) -> None:
    """Check that each named file (default: all) exists with the recorded size and sha256."""
    directory = Path(directory)
    fix = (
        f"re-download it (`edged models pull glm-edge-v-2b`), "
        f"or check the bundle with `edged models verify {directory}`"
    )
    for name in list(m.files) if names is None else names:
        entry = m.files.get(name)
        if entry is None:
            raise BundleError(f"{directory / MANIFEST} does not list {name}", fix)
        path = directory / name
        if not path.is_file():
            raise BundleError(f"model file {path} is missing", fix)
        size = path.stat().st_size
        if size != entry.size:
            raise BundleError(
                f"model file {path} has {size} bytes, the manifest says {entry.size} (truncated?)", fix
            )
        if hashes and sha256_file(path) != entry.sha256:
            raise BundleError(f"model file {path} is corrupt (sha256 differs from the manifest)", fix)
