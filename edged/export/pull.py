"""`edged models pull`: fetch a snapshot, export it, quantize it - the one command a user runs.

The snapshot comes from the model hub through huggingface_hub (resumable; every LFS file's sha256 is
checked against the hub's metadata) or from a local directory (`--source`, e.g. a copy on a USB
stick), checked against its `SHA256SUMS` when it has one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from edged.export.bundle import ExportOptions, export
from edged.export.quantize import QuantizeOptions, quantize_bundle
from edged.inference.downloads import DownloadError, hub_snapshot
from edged.inference.manifest import Manifest, manifest_to_dict, sha256_file

# Known model names -> hub repositories.
MODELS = {"glm-edge-v-2b": "THUDM/glm-edge-v-2b", "glm-edge-v-5b": "THUDM/glm-edge-v-5b"}
# The files an export reads; remote-code files and the bf16 GGUFs are not needed.
PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "chat_template.json",
    "chat_template.jinja",
]
SUMS = "SHA256SUMS"


class PullError(DownloadError):
    """The snapshot could not be fetched or failed its checks."""


@dataclass(frozen=True)
class PullOptions:
    model: str
    out: Path
    source: Path | None = None
    revision: str | None = None
    cache_dir: Path | None = None
    endpoint: str | None = None  # a hub mirror; None: huggingface_hub's default ($HF_ENDPOINT or the hub)
    quant: str = "int4"
    keep_all: bool = False


def check_sums(snapshot: Path) -> int:
    """Verify `SHA256SUMS` ("<hex>  <file>" lines) when present; returns how many files were checked."""
    sums = snapshot / SUMS
    if not sums.is_file():
        return 0
    count = 0
    for line in sums.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        path = snapshot / name.strip().lstrip("*")
        if not path.is_file():
            raise PullError(f"{path} is listed in {sums} but missing")
        if sha256_file(path) != digest.lower():
            raise PullError(f"{path} is corrupt (sha256 differs from {sums})")
        count += 1
    return count


def prune(directory: Path, m: Manifest, keep: str) -> None:
    """Drop the variants other than `keep` and the files only they used (saves the fp32 gigabytes)."""
    import json
    from dataclasses import replace

    from edged.inference.manifest import MANIFEST, files_of_variant

    variant = m.variant(keep)
    needed = set(files_of_variant(m, variant))
    for name in list(m.files):
        if name not in needed:
            (directory / name).unlink(missing_ok=True)
    pruned = replace(
        m,
        files={k: v for k, v in m.files.items() if k in needed},
        variants={keep: variant},
        default_variant=keep,
        goldens={**m.goldens, "variants": {keep: m.goldens.get("variants", {}).get(keep, {})}},
    )
    (directory / MANIFEST).write_text(json.dumps(manifest_to_dict(pruned), indent=1) + "\n", encoding="utf-8")


def pull(opts: PullOptions) -> Manifest:
    """Fetch, export and quantize `opts.model` into `opts.out`."""
    if opts.model not in MODELS:
        raise PullError(f"unknown model {opts.model!r} (known: {', '.join(MODELS)})")
    repo = MODELS[opts.model]
    if opts.source is not None:
        snapshot = Path(opts.source)
        if not (snapshot / "config.json").is_file() and (snapshot / repo / "config.json").is_file():
            snapshot = snapshot / repo  # a local mirror laid out as <org>/<name>/
        if not (snapshot / "config.json").is_file():
            raise PullError(f"{opts.source} holds no snapshot of {repo} (no config.json)")
        check_sums(snapshot)
    else:
        snapshot = hub_snapshot(repo, opts.revision, opts.cache_dir, opts.endpoint, PATTERNS)
    out = Path(opts.out)
    if out.exists():
        shutil.rmtree(out)
    m = export(
        ExportOptions(
            snapshot=snapshot,
            out=out,
            name=opts.model,
            repo=repo,
            revision=opts.revision or "",
            golden_tokens=8,
            golden_images=1,
        )
    )
    if opts.quant == "int4":
        m = quantize_bundle(out, QuantizeOptions(golden_tokens=8))
        if not opts.keep_all:
            prune(out, m, "int4")
    from edged.inference.manifest import load_manifest

    return load_manifest(out)
