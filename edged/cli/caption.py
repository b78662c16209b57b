"""`edged caption IMAGE...`: caption image files with the configured model; one JSON line per image.

The JSON line is a contract (DESIGN.md section 5): `{"file", "caption", "tokens", "latency_ms",
"timings"}`, tokens being the greedy token ids, so any run can be compared with a reference.

With `--ask QUESTION` (repeatable) every question is answered yes/no from the model's next-token
probabilities, all on one encode of the image: `{"file", "answers": [{"question", "answer", "p_yes"}],
"latency_ms", "timings"}` (timings show `vision_passes`: 1), plus `caption` and `tokens` with
`--caption`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edged.config.schema import CaptionerConfig
from edged.inference.protocol import Captioner, Looker, ModelUnavailable

if TYPE_CHECKING:
    import numpy as np


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
    p.add_argument(
        "--ask",
        action="append",
        default=[],
        metavar="QUESTION",
        help="a yes/no question about each image (repeatable; all share one image encode)",
    )
    p.add_argument("--caption", action="store_true", help="with --ask: caption the image as well")
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
    from edged.inference.yesno import BadQuestion, validate_question

    for i, question in enumerate(args.ask, 1):  # a bad question is an error before the model loads
        try:
            validate_question(question)
        except BadQuestion as exc:
            print(f"error: question {i}: {exc}", file=sys.stderr)
            return 2
    config = _config(args)
    try:
        captioner = load_captioner(config)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.ask and not isinstance(captioner, Looker):
        print(f"error: the {config.backend} backend cannot answer questions", file=sys.stderr)
        return 2
    prompt = args.prompt or config.prompt
    status = 0
    try:
        for path in args.images:
            try:
                image = load_image(path)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                status = 1
                continue
            if args.ask:
                _ask(captioner, image, path, prompt, args, config.max_new_tokens)  # type: ignore[arg-type]
            else:
                _caption(captioner, image, path, prompt, args.json, config.max_new_tokens)
    except (BadQuestion, ModelUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 2
    finally:
        captioner.close()
    return status


def _caption(
    captioner: Captioner, image: np.ndarray, path: Path, prompt: str, as_json: bool, max_new_tokens: int
) -> None:
    t0 = time.perf_counter()
    result = captioner.caption(image, prompt, max_new_tokens=max_new_tokens)
    latency = (time.perf_counter() - t0) * 1000.0
    if as_json:
        line = {
            "file": str(path),
            "caption": result.text,
            "tokens": list(result.tokens),
            "latency_ms": round(latency, 1),
            "timings": _rounded(result.timings),
        }
        print(json.dumps(line, ensure_ascii=False), flush=True)
    else:
        print(f"{path}: {result.text}", flush=True)


def _ask(
    looker: Looker, image: np.ndarray, path: Path, prompt: str, args: argparse.Namespace, max_new_tokens: int
) -> None:
    """Every question (and the caption with --caption) on one encode of the image."""
    t0 = time.perf_counter()
    look = looker.look(image, [prompt] if args.caption else [], args.ask, max_new_tokens=max_new_tokens)
    latency = (time.perf_counter() - t0) * 1000.0
    answers = [{"question": a.question, "answer": a.answer, "p_yes": round(a.p_yes, 4)} for a in look.answers]
    if args.json:
        line: dict[str, Any] = {"file": str(path)}
        if look.texts:
            line |= {"caption": look.texts[0].text, "tokens": list(look.texts[0].tokens)}
        line |= {"answers": answers, "latency_ms": round(latency, 1), "timings": _rounded(look.timings)}
        print(json.dumps(line, ensure_ascii=False), flush=True)
        return
    if look.texts:
        print(f"{path}: {look.texts[0].text}", flush=True)
    for a in answers:
        print(f"{path}: {a['question']} {a['answer']} (p_yes {a['p_yes']:.2f})", flush=True)


def _rounded(timings: Any) -> dict[str, float]:
    return {k: round(v, 2) for k, v in timings.items()}
