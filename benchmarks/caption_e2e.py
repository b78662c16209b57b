"""WIP spike (issue 15): one caption end to end, image file to last token, edged against llama.cpp.

Each runtime gets the same JPEG, the same thread count and about the same prompt length (the image's
578 rows plus text), and reports per stage: image decode, preprocessing, vision, prefill, time to
first token, decode, total. llama.cpp runs GLM-Edge-V through its multimodal library (mtmd) with the
vision tower written by `benchmarks.llama_mmproj` and the language model by `benchmarks.llama_ref`.

The llama.cpp language model GGUF has a placeholder vocabulary, so the text around the image is fed
as token ids and only the image goes through `mtmd_tokenize` (a prompt that is just the media marker).

Run (each runtime in its own process so RSS and caches are its own):
    python -m benchmarks.caption_e2e llama --image IMG --threads 2
    python -m benchmarks.caption_e2e edged --image IMG --threads 2 --variant int4
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path(".cache")
IMAGE_ROWS = 578


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _image_chunk(ctx: Any, bitmap: Any) -> tuple[Any, Any]:
    """mtmd's chunks for a prompt that is only the media marker (this runs the preprocessing)."""
    import llama_cpp.mtmd_cpp as mtmd

    chunks = mtmd.mtmd_input_chunks_init()
    marker = mtmd.mtmd_default_marker()
    text = mtmd.mtmd_input_text(marker, len(marker), False, True)
    rc = mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(text), (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap), 1)
    if rc != 0:
        raise RuntimeError(f"mtmd_tokenize failed ({rc})")
    for i in range(mtmd.mtmd_input_chunks_size(chunks)):
        chunk = mtmd.mtmd_input_chunks_get(chunks, i)
        if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
            return chunks, chunk
    raise RuntimeError("mtmd_tokenize gave no image chunk")


def _decode_image(ctx: Any, llm: Any, chunk: Any, embd: Any) -> int:
    """Prefill the encoded image rows after what `llm` holds; returns the new position."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    new_past = llama_cpp.llama_pos(0)
    no_callback = mtmd.mtmd_helper_post_decode_callback()
    rc = mtmd.mtmd_helper_decode_image_chunk(
        ctx, llm.ctx, chunk, embd, llm.n_tokens, 0, 512, ctypes.byref(new_past), no_callback, None
    )
    if rc != 0:
        raise RuntimeError(f"mtmd_helper_decode_image_chunk failed ({rc})")
    return int(new_past.value)


def _open_llama(args: argparse.Namespace) -> tuple[Any, Any]:
    """The Q4_0 language model and the mtmd context of the mmproj (both written on first use)."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    from benchmarks.llama_mmproj import write_mmproj
    from benchmarks.llama_ref import make_q4_0

    if not args.mmproj.is_file():
        write_mmproj(args.snapshot, args.mmproj)
    lm = make_q4_0(args.bundle, args.gguf, args.threads)
    llm = llama_cpp.Llama(
        str(lm),
        n_ctx=args.prompt_tokens + args.new_tokens + 16,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=512,
        n_ubatch=512,
        verbose=False,
    )
    params = mtmd.mtmd_context_params_default()
    params.use_gpu = False
    params.n_threads = args.threads
    params.print_timings = False
    params.warmup = True
    ctx = mtmd.mtmd_init_from_file(str(args.mmproj).encode(), llm.model, params)
    if not ctx:
        raise RuntimeError(f"mtmd could not load {args.mmproj}")
    return llm, ctx


