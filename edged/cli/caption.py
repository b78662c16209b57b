"""`edged caption IMAGE...`: caption image files with the configured model; one JSON line per image.

The JSON line is a contract (DESIGN.md section 5): `{"file", "caption", "tokens", "latency_ms",
"timings"}`, tokens being the greedy token ids, so any run can be compared with a reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from edged.config.schema import CaptionerConfig
from edged.inference.protocol import ModelUnavailable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("caption", help="caption image files with GLM-Edge-V (or answer --prompt about them)")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument(
        "--prompt", default=None, help="instruction or question (default: the config's caption prompt)"
    )
    p.add_argument(
        "--model",
        type=Path,
        help="model bundle directory (default: the config's, or /var/lib/edged/models/glm-edge-v-2b)",
    )
    p.add_argument("--variant", default="", help="bundle variant (default: the manifest's)")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (0: all cores but one)")
    p.add_argument("-c", "--config", type=Path, help="take models.captioner from this config file")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> CaptionerConfig:
    from edged.config import load_config, parse_config

    config = load_config(str(args.config)) if args.config is not None else parse_config("{}")
    base = config.captioner
    changes: dict[str, object] = {}
    if args.model is not None:
        changes |= {"path": args.model, "backend": "onnx"}
    for key in ("variant", "max_new_tokens", "repetition_penalty", "threads"):
        value = getattr(args, key)
        if value not in (None, ""):
            changes[key] = value
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    from edged.inference.images import load_image
    from edged.inference.registry import load_captioner
    config = _config(args)
    try:
        captioner = load_captioner(config)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prompt = args.prompt or config.prompt
    status = 0
    for path in args.images:
        try:
            image = load_image(path)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        t0 = time.perf_counter()
        result = captioner.caption(image, prompt, max_new_tokens=config.max_new_tokens)
        latency = (time.perf_counter() - t0) * 1000.0
        if args.json:
            line = {
                "file": str(path),
                "caption": result.text,
                "tokens": list(result.tokens),
                "latency_ms": round(latency, 1),
                "timings": {k: round(v, 2) for k, v in result.timings.items()},
            }
            print(json.dumps(line, ensure_ascii=False), flush=True)
        else:
            print(f"{path}: {result.text}", flush=True)
    captioner.close()
    return status
