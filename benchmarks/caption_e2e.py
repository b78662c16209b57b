"""One caption end to end, image file to last token: edged against llama.cpp's multimodal path.

`python -m benchmarks caption --e2e` runs, round after round so both see the same machine load, in
fresh child processes: edged's captioner on each `--variants` bundle variant, the vision encoder alone
in fp32 and int8 (in turn, in one process), and llama.cpp's multimodal library (mtmd) on the same 2B
shape: the snapshot's vision tower written as an `mmproj` GGUF (`benchmarks.llama_mmproj`, projector
`GLM_EDGE`) and its language model as a Q4_0 GGUF (`benchmarks.llama_ref`). A second llama.cpp build
restricted to AVX2 runs too when `--llama-avx2 DIR` names it, and edged's rows run again on a copy
of onnxruntime restricted to its AVX2 kernels with `--ort-avx2 DIR` (`benchmarks.ort_avx2`). Every
runtime gets the same JPEG, thread count and about the same prompt length (578 image rows plus text)
and reports per stage: image decode, preprocessing, vision, prefill, time to the first token, decode,
total. The best figure of each over the rounds is kept.

The llama.cpp language model has a placeholder vocabulary, so the text around the image goes in as
token ids and only the image passes through `mtmd_tokenize` (a prompt that is just the media marker).
A fidelity check runs the same 672x672 image through both vision towers and compares the rows, so the
two runtimes are known to compute the same thing.

Children: `python -m benchmarks.caption_e2e {edged,vision,llama,check} --image IMG ...` (one JSON line).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO, child_env
from benchmarks.report import cpu_flags, machine, pyplot, today

CACHE = Path(".cache")
IMAGE_ROWS = 578
SAMPLE_VIDEO = REPO / "samples" / "porch.mp4"
E2E_GOALS = (
    "end-to-end caption <= 0.8x llama.cpp's; int8 vision <= 0.5x fp32 and <= llama.cpp's vision tower; "
    "decode >= 1.0x llama.cpp Q4_0; same run, 2 threads"
)


@dataclass(frozen=True)
class KernelSet:
    """The rows measured with one set of kernels: edged's labels carry `suffix`, `llama` is their baseline."""

    name: str
    suffix: str
    llama: str
    native: bool


KERNEL_SETS = (
    KernelSet("this CPU's kernels", "", "llama.cpp", True),
    KernelSet("AVX2 kernels only", ", AVX2 kernels", "llama.cpp AVX2 build", False),
)
STAGES = ("decode_image_ms", "preprocess_ms", "vision_ms", "prefill_ms", "decode_ms")


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


# --- children: one runtime, one caption, one JSON line -------------------------------------------------


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


def _mtmd_context(mmproj: Path, llm: Any, threads: int, warmup: bool) -> Any:
    import llama_cpp.mtmd_cpp as mtmd

    params = mtmd.mtmd_context_params_default()
    params.use_gpu = False
    params.n_threads = threads
    params.print_timings = False
    params.warmup = warmup
    ctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), llm.model, params)
    if not ctx:
        raise RuntimeError(f"llama.cpp's mtmd could not load {mmproj}")
    return ctx


def _open_llama(args: argparse.Namespace) -> tuple[Any, Any]:
    """The Q4_0 language model and the mtmd context of the mmproj (both written on first use), warm."""
    import llama_cpp

    from benchmarks.llama_mmproj import write_mmproj
    from benchmarks.llama_ref import make_q4_0, snapshot_of

    if not args.mmproj.is_file():
        write_mmproj(snapshot_of(args.bundle), args.mmproj)
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
    llm.eval([1, 2])  # edged's captioner warms up at load; llama.cpp's own CLIs do too
    llm.n_tokens = 0  # the next eval overwrites the warm-up positions
    return llm, _mtmd_context(args.mmproj, llm, args.threads, warmup=True)