def run_llama(args: argparse.Namespace) -> dict[str, Any]:
    """One caption through llama.cpp's mtmd: bitmap from file, tokenize (preprocess), encode, prefill, decode."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    t_load = time.perf_counter()
    llm, ctx = _open_llama(args)
    load_ms = _ms(t_load)
    text_tokens = args.prompt_tokens - IMAGE_ROWS
    rng = np.random.default_rng(0)
    ids = [int(t) for t in rng.integers(0, llm.n_vocab() - 64, text_tokens)]
    prefix, suffix = ids[:4], ids[4:]  # GLM-Edge-V's template puts the image after a few text tokens
    out: dict[str, Any] = {
        "runtime": f"llama.cpp mmproj {args.mmproj.name}",
        "load_ms": load_ms,
        "system_info": llama_cpp.llama_print_system_info().decode(),
    }

    t_start = t = time.perf_counter()
    bitmap = mtmd.mtmd_helper_bitmap_init_from_file(ctx, str(args.image).encode(), False)
    if not bitmap:
        raise RuntimeError(f"mtmd could not read {args.image}")
    out["decode_image_ms"] = _ms(t)
    t = time.perf_counter()
    chunks, image_chunk = _image_chunk(ctx, bitmap)
    out["image_tokens"] = mtmd.mtmd_input_chunk_get_n_tokens(image_chunk)
    out["preprocess_ms"] = _ms(t)
    t = time.perf_counter()
    if mtmd.mtmd_encode_chunk(ctx, image_chunk) != 0:
        raise RuntimeError("mtmd_encode_chunk failed")
    embd = mtmd.mtmd_get_output_embd(ctx)
    out["vision_ms"] = _ms(t)
    t = time.perf_counter()
    llm.eval(prefix)
    llm.n_tokens = _decode_image(ctx, llm, image_chunk, embd)
    llm.eval(suffix)
    vocab = llm.n_vocab()

    def greedy() -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))
        return int(np.argmax(logits))

    token = greedy()
    out["prefill_ms"] = _ms(t)
    out["prompt_tokens"] = llm.n_tokens
    out["ttft_ms"] = _ms(t_start)
    t = time.perf_counter()
    for _ in range(args.new_tokens - 1):
        llm.eval([token])
        token = greedy()
    out["decode_ms"] = _ms(t)
    out["decode_tok_s"] = (args.new_tokens - 1) / (out["decode_ms"] / 1000.0)
    out["total_ms"] = _ms(t_start)
    out["new_tokens"] = args.new_tokens
    mtmd.mtmd_input_chunks_free(chunks)
    mtmd.mtmd_bitmap_free(bitmap)
    mtmd.mtmd_free(ctx)
    llm.close()
    return out


def run_edged(args: argparse.Namespace) -> dict[str, Any]:
    """One caption through edged's captioner: cv2 decode of the same file, then `caption()`."""

    from benchmarks.caption import _load, _prompt_for

    ns = argparse.Namespace(bundle=args.bundle, threads=args.threads, new_tokens=args.new_tokens)
    t_load = time.perf_counter()
    cap = _load(ns, args.variant)
    load_ms = _ms(t_load)
    prompt = _prompt_for(cap, args.prompt_tokens)
    first: list[float] = []
    t_start = time.perf_counter()
    frame = _imread(args.image)
    decode_image_ms = _ms(t_start)
    res = cap.caption(
        frame,
        prompt,
        max_new_tokens=args.new_tokens,
        on_token=lambda _s: first.append(time.perf_counter()) if not first else None,
    )
    total_ms = _ms(t_start)
    t = dict(res.timings)
    return {
        "runtime": f"edged {args.variant}",
        "load_ms": load_ms,
        "decode_image_ms": decode_image_ms,
        **{k: t[k] for k in ("preprocess_ms", "vision_ms", "embed_ms", "prefill_ms", "decode_ms") if k in t},
        "prompt_tokens": t.get("prompt_tokens"),
        "ttft_ms": (first[0] - t_start) * 1000.0 if first else None,
        "decode_tok_s": t.get("decode_tok_s"),
        "total_ms": total_ms,
        "new_tokens": t.get("new_tokens"),
    }


def _imread(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"OpenCV could not read {path}")
    return np.asarray(image)


def check_mmproj(args: argparse.Namespace) -> dict[str, Any]:
    """Same 672x672 image (no resize, no pad) through mtmd and edged's fp32 vision: how close the rows are.

    A wrong tensor mapping in the mmproj gives unrelated rows (cosine near 0); F16 weights and
    llama.cpp's tanh GELU in the adapter (HF uses erf) leave a small gap.
    """
    import cv2
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    from benchmarks.caption import _load
    from edged.inference.preprocess import pixel_values

    square = args.image.with_name("e2e-check-672.png")
    cv2.imwrite(str(square), cv2.resize(_imread(args.image), (672, 672)))
    llm = llama_cpp.Llama(str(args.gguf), n_ctx=64, n_threads=args.threads, verbose=False)
    params = mtmd.mtmd_context_params_default()
    params.use_gpu, params.n_threads, params.warmup = False, args.threads, False
    ctx = mtmd.mtmd_init_from_file(str(args.mmproj).encode(), llm.model, params)
    bitmap = mtmd.mtmd_helper_bitmap_init_from_file(ctx, str(square).encode(), False)
    _chunks, chunk = _image_chunk(ctx, bitmap)
    n = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
    mtmd.mtmd_encode_chunk(ctx, chunk)
    embd = mtmd.mtmd_get_output_embd(ctx)
    ours = np.ctypeslib.as_array(embd, shape=(n * llm.n_embd(),)).reshape(n, -1).copy()
    ns = argparse.Namespace(bundle=args.bundle, threads=args.threads, new_tokens=1)
    cap = _load(ns, "fp32")
    ref = cap.image_rows(pixel_values(_imread(square), cap.manifest.preprocessing))
    ref = np.asarray(ref).reshape(n, -1)
    cos = np.sum(ours * ref, 1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    return {
        "rows": n,
        "cos_min": float(cos.min()),
        "cos_mean": float(cos.mean()),
        "cos_boi_eoi": [float(cos[0]), float(cos[-1])],
        "max_abs_diff": float(np.abs(ours - ref).max()),
        "ref_abs_max": float(np.abs(ref).max()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runtime", choices=("llama", "edged", "check"))
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=600)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--variant", default="int4")
    p.add_argument("--bundle", type=Path, default=CACHE / "glm-edge-v-2b-random")
    p.add_argument("--snapshot", type=Path, default=CACHE / "glm-edge-v-2b-random-snapshot")
    p.add_argument("--gguf", type=Path, default=CACHE / "glm-2b-random-q4_0.gguf")
    p.add_argument("--mmproj", type=Path, default=CACHE / "glm-2b-random-mmproj-f16.gguf")
    args = p.parse_args()
    run = {"llama": run_llama, "edged": run_edged, "check": check_mmproj}[args.runtime]
    out = run(args)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
