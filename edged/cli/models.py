"""`edged models list|verify|pull|export|quantize`: get GLM-Edge-V onto the board and check it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edged.inference.manifest import BundleError, files_of_variant, load_manifest, verify

DEFAULT_DIR = Path("/var/lib/edged/models")
EXPORT_HINT = "the export tools need the export extra: pip install 'edged[export]'"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="list, verify, pull, export and quantize model bundles")
    what = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    ls = what.add_parser("list", help="list the bundles in a directory")
    ls.add_argument(
        "dirs", nargs="*", type=Path, help=f"bundle directories or their parent (default {DEFAULT_DIR})"
    )
    ls.set_defaults(func=run_list)

    ver = what.add_parser("verify", help="check every file of a bundle against its manifest (sha256)")
    ver.add_argument("dir", type=Path)
    ver.add_argument("--variant", default="", help="check only the files of this variant")
    ver.set_defaults(func=run_verify)

    pull = what.add_parser("pull", help="download a model, export and quantize it (needs the export extra)")
    pull.add_argument("model", help="glm-edge-v-2b, glm-edge-v-5b, or face-detector (for blur_faces)")
    pull.add_argument("--out", type=Path, help=f"bundle directory (default {DEFAULT_DIR}/MODEL)")
    pull.add_argument("--quant", choices=("int4", "none"), default="int4")
    pull.add_argument("--source", type=Path, help="use this local snapshot directory instead of the hub")
    pull.add_argument("--revision", help="hub revision (branch, tag or commit)")
    pull.add_argument("--cache-dir", type=Path, help="hub download cache")
    pull.add_argument("--endpoint", help="a hub mirror's URL (default: $HF_ENDPOINT, else the hub)")
    pull.add_argument("--keep-all", action="store_true", help="keep the fp32 variants too (several GB)")
    pull.set_defaults(func=run_pull)

    exp = what.add_parser("export", help="export a local snapshot (or random weights) to a bundle")
    exp.add_argument("snapshot", nargs="?", type=Path, help="snapshot directory (hub layout)")
    exp.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    exp.add_argument("--name", default="", help="bundle name (default: the directory name)")
    exp.add_argument("--random-init", action="store_true", help="export random weights of --shape")
    exp.add_argument("--shape", choices=("tiny", "2b", "5b"), default="tiny")
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument(
        "--snapshot-out", type=Path, help="where --random-init writes its snapshot (default OUT-snapshot)"
    )
    exp.add_argument("--reference", action="store_true", help="check every stage against the torch reference")
    exp.add_argument("--golden-tokens", type=int, default=16)
    exp.add_argument("--golden-images", type=int, default=3, choices=(1, 2, 3))
    exp.set_defaults(func=run_export)

    q = what.add_parser("quantize", help="add int8-vision and int4 variants to a bundle")
    q.add_argument("dir", type=Path)
    q.add_argument("--block-size", type=int, choices=(32, 64), default=64)
    q.add_argument("--accuracy-level", type=int, choices=(0, 1, 4), default=4)
    q.add_argument("--no-vision", action="store_true", help="leave the vision encoder fp32")
    q.add_argument("--no-decoder", action="store_true", help="leave the decoder fp32")
    q.set_defaults(func=run_quantize)


def _bundles(dirs: list[Path]) -> list[Path]:
    out = []
    for d in dirs or [DEFAULT_DIR]:
        if (d / "manifest.json").is_file():
            out.append(d)
        elif d.is_dir():
            out += sorted(p for p in d.iterdir() if (p / "manifest.json").is_file())
    return out


def run_list(args: argparse.Namespace) -> int:
    found = _bundles(args.dirs)
    if not found:
        print(
            f"no model bundles in {', '.join(map(str, args.dirs or [DEFAULT_DIR]))}; "
            "get one with `edged models pull glm-edge-v-2b`",
            file=sys.stderr,
        )
        return 1
    for d in found:
        try:
            m = load_manifest(d)
        except BundleError as exc:
            print(f"{d}: {exc}")
            continue
        for name, v in m.variants.items():
            size = sum(m.files[f].size for f in files_of_variant(m, v) if f in m.files)
            mark = "*" if name == m.default_variant else " "
            print(f"{d}  {m.name}  {mark}{name:12s} {size / 1e6:9.1f} MB  {v.description}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    try:
        m = load_manifest(args.dir)
        names = files_of_variant(m, m.variant(args.variant)) if args.variant else None
        verify(args.dir, m, names)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    count = len(names) if names is not None else len(m.files)
    print(f"{args.dir}: {m.name} ok ({count} files, sha256 checked)")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    if args.model == "face-detector":
        return _pull_face_detector(args.out or DEFAULT_DIR / "face-detector")
    try:
        from edged.export.pull import PullOptions, pull
        from edged.inference.downloads import DownloadError
    except ImportError as exc:
        print(f"error: {EXPORT_HINT} ({exc.name} is missing)", file=sys.stderr)
        return 2
    out = args.out or DEFAULT_DIR / args.model
    try:
        m = pull(
            PullOptions(
                model=args.model,
                out=out,
                source=args.source,
                revision=args.revision,
                cache_dir=args.cache_dir,
                endpoint=args.endpoint,
                quant=args.quant,
                keep_all=args.keep_all,
            )
        )
    except (DownloadError, BundleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{out}: {m.name} ready (variants: {', '.join(m.variants)}; default {m.default_variant})")
    return 0


def _pull_face_detector(out: Path) -> int:
    """The face detector the remote backend's `blur_faces` uses (a small TFLite file, checked by sha256)."""
    from edged.inference.downloads import FACE_DETECTOR, DownloadError, wheel_file

    try:
        path = wheel_file(FACE_DETECTOR, out)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: face detector ready (sha256 checked)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    try:
        from edged.export.bundle import ExportOptions, export
        from edged.export.random_snapshot import write_random_snapshot
        from edged.export.source_config import ConfigMismatch
        from edged.export.weights import WeightError
    except ImportError as exc:
        print(f"error: {EXPORT_HINT} ({exc.name} is missing)", file=sys.stderr)
        return 2
    snapshot = args.snapshot
    if args.random_init:
        snapshot = write_random_snapshot(
            args.snapshot_out or Path(f"{args.out}-snapshot"), args.shape, args.seed
        )
    elif snapshot is None:
        print("error: give a SNAPSHOT directory, or --random-init --shape SHAPE", file=sys.stderr)
        return 2
    name = args.name or (f"glm-edge-v-{args.shape}-random" if args.random_init else "")
    try:
        m = export(
            ExportOptions(
                snapshot=snapshot,
                out=args.out,
                name=name,
                reference=args.reference,
                golden_tokens=args.golden_tokens,
                golden_images=args.golden_images,
            )
        )
    except (ConfigMismatch, WeightError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {m.name} exported ({len(m.files)} files)")
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    try:
        from edged.export.quantize import QuantizeOptions, quantize_bundle
    except ImportError as exc:
        print(f"error: {EXPORT_HINT} ({exc.name} is missing)", file=sys.stderr)
        return 2
    try:
        m = quantize_bundle(
            args.dir,
            QuantizeOptions(
                block_size=args.block_size,
                accuracy_level=args.accuracy_level,
                vision=not args.no_vision,
                decoder=not args.no_decoder,
            ),
        )
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dir}: variants {', '.join(m.variants)} (default {m.default_variant})")
    return 0