def run_llama(args: argparse.Namespace) -> dict[str, Any]:
    """One caption through llama.cpp's mtmd: bitmap from file, tokenize (preprocess), encode, prefill, decode."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    llm, ctx = _open_llama(args)
    rng = np.random.default_rng(0)
    ids = [int(t) for t in rng.integers(0, llm.n_vocab() - 64, args.prompt_tokens - IMAGE_ROWS)]
    prefix, suffix = ids[:4], ids[4:]  # GLM-Edge-V's template puts the image after a few text tokens
    info = llama_cpp.llama_print_system_info().decode()
    out: dict[str, Any] = {"runtime": "llama.cpp", "isa": _llama_isa(info), "system_info": info}

    t_start = t = time.perf_counter()
    bitmap = mtmd.mtmd_helper_bitmap_init_from_file(ctx, str(args.image).encode(), False)
    if not bitmap:
        raise RuntimeError(f"llama.cpp's mtmd could not read {args.image}")
    out["decode_image_ms"] = _ms(t)
    t = time.perf_counter()
    chunks, image_chunk = _image_chunk(ctx, bitmap)
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
    mtmd.mtmd_input_chunks_free(chunks)
    mtmd.mtmd_bitmap_free(bitmap)
    mtmd.mtmd_free(ctx)
    llm.close()
    return out


def run_edged(args: argparse.Namespace) -> dict[str, Any]:
    """One caption through edged's captioner (loaded and warmed up): cv2 decode of the file, `caption()`."""
    from benchmarks.caption import _load, _prompt_for

    cap = _load(_bundle_args(args), args.variant)
    prompt = _prompt_for(cap, args.prompt_tokens)
    t_start = time.perf_counter()
    frame = imread(args.image)
    decode_image_ms = _ms(t_start)
    res = cap.caption(frame, prompt, max_new_tokens=args.new_tokens)
    total_ms = _ms(t_start)
    t = dict(res.timings)
    prefill_ms = t.get("embed_ms", 0.0) + t["prefill_ms"]  # splicing the rows in is part of the prefill
    return {
        "runtime": f"edged {args.variant}",
        "isa": onnxruntime_isa(),
        "decode_image_ms": decode_image_ms,
        "preprocess_ms": t["preprocess_ms"],
        "vision_ms": t["vision_ms"],
        "prefill_ms": prefill_ms,
        "prompt_tokens": t["prompt_tokens"],
        # the first token is the argmax of the prefill's logits, picked at the start of the decode
        "ttft_ms": decode_image_ms + t["preprocess_ms"] + t["vision_ms"] + prefill_ms,
        "decode_ms": t["decode_ms"],
        "decode_tok_s": t["decode_tok_s"],
        "total_ms": total_ms,
    }


def run_vision(args: argparse.Namespace) -> dict[str, Any]:
    """The fp32 and int8 vision encoders alone on the preprocessed image, run in turn in one process.

    Each is warmed up once, then they alternate `--vision-pairs` times: a burst of load from elsewhere on
    a shared machine then hits both of a pair, and the median of the pairs' ratios shows what the best
    of each alone would hide.
    """
    from edged.config.schema import CaptionerConfig
    from edged.inference.manifest import load_manifest
    from edged.inference.preprocess import pixel_values
    from edged.inference.sessions import open_session

    defaults = CaptionerConfig(path=args.bundle)
    manifest = load_manifest(args.bundle)
    pixels = pixel_values(imread(args.image), manifest.preprocessing)
    sessions = {}
    for variant in ("fp32", "int8-vision"):
        name = manifest.variant(variant).vision
        sessions[variant] = open_session(args.bundle / name, manifest.files[name].sha256, threads=args.threads,
                                         providers=defaults.providers, level=defaults.graph_optimization,
                                         cache_dir=None)
        sessions[variant].run(None, {"pixel_values": pixels})
    times: dict[str, list[float]] = {v: [] for v in sessions}
    cpu: dict[str, list[float]] = {v: [] for v in sessions}
    for _ in range(args.vision_pairs):
        for variant, session in sessions.items():
            t, c = time.perf_counter(), time.process_time()
            session.run(None, {"pixel_values": pixels})
            times[variant].append(_ms(t))
            cpu[variant].append((time.process_time() - c) * 1000.0)
    ratios = [i8 / f32 for f32, i8 in zip(times["fp32"], times["int8-vision"], strict=True)]
    # CPU time of all threads: the work itself, which other processes' load changes far less than wall time
    cpu_ratios = [i8 / f32 for f32, i8 in zip(cpu["fp32"], cpu["int8-vision"], strict=True)]
    return {"runtime": "edged vision", "isa": onnxruntime_isa(), "fp32_ms": times["fp32"],
            "int8_ms": times["int8-vision"], "int8_over_fp32": ratios, "cpu_int8_over_fp32": cpu_ratios}


