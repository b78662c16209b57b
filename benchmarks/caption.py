"""Caption speed of GLM-Edge-V per bundle variant, next to llama.cpp on the same language-model shape.

Each variant runs in its own child process, so its peak RSS is its own: preprocessing, vision,
prefill of a ~600-token prompt (578 image rows plus text), greedy decode, decode tokens/s, and the
runtime's overhead (decode wall time minus time inside onnxruntime). llama.cpp runs in the same
benchmark when llama-cpp-python and gguf are installed; otherwise the anchors measured on this machine
kind are printed.

The look row (`--look-variant`) asks one caption plus `--questions` yes/no questions of one frame,
as a camera with watches does: once with prefix reuse (`look()`: one vision pass, one prefill of the
shared prefix, a short prefill per question) and once the naive way (the caption, then a full
`caption()` run per question: its own vision pass and whole prefill, one token), both against the
caption alone, all in one process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import child_env
from benchmarks.caption_e2e import add_e2e_arguments, run_e2e
from benchmarks.report import machine

# llama-cpp-python 0.3.36, Q4_0, 2 threads, same LM shape, 2-core development machine (spec section 9).
ANCHOR = {"prefill_tok_s": 76.5, "decode_tok_s": 21.6}
GOALS = (
    "decode >= 1.0x llama.cpp, prefill >= 1.0x, overhead <= 5%, int8 vision <= 0.5x fp32, "
    "int4 peak RSS <= 2.5 GB"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bundle",
        type=Path,
        default=Path(".cache/glm-edge-v-2b-random"),
        help="bundle with 2B shapes (edged models export --random-init --shape 2b, then quantize)",
    )
    p.add_argument("--variants", default="fp32,int8-vision,int4")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=600, help="prompt length including the image rows")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per variant; the best figure of each is kept "
        "(a shared machine's noise only ever slows a run down)",
    )
    p.add_argument("--llama", choices=("auto", "on", "off"), default="auto", help="run llama.cpp alongside")
    p.add_argument("--gguf", type=Path, default=Path(".cache/glm-2b-random-q4_0.gguf"))
    p.add_argument(
        "--look-variant",
        default="int4",
        help="variant for the caption + questions row ('' skips it; need not be in --variants)",
    )
    p.add_argument("--questions", type=int, default=4, help="yes/no questions in the look row")
    p.add_argument("--report", type=Path, help="write the figures as Markdown here")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    add_e2e_arguments(p)


def _prompt_for(captioner: Any, total: int) -> str:
    """A text prompt that brings the whole sequence (image rows included) to about `total` tokens."""
    base: str = captioner.manifest.prompt.default_prompt
    words = base.split()
    text = base
    while len(captioner.prompt_ids(text).ids) < total:
        text += " " + words[len(text) % len(words)]
    return text


QUESTIONS = (
    "Is there a package on the porch?",
    "Is the garage door open?",
    "Is a car parked in the driveway?",
    "Is someone standing at the door?",
    "Is it night?",
    "Is there a dog in the yard?",
)


def run_child(args: argparse.Namespace) -> int:
    """One variant, measured in this (fresh) process; prints one JSON line."""
    import numpy as np

    if args.child.startswith("look:"):
        return run_look_child(args, args.child.removeprefix("look:"))

    from edged.inference.glm_edge_v import peak_rss_mb

    t0 = time.perf_counter()
    cap = _load(args, args.child)
    load_s = time.perf_counter() - t0
    prompt = _prompt_for(cap, args.prompt_tokens)
    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    res = cap.caption(frame, prompt, max_new_tokens=args.new_tokens)
    t = dict(res.timings)
    out = {
        "variant": args.child,
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        **t,
        "prefill_tok_s": t["prompt_tokens"] / (t["prefill_ms"] / 1000.0),
        "overhead_pct": 100.0 * (t["decode_ms"] - t["ort_decode_ms"]) / t["decode_ms"],
    }
    print(json.dumps(out), flush=True)
    return 0


def run_look_child(args: argparse.Namespace, variant: str) -> int:
    """The caption alone, then caption + questions with prefix reuse, then without; one JSON line."""
    import numpy as np

    cap = _load(args, variant)
    prompt = _prompt_for(cap, args.prompt_tokens)
    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.questions)]
    rounds = [_look_round(cap, frame, prompt, questions, args.new_tokens) for _ in range(args.repeat)]
    out = {k: min(r[k] for r in rounds) if k.endswith("_ms") else rounds[-1][k] for k in rounds[0]}
    out |= {
        "variant": variant,
        "rounds": len(rounds),
        "look_x": out["look_ms"] / out["caption_ms"],
        "naive_x": out["naive_ms"] / out["caption_ms"],
        "same_caption": all(r["same_caption"] for r in rounds),
    }
    print(json.dumps(out), flush=True)
    return 0


def _look_round(cap: Any, frame: Any, prompt: str, questions: list[str], new_tokens: int) -> dict[str, Any]:
    """One round: the caption alone, the look, the naive runs (each figure's best is kept over rounds)."""
    from edged.inference.yesno import question_prompt

    t0 = time.perf_counter()
    alone = cap.caption(frame, prompt, max_new_tokens=new_tokens)
    t1 = time.perf_counter()
    look = cap.look(frame, [prompt], questions, max_new_tokens=new_tokens)
    t2 = time.perf_counter()
    naive = [cap.caption(frame, question_prompt(q), max_new_tokens=1) for q in questions]
    t3 = time.perf_counter()
    return {
        "questions": len(questions),
        "caption_ms": (t1 - t0) * 1000,
        "look_ms": (t2 - t1) * 1000,
        "naive_ms": (t1 - t0 + t3 - t2) * 1000,
        "same_caption": look.texts[0].tokens == alone.tokens,
        "new_tokens": len(alone.tokens),
        "prompt_tokens": alone.timings["prompt_tokens"],
        "naive_question_ms": sum(r.timings["total_ms"] for r in naive) / len(naive),
        **{f"look_{k}": v for k, v in look.timings.items()},
        **{f"caption_{k}": alone.timings[k] for k in ("vision_ms", "prefill_ms", "decode_ms")},
        "p_yes": [a.p_yes for a in look.answers],
    }


def _load(args: argparse.Namespace, variant: str) -> Any:
    from edged.config.schema import CaptionerConfig
    from edged.inference.glm_edge_v import GlmEdgeVCaptioner
    from edged.inference.manifest import Generation

    cfg = CaptionerConfig(
        path=args.bundle,
        variant=variant,
        threads=args.threads,
        repetition_penalty=1.0,
        max_new_tokens=args.new_tokens,
        optimized_cache=False,
    )
    cap = GlmEdgeVCaptioner(cfg)
    # Random weights can hit an end-of-text id early; the benchmark always decodes the full count.
    cap.manifest = dataclasses.replace(cap.manifest, generation=Generation(stop_ids=()))
    return cap


def _child(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks",
        "caption",
        "--child",
        variant,
        "--bundle",
        str(args.bundle),
        "--threads",
        str(args.threads),
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--new-tokens",
        str(args.new_tokens),
        "--questions",
        str(args.questions),
        "--repeat",
        str(args.repeat),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env())
    if proc.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the best of several runs: lowest times, highest rates, highest RSS (a ceiling)."""
    out = dict(runs[0])
    for key in out:
        values = [r[key] for r in runs]
        if key.endswith("_ms") or key == "overhead_pct":
            out[key] = min(values)
        elif key.endswith("_tok_s") or key == "peak_rss_mb":
            out[key] = max(values)
    return out


def _llama_once(args: argparse.Namespace) -> dict[str, Any] | None:
    """One llama.cpp run, or None when it is off or not installed (`--llama on` makes that an error)."""
    if args.llama == "off":
        return None
    try:
        from benchmarks.llama_ref import run_llama

        return run_llama(args.bundle, args.gguf, args.threads, args.prompt_tokens, args.new_tokens)
    except ImportError as exc:
        if args.llama == "on":
            raise
        print(f"[caption bench] llama.cpp skipped: {exc}", file=sys.stderr)
        args.llama = "off"
        return None


def _progress(name: str, r: dict[str, Any]) -> None:
    vision = f"vision {r['vision_ms']:.0f} ms, " if "vision_ms" in r else ""
    rss = f", RSS {r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else ""
    print(
        f"[caption bench] {name}: {vision}prefill {r['prefill_tok_s']:.1f} tok/s, "
        f"decode {r['decode_tok_s']:.1f} tok/s{rss}",
        file=sys.stderr,
        flush=True,
    )


def report(args: argparse.Namespace, rows: list[dict[str, Any]], llama: dict[str, Any] | None) -> str:
    ref = llama or ANCHOR
    src = "llama.cpp Q4_0, same run" if llama else "llama.cpp Q4_0 anchor (spec section 9, not this run)"
    lines = [
        "# Benchmark: python -m benchmarks caption",
        "",
        f"- command: `python -m benchmarks caption --bundle {args.bundle} --threads {args.threads} "
        f"--prompt-tokens {args.prompt_tokens} --new-tokens {args.new_tokens} --repeat {args.repeat}` "
        f"(best of {args.repeat} per figure)",
        f"- machine: {machine()} ({args.threads} threads)",
        f"- date: {time.strftime('%Y-%m-%d')}",
        f"- baseline: {src}: prefill {ref['prefill_tok_s']:.1f} tok/s, "
        f"decode {ref['decode_tok_s']:.1f} tok/s",
        f"- goals: {GOALS}",
        "",
        "| variant | preprocess ms | vision ms | prefill ms (tok) | prefill tok/s (x llama) | decode tok/s "
        "(x llama) | overhead % of decode | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pre, dec = r["prefill_tok_s"], r["decode_tok_s"]
        lines.append(
            f"| {r['variant']} | {r['preprocess_ms']:.1f} | {r['vision_ms']:.0f} | {r['prefill_ms']:.0f} "
            f"({r['prompt_tokens']:.0f}) | {pre:.1f} ({pre / ref['prefill_tok_s']:.2f}x) "
            f"| {dec:.1f} ({dec / ref['decode_tok_s']:.2f}x) | {r['overhead_pct']:.1f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    by = {r["variant"]: r for r in rows}
    if "fp32" in by and "int8-vision" in by:
        ratio = by["int8-vision"]["vision_ms"] / by["fp32"]["vision_ms"]
        lines += ["", f"int8 vision / fp32 vision time: {ratio:.2f}x"]
    if llama:
        lines += [
            "",
            f"llama.cpp (same run): prefill {llama['prefill_tok_s']:.1f} tok/s over "
            f"{llama['prompt_tokens']} tokens, decode {llama['decode_tok_s']:.1f} tok/s, "
            f"model {llama['model_mb']:.0f} MB",
        ]
    return "\n".join(lines) + "\n"


def look_report(args: argparse.Namespace, r: dict[str, Any]) -> str:
    """The caption + questions row: prefix reuse and the naive way, each over the caption alone."""
    n = r["questions"]
    return "\n".join(
        [
            "",
            f"### One caption and {n} yes/no questions on one frame ({r['variant']}, same process)",
            "",
            f"- command: `python -m benchmarks caption --bundle {args.bundle} --variants {args.variants!r} "
            f"--look-variant {args.look_variant} --questions {n} --threads {args.threads} "
            f"--prompt-tokens {args.prompt_tokens} --new-tokens {args.new_tokens} --repeat {args.repeat} "
            f"--llama {args.llama}`",
            f"- machine: {machine()} ({args.threads} threads); date: {time.strftime('%Y-%m-%d')}",
            f"- goal: caption + {n} questions <= 1.3x the caption alone (the naive way about {n + 1}x)",
            f"- caption: {r['prompt_tokens']:.0f} prompt positions, {r['new_tokens']} new tokens; "
            f"{r['rounds']} round(s) of caption, look, naive in turn, the best of each figure kept",
            "",
            "| run | wall ms | x caption | vision passes |",
            "|---|---|---|---|",
            f"| caption alone | {r['caption_ms']:.0f} | 1.00 | 1 |",
            f"| caption + {n} questions, prefix reuse (`look`) | {r['look_ms']:.0f} | {r['look_x']:.2f} "
            f"| {r['look_vision_passes']:.0f} |",
            f"| caption + {n} questions, a caption() run each | {r['naive_ms']:.0f} | {r['naive_x']:.2f} "
            f"| {n + 1} |",
            "",
            f"In the look: vision {r['look_vision_ms']:.0f} ms, shared prefix {r['look_shared_tokens']:.0f} "
            f"positions prefilled once in {r['look_shared_prefill_ms']:.0f} ms, the {n} questions "
            f"{r['look_questions_ms']:.0f} ms together ({r['look_questions_ms'] / n:.0f} ms each, against "
            f"{r['naive_question_ms']:.0f} ms for a caption() run per question), the caption's own "
            f"prefill and decode {r['look_prompts_ms']:.0f} ms. The caption alone: vision "
            f"{r['caption_vision_ms']:.0f} ms, prefill {r['caption_prefill_ms']:.0f} ms, decode "
            f"{r['caption_decode_ms']:.0f} ms. Caption tokens identical to caption(): {r['same_caption']}.",
        ]
    ) + "\n"


def run(args: argparse.Namespace) -> int:
    if args.child:
        return run_child(args)
    if not (args.bundle / "manifest.json").is_file():
        print(
            f"error: {args.bundle} is not a bundle; make one with `edged models export --random-init "
            f"--shape 2b --out {args.bundle}` and `edged models quantize {args.bundle}`",
            file=sys.stderr,
        )
        return 2
    if args.e2e:
        return run_e2e(args)
    variants = [v for v in args.variants.split(",") if v]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    llama_runs: list[dict[str, Any]] = []
    # Rounds interleave the variants and llama.cpp, so on a shared machine both see the same load.
    for round_ in range(args.repeat):
        for variant in variants:
            print(f"[caption bench] round {round_ + 1}: {variant} ...", file=sys.stderr, flush=True)
            runs[variant].append(_child(args, variant))
            _progress(variant, runs[variant][-1])
        one = _llama_once(args)
        if one is not None:
            llama_runs.append(one)
            _progress("llama.cpp", one)
    rows = [best(runs[v]) for v in variants]
    text = report(args, rows, best(llama_runs) if llama_runs else None) if variants else ""
    if args.look_variant:
        print(f"[caption bench] look: {args.look_variant} ...", file=sys.stderr, flush=True)
        text += look_report(args, _child(args, f"look:{args.look_variant}"))
    print(text)
    if args.report:
        args.report.write_text(text, encoding="utf-8")
    return 0
