"""Export a GLM-Edge-V snapshot into an edged model bundle.

Steps: check config.json and the checkpoint's tensor names, write the two graphs from the weights
(streamed), the fp16 embedding table and the tokenizer, render the chat template, write the
manifest, then run the bundle with edged's own runtime on test images and record goldens.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edged.export.decoder_graph import build_decoder
from edged.export.prompt_assets import preprocessing, prompt_spec, special_ids
from edged.export.source_config import SourceConfig, read_config
from edged.export.vision_graph import build_vision
from edged.export.weights import SnapshotWeights, check_keys, lm_names, vision_names
from edged.inference.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    FileEntry,
    Generation,
    Manifest,
    Variant,
    load_manifest,
    manifest_to_dict,
    sha256_file,
)

VISION, DECODER, EMBED, TOKENIZER = (
    "vision_encoder.onnx",
    "decoder_model_merged.onnx",
    "embed_tokens.f16.npy",
    "tokenizer.json",
)
# Graphs above this size keep their weights in `<name>.data` (protobuf stops at 2 GiB).
EXTERNAL_ABOVE = 64 << 20


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how to check it."""

    snapshot: Path
    out: Path
    name: str = ""
    repo: str = ""
    revision: str = ""
    golden_tokens: int = 16
    golden_images: int = 3
    reference: bool = False  # compare with the torch reference stage by stage
    hash_sources: bool = True


@contextmanager
def progress(total: int, desc: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar when tqdm is installed (the export extra has it), else nothing."""
    try:
        from tqdm import tqdm
    except ImportError:
        yield lambda n: None
        return
    with tqdm(total=total, desc=desc, unit="layer", leave=False) as bar:
        yield bar.update


def _entry(
    out: Path,
    name: str,
    role: str,
    precision: str,
    io: tuple[dict[str, Any], dict[str, Any]] | None,
    *,
    external: str = "",
) -> dict[str, FileEntry]:
    inputs, outputs = io or ({}, {})
    entries = {
        name: FileEntry(
            sha256=sha256_file(out / name),
            size=(out / name).stat().st_size,
            role=role,
            precision=precision,
            inputs=inputs,
            outputs=outputs,
            external_data=external,
        )
    }
    if external:
        entries[external] = FileEntry(
            sha256=sha256_file(out / external),
            size=(out / external).stat().st_size,
            role=f"{role}-weights",
            precision=precision,
        )
    return entries


def _param_bytes(sc: SourceConfig) -> tuple[int, int]:
    lm, v = sc.lm, sc.vision
    layer = (
        lm.hidden_size * (lm.num_heads + 2 * lm.num_kv_heads) * lm.head_dim * 2
        + 3 * lm.hidden_size * lm.intermediate_size
    )
    vis = v.num_layers * (4 * v.hidden_size**2 + 2 * v.hidden_size * v.intermediate_size)
    return 4 * (lm.num_layers * layer + lm.vocab_size * lm.hidden_size), 4 * vis


def write_graphs(sc: SourceConfig, weights: SnapshotWeights, out: Path) -> dict[str, FileEntry]:
    """Both ONNX graphs and the embedding table; returns their file entries."""
    dec_bytes, vis_bytes = _param_bytes(sc)
    files: dict[str, FileEntry] = {}
    ext = vis_bytes > EXTERNAL_ABOVE
    with progress(sc.vision.num_layers, "vision encoder") as bar:
        io = build_vision(out / VISION, sc.vision, sc.lm, weights.get, external=ext, progress=bar)
    files |= _entry(out, VISION, "vision", "fp32", io, external=VISION + ".data" if ext else "")
    ext = dec_bytes > EXTERNAL_ABOVE
    with progress(sc.lm.num_layers, "decoder") as bar:
        io = build_decoder(out / DECODER, sc.lm, weights.get, external=ext, progress=bar)
    files |= _entry(out, DECODER, "decoder", "fp32", io, external=DECODER + ".data" if ext else "")
    np.save(out / EMBED, weights.get("model.embed_tokens.weight").astype(np.float16))
    files |= _entry(out, EMBED, "embeddings", "fp16", None)
    return files


def _source_info(opts: ExportOptions, weights: SnapshotWeights) -> dict[str, Any]:
    snap = opts.snapshot.resolve()
    revision = opts.revision or (snap.name if snap.parent.name == "snapshots" else "")
    names = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        *weights.files(),
    ]
    hashes = {n: sha256_file(snap / n) for n in names if (snap / n).is_file()} if opts.hash_sources else {}
    return {
        "kind": "snapshot",
        "repo": opts.repo,
        "revision": revision,
        "path": str(opts.snapshot),
        "sha256": hashes,
    }


def _exporter_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from edged import __version__

    out = {"edged": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        import torch
        import transformers

        out |= {"torch": torch.__version__, "transformers": transformers.__version__}
    except ImportError:
        pass
    return out


def export(opts: ExportOptions) -> Manifest:
    """Export `opts.snapshot` into `opts.out` and return the written manifest."""
    from tokenizers import Tokenizer

    sc = read_config(opts.snapshot)
    weights = SnapshotWeights(opts.snapshot)
    check_keys(weights.names(), lm_names(sc.lm) + vision_names(sc.vision))
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    files = write_graphs(sc, weights, out)
    shutil.copyfile(opts.snapshot / TOKENIZER, out / TOKENIZER)
    files |= _entry(out, TOKENIZER, "tokenizer", "", None)
    tokenizer = Tokenizer.from_file(str(out / TOKENIZER))
    stop = sorted(
        set(sc.eos_ids) | {i for k, i in special_ids(tokenizer).items() if k in ("user", "observation")}
    )
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        family="glm-edge-v",
        name=opts.name or opts.snapshot.resolve().name,
        lm=sc.lm,
        vision=sc.vision,
        image_token_id=sc.image_token_id,
        preprocessing=preprocessing(opts.snapshot, sc.vision.image_size),
        prompt=prompt_spec(opts.snapshot, tokenizer, sc.image_token_id, sc.vision.num_image_tokens),
        generation=Generation(max_new_tokens=48, repetition_penalty=1.1, stop_ids=tuple(stop)),
        special_ids=special_ids(tokenizer),
        files=files,
        variants={"fp32": Variant(vision=VISION, decoder=DECODER, description="fp32 vision and decoder")},
        default_variant="fp32",
        embeddings=EMBED,
        tokenizer=TOKENIZER,
        source=_source_info(opts, weights),
        exporter={**_exporter_versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )
    write_manifest(out, manifest)
    from edged.export.goldens import record_goldens

    goldens = record_goldens(
        out,
        manifest,
        ["fp32"],
        opts.golden_tokens,
        images=opts.golden_images,
        reference=(sc, weights) if opts.reference else None,
    )
    manifest = replace(manifest, goldens=goldens)
    write_manifest(out, manifest)
    weights.close()
    return load_manifest(out)


def write_manifest(out: Path, manifest: Manifest) -> None:
    (Path(out) / MANIFEST).write_text(
        json.dumps(manifest_to_dict(manifest), indent=1) + "\n", encoding="utf-8"
    )