def check_mmproj(args: argparse.Namespace) -> dict[str, Any]:
    """Same 672x672 image (no resize, no pad) through mtmd and edged's fp32 vision: how close the rows are.

    A wrong tensor mapping in the mmproj gives unrelated rows (cosine near 0); F16 weights and
    llama.cpp's tanh GELU in the adapter (the reference uses erf) leave a small gap.
    """
    import cv2
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    from benchmarks.caption import _load
    from edged.inference.preprocess import pixel_values

    square = args.image.with_name(args.image.stem + "-672.png")
    cv2.imwrite(str(square), cv2.resize(imread(args.image), (672, 672), interpolation=cv2.INTER_AREA))
    llm = llama_cpp.Llama(str(args.gguf), n_ctx=64, n_threads=args.threads, verbose=False)
    ctx = _mtmd_context(args.mmproj, llm, args.threads, warmup=False)
    bitmap = mtmd.mtmd_helper_bitmap_init_from_file(ctx, str(square).encode(), False)
    _chunks, chunk = _image_chunk(ctx, bitmap)
    n = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
    if mtmd.mtmd_encode_chunk(ctx, chunk) != 0:
        raise RuntimeError("mtmd_encode_chunk failed")
    embd = mtmd.mtmd_get_output_embd(ctx)
    theirs = np.ctypeslib.as_array(embd, shape=(n * llm.n_embd(),)).reshape(n, -1).copy()
    cap = _load(_bundle_args(args, new_tokens=1), "fp32")
    ours = np.asarray(cap.image_rows(pixel_values(imread(square), cap.manifest.preprocessing))).reshape(n, -1)
    cos = np.sum(theirs * ours, 1) / (np.linalg.norm(theirs, axis=1) * np.linalg.norm(ours, axis=1))
    return {
        "rows": n,
        "cos_min": float(cos.min()),
        "cos_mean": float(cos.mean()),
        "max_abs_diff": float(np.abs(theirs - ours).max()),
        "ref_abs_max": float(np.abs(ours).max()),
    }


def _bundle_args(args: argparse.Namespace, new_tokens: int | None = None) -> argparse.Namespace:
    return argparse.Namespace(bundle=args.bundle, threads=args.threads, new_tokens=new_tokens or args.new_tokens)


def imread(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"OpenCV could not read {path}")
    return np.asarray(image)


# --- instruction sets ---------------------------------------------------------------------------------


def _llama_isa(system_info: str) -> str:
    """The SIMD features llama.cpp's CPU backend says it was built with (`llama_print_system_info`)."""
    keys = ("AVX512_VNNI", "AVX512_BF16", "AVX512", "AVX_VNNI", "AVX2", "FMA", "F16C", "NEON", "DOTPROD", "SVE")
    on = {part.split("=")[0].strip() for part in system_info.split("|") if part.strip().endswith("= 1")}
    return " ".join(k for k in keys if k in on) or "generic"


def onnxruntime_isa() -> str:
    """The kernels onnxruntime's MLAS picks on this CPU (it chooses by cpuid at start and has no switch).

    onnxruntime does not print its choice; this applies MLAS's order to the CPU's own flags: int8 GEMM
    on AVX-512 VNNI, else AVX-VNNI, else AVX-512 BW, else AVX2; fp32 GEMM on AVX-512 F, else FMA3/AVX2.
    The copy `benchmarks.ort_avx2` writes takes the AVX2 branches on any CPU.
    """
    from benchmarks.ort_avx2 import restricted_to_avx2

    if restricted_to_avx2():
        return "int8 AVX2, fp32 AVX2 FMA (copy without AVX-512/AVX-VNNI)"
    flags = set(cpu_flags().removeprefix("SIMD: ").split())
    if "asimd" in flags:
        return "NEON" + (" + dot product" if "asimddp" in flags else "") + (" + i8mm" if "i8mm" in flags else "")
    int8 = next((name for flag, name in (("avx512_vnni", "AVX512_VNNI"), ("avx_vnni", "AVX_VNNI"),
                                          ("avx512f", "AVX512"), ("avx2", "AVX2")) if flag in flags), "SSE")
    fp32 = "AVX512" if "avx512f" in flags else "AVX2 FMA" if "avx2" in flags else "SSE"
    return f"int8 {int8}, fp32 {fp32}"


def child_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runtime", choices=("llama", "edged", "vision", "check"))
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=600)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--variant", default="int4")
    p.add_argument("--vision-pairs", type=int, default=3)
    p.add_argument("--bundle", type=Path, default=CACHE / "glm-edge-v-2b-random")
    p.add_argument("--gguf", type=Path, default=CACHE / "glm-2b-random-q4_0.gguf")
    p.add_argument("--mmproj", type=Path, default=CACHE / "glm-2b-random-mmproj-f16.gguf")
    args = p.parse_args(argv)
    from edged.logs import configure_logging

    configure_logging("warning", "console")
    run = {"llama": run_llama, "edged": run_edged, "vision": run_vision, "check": check_mmproj}[args.runtime]
    print(json.dumps(run(args)), flush=True)
    return 0


# --- the parent: rounds, best figures, report, plot ----------------------------------------------------


def add_e2e_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--e2e", action="store_true", help="whole captions, image file to last token, per stage")
    p.add_argument("--image", type=Path, help="the image for --e2e (default: a frame of samples/porch.mp4)")
    p.add_argument("--mmproj", type=Path, default=CACHE / "glm-2b-random-mmproj-f16.gguf",
                   help="llama.cpp vision tower GGUF for --e2e (written from the bundle's snapshot if missing)")
    p.add_argument("--llama-avx2", type=Path, metavar="DIR",
                   help="a llama-cpp-python built without AVX-512 (pip --target DIR), run as a second llama.cpp")
    p.add_argument("--ort-avx2", type=Path, metavar="DIR",
                   help="onnxruntime restricted to its AVX2 kernels (`python -m benchmarks ort-avx2`): edged's "
                   "rows again with it, against --llama-avx2")
    p.add_argument("--vision-pairs", type=int, default=3, metavar="N",
                   help="fp32/int8 vision encoder pairs per round (0: no vision-alone runs, captions only)")
    p.add_argument("--plot", type=Path, help="write where a caption's time goes as a PNG here")


def sample_image(out: Path) -> Path:
    """A frame of the bundled sample video as JPEG, so the benchmark needs no media of its own."""
    import cv2

    if out.is_file():
        return out
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 60)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise FileNotFoundError(f"could not read a frame of {SAMPLE_VIDEO}")
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def _spawn(args: argparse.Namespace, runtime: str, variant: str = "", extra_path: Path | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.caption_e2e", runtime, "--image", str(args.image),
           "--threads", str(args.threads), "--prompt-tokens", str(args.prompt_tokens),
           "--new-tokens", str(args.new_tokens), "--bundle", str(args.bundle), "--gguf", str(args.gguf),
           "--mmproj", str(args.mmproj), "--vision-pairs", str(args.vision_pairs)]
    cmd += ["--variant", variant] if variant else []
    # an AVX2 build (extra_path) shadows the installed llama_cpp or onnxruntime
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env(extra_path))
    if proc.returncode != 0:
        raise RuntimeError(f"{runtime} {variant} failed:\n{proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _has_llama(args: argparse.Namespace) -> bool:
    if args.llama == "off":
        return False
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        if args.llama == "on":
            raise
        print(f"[caption e2e] llama.cpp rows skipped: {exc} (pip install -e '.[bench]')", file=sys.stderr)
        return False
    return True


def _jobs(args: argparse.Namespace) -> list[tuple[str, str, str, Path | None]]:
    """(row label, child runtime, variant, extra PYTHONPATH) for one round."""
    jobs: list[tuple[str, str, str, Path | None]] = []
    llama = _has_llama(args)
    for kernels in KERNEL_SETS:
        ort, llama_cpp = (None, None) if kernels.native else (args.ort_avx2, args.llama_avx2)
        if kernels.native or ort:
            jobs += [(f"edged {v}{kernels.suffix}", "edged", v, ort) for v in args.variants.split(",") if v]
            if args.vision_pairs > 0:
                jobs.append((f"edged vision{kernels.suffix}", "vision", "", ort))
        if llama and (kernels.native or llama_cpp):
            jobs.append((kernels.llama, "llama", "", llama_cpp))
    return jobs


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the best run (as in the variant table), samples pooled, totals from the best stages."""
    from benchmarks.caption import best

    out = best(runs)
    for key, first in runs[0].items():
        if isinstance(first, list):
            out[key] = [x for r in runs for x in r[key]]
    if "total_ms" in out:
        # best stages from different rounds add up to the caption a quiet machine gives; a best total
        # alone would mix a lucky round of one runtime with an unlucky one of the other
        out["ttft_ms"] = sum(out[k] for k in STAGES[:-1])
        out["total_ms"] = out["ttft_ms"] + out["decode_ms"]
        out["round_totals_ms"] = [r["total_ms"] for r in runs]
        out["round_decode_tok_s"] = [r["decode_tok_s"] for r in runs]
    out["rounds"] = len(runs)
    return out


def _progress_line(r: dict[str, Any]) -> str:
    if "int8_over_fp32" in r:
        wall = ", ".join(f"{x:.2f}" for x in r["int8_over_fp32"])
        return f"int8 / fp32 per pair {wall} (CPU time {', '.join(f'{x:.2f}' for x in r['cpu_int8_over_fp32'])})"
    return ", ".join(f"{k.removesuffix('_ms')} {r[k]:.0f} ms" for k in (*STAGES, "total_ms"))


def run_e2e(args: argparse.Namespace) -> int:
    args.image = args.image or sample_image(CACHE / "porch-frame.jpg")
    if args.ort_avx2:
        from benchmarks.ort_avx2 import write_copy

        write_copy(args.ort_avx2)
    jobs = _jobs(args)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in jobs}
    for round_ in range(args.repeat):
        for label, runtime, variant, extra in jobs:
            print(f"[caption e2e] round {round_ + 1}/{args.repeat}: {label} ...", file=sys.stderr, flush=True)
            runs[label].append(_spawn(args, runtime, variant, extra))
            print(f"[caption e2e]   {_progress_line(runs[label][-1])}", file=sys.stderr, flush=True)
    rows = {label: best_of(r) for label, r in runs.items()}
    check = _spawn(args, "check") if "llama.cpp" in rows else None
    text = e2e_report(args, rows, check)
    print(text)
    if args.report:
        args.report.write_text(text, encoding="utf-8")
        raw = {"runs": runs, "check": check}  # every round's figures, for a second look at the noise
        args.report.with_suffix(".json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    if args.plot:
        plot_stages(rows, args.plot)
    return 0


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def _kernel_set(label: str) -> KernelSet:
    return next((k for k in KERNEL_SETS[1:] if label.endswith(k.suffix) or label == k.llama), KERNEL_SETS[0])


def _header(args: argparse.Namespace) -> list[str]:
    return [
        "- command: `python -m benchmarks caption --e2e "
        + (f"--image {args.image} " if args.image.name != "porch-frame.jpg" else "")
        + f"--variants {args.variants} --threads {args.threads} --prompt-tokens {args.prompt_tokens} "
        f"--new-tokens {args.new_tokens} --repeat {args.repeat}"
        + (f" --vision-pairs {args.vision_pairs}" if args.vision_pairs != 3 else "")
        + (f" --llama-avx2 {args.llama_avx2}" if args.llama_avx2 else "")
        + (f" --ort-avx2 {args.ort_avx2}" if args.ort_avx2 else "") + "`",
        f"- machine: {machine()}; {cpu_flags()}; date {today()}",
        f"- {args.repeat} round(s), each runtime in a fresh process per round, in turn; per stage the best "
        "round is kept, and first token and total are the sums of those stages",
        f"- image: {args.image.name} ({'x'.join(str(d) for d in imread(args.image).shape[1::-1])})",
        f"- goals: {E2E_GOALS}",
    ]


def _caption_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| runtime | kernels | image decode ms | preprocess ms | vision ms | prefill ms (positions) | "
        "first token ms | decode tok/s | total ms | total x llama.cpp (same kernels) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        if "total_ms" not in r:
            continue
        llama = rows.get(_kernel_set(label).llama)
        lines.append(
            f"| {label} | {r['isa']} | {r['decode_image_ms']:.0f} | {r['preprocess_ms']:.0f} | {r['vision_ms']:.0f} "
            f"| {r['prefill_ms']:.0f} ({r['prompt_tokens']:.0f}) | {r['ttft_ms']:.0f} | {r['decode_tok_s']:.1f} "
            f"| {r['total_ms']:.0f} | {_ratio(r['total_ms'], llama['total_ms'] if llama else None)} |"
        )
    return lines


def _median(xs: list[float]) -> float:
    return float(np.median(xs))


def _vision_summary(k: KernelSet, vision: dict[str, Any], llama: dict[str, Any] | None) -> tuple[str, dict[str, float]]:
    fp32, int8, ratios = min(vision["fp32_ms"]), min(vision["int8_ms"]), sorted(vision["int8_over_fp32"])
    cpu = sorted(vision["cpu_int8_over_fp32"])
    figures = {"int8_over_fp32": _median(ratios)}
    if llama:
        figures["vision_over_llama"] = int8 / llama["vision_ms"]
    title = k.name[0].upper() + k.name[1:]
    line = (f"{title}: vision encoder alone, fp32 and int8 in turn in one process ({len(ratios)} pairs): best fp32 "
            f"{fp32:.0f} ms, best int8 {int8:.0f} ms; int8 / fp32 per pair: median **{_median(ratios):.2f}x** "
            f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}); in CPU time (all threads, less disturbed by other processes) "
            f"median **{_median(cpu):.2f}x** (range {cpu[0]:.2f}-{cpu[-1]:.2f})"
            + (f"; best int8 / {k.llama}'s tower **{int8 / llama['vision_ms']:.2f}x**" if llama else "") + ".")
    return line, figures


def _paired(edged: dict[str, Any], llama: dict[str, Any], key: str) -> str:
    """Round-by-round ratios of one figure: the runtimes ran in turn, so each pair saw about the same load."""
    ratios = sorted(e / q for e, q in zip(edged[key], llama[key], strict=True))
    return f"round by round median {_median(ratios):.2f}x, range {ratios[0]:.2f}-{ratios[-1]:.2f}"


def _kernel_set_summary(k: KernelSet, rows: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, float]]:
    """The vision and edged-against-llama.cpp lines for one kernel set, and the figures its goals use."""
    llama, lines = rows.get(k.llama), []
    figures: dict[str, float] = {}
    if (vision := rows.get(f"edged vision{k.suffix}")) is not None:
        line, figures = _vision_summary(k, vision, llama)
        lines.append(line)
    edged = next((r for label, r in rows.items() if label.startswith("edged") and "total_ms" in r
                  and _kernel_set(label) == k), None)
    if llama and edged:
        figures["total"] = edged["total_ms"] / llama["total_ms"]
        figures["decode"] = edged["decode_tok_s"] / llama["decode_tok_s"]
        lines.append(
            f"{edged['runtime']} ({k.name}) against {k.llama}: total "
            f"**{_ratio(edged['total_ms'], llama['total_ms'])}** ({_paired(edged, llama, 'round_totals_ms')}), "
            f"first token {_ratio(edged['ttft_ms'], llama['ttft_ms'])}, "
            f"vision {_ratio(edged['vision_ms'], llama['vision_ms'])}, "
            f"prefill {_ratio(edged['prefill_ms'], llama['prefill_ms'])}, "
            f"decode speed **{_ratio(edged['decode_tok_s'], llama['decode_tok_s'])}** "
            f"({_paired(edged, llama, 'round_decode_tok_s')})."
        )
    return lines, figures


GOALS = (  # (figure, the goal in words, limit, True where the figure must stay at or under it)
    ("total", "end-to-end caption <= 0.8x llama.cpp's", 0.8, True),
    ("int8_over_fp32", "int8 vision encoder <= 0.5x fp32 (median of pairs)", 0.5, True),
    ("vision_over_llama", "int8 vision at least as fast as llama.cpp's tower", 1.0, True),
    ("decode", "decode >= 1.0x llama.cpp Q4_0", 1.0, False),
)


def _goal_table(figures: dict[str, dict[str, float]]) -> list[str]:
    names = list(figures)
    lines = ["| goal | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, words, limit, at_most in GOALS:
        cells = []
        for name in names:
            value = figures[name].get(key)
            met = value is not None and (value <= limit if at_most else value >= limit)
            cells.append("n/a" if value is None else f"{value:.2f}x " + ("met" if met else "**missed**"))
        lines.append(f"| {words} | " + " | ".join(cells) + " |")
    return lines


def e2e_report(args: argparse.Namespace, rows: dict[str, dict[str, Any]], check: dict[str, Any] | None) -> str:
    lines = [*_header(args), "", *_caption_table(rows), ""]
    figures: dict[str, dict[str, float]] = {}
    for k in KERNEL_SETS:
        summary, found = _kernel_set_summary(k, rows)
        lines += summary
        if found:
            figures[k.name] = found
    if check:
        lines.append(
            f"Fidelity: the same 672x672 image through llama.cpp's tower (F16 mmproj) and edged's fp32 one: "
            f"{check['rows']} rows, cosine per row >= {check['cos_min']:.7f} (mean {check['cos_mean']:.7f}), "
            f"max abs difference {check['max_abs_diff']:.1e} for values up to {check['ref_abs_max']:.2f}."
        )
    if figures:
        lines += ["", "Goals, same run (each kernel set against llama.cpp with the same instruction sets):", "",
                  *_goal_table(figures)]
    return "\n".join(lines) + "\n"


def plot_stages(rows: dict[str, dict[str, Any]], path: Path) -> None:
    """Horizontal stacked bars: where each runtime's caption time goes, stage by stage."""
    plt = pyplot()

    captions = {k: r for k, r in rows.items() if "total_ms" in r}
    labels = list(captions)[::-1]
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.6 * len(labels)))
    left = np.zeros(len(labels))
    colours = ("#9e9e9e", "#bdbdbd", "#1f77b4", "#ff7f0e", "#2ca02c")
    for stage, colour in zip(STAGES, colours, strict=True):
        seconds = np.array([captions[k][stage] / 1000.0 for k in labels])
        ax.barh(labels, seconds, left=left, color=colour, label=stage.removesuffix("_ms").replace("_", " "))
        left += seconds
    for y, total in enumerate(left):
        ax.text(total, y, f" {total:.1f} s", va="center")
    ax.set_xlabel("seconds for one caption (image file to last token)")
    ax.set_xlim(0, left.max() * 1.15)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(STAGES), fontsize=8, frameon=False)
    ax.set_title("Where a caption's time goes (2B shape, same run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(child_main())
