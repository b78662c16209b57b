"""Where one pass of the vision tower goes, fp32 against int8, and what that leaves for int8 / fp32.

`python -m benchmarks vision-profile --bundle DIR [--ort-avx2 DIR] [--attention-rows]` profiles a few
passes of the bundle's fp32 and int8 towers with onnxruntime's own profiler (after a warm-up pass) and
splits the kernel time of the fastest into the linear products, the attention and the rest. From that
it prints the bound the issue's "int8 vision <= 0.5x fp32" goal meets: with the attention and the rest
as they are in the int8 pass, how fast its products would have to be. `--ort-avx2` repeats it with
onnxruntime's AVX2 kernels (the copy `python -m benchmarks ort-avx2` writes). `--attention-rows` prints
how peaked the fp32 tower's attention rows are in its first, middle and last layer (what a quantized
attention would have to keep), on the bundle's own weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import child_env
from benchmarks.caption_e2e import CACHE, imread, onnxruntime_isa, sample_image

VARIANTS = ("fp32", "int8-vision")
PRODUCTS = frozenset({"Gemm", "MatMul", "FusedMatMul", "MatMulNBits", "MatMulInteger", "MatMulIntegerToFloat",
                      "DynamicQuantizeMatMul", "DynamicQuantizeLinear", "QLinearMatMul"})
ATTENTION = frozenset({"MultiHeadAttention", "Attention", "GroupQueryAttention", "Softmax"})


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, default=CACHE / "glm-edge-v-2b-random",
                   help="model bundle with fp32 and int8 vision towers (default: the caption benchmark's 2B one)")
    p.add_argument("--image", type=Path, help="image to encode (default: the caption benchmark's sample frame)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--passes", type=int, default=3, help="profiled passes per tower; the fastest is split")
    p.add_argument("--ort-avx2", type=Path, metavar="DIR", help="also profile with onnxruntime's AVX2 kernels")
    p.add_argument("--attention-rows", action="store_true", help="also print how peaked the attention rows are")


def kind(op: str) -> str:
    return "products" if op in PRODUCTS else "attention" if op in ATTENTION else "rest"


def profile_pass(bundle: Path, tower: str, pixels: np.ndarray, threads: int, passes: int) -> dict[str, Any]:
    """Kernel seconds per op type of the fastest of `passes` profiled passes (after a warm-up one), with
    edged's session settings: on a shared machine a single pass may have waited for a core."""
    import onnxruntime as ort

    from edged.config.schema import CaptionerConfig
    from edged.inference.sessions import session_options

    with tempfile.TemporaryDirectory(prefix="edged-profile-") as tmp:
        so = session_options(threads, CaptionerConfig(path=bundle).graph_optimization)
        so.enable_profiling, so.profile_file_prefix = True, str(Path(tmp) / "pass")
        session = ort.InferenceSession(str(bundle / tower), so, providers=["CPUExecutionProvider"])
        for _ in range(passes + 1):
            session.run(None, {"pixel_values": pixels})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run"][1:]
    per_pass: list[dict[str, float]] = [defaultdict(float) for _ in runs]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            for i, (start, end) in enumerate(runs):
                if start <= e["ts"] <= end:
                    per_pass[i][e["args"]["op_name"]] += e["dur"] / 1e6
    best = min(per_pass, key=lambda ops: sum(ops.values()))
    return {"totals_s": [sum(ops.values()) for ops in per_pass], "ops": dict(best)}


def split(ops: dict[str, float]) -> dict[str, float]:
    out = {"products": 0.0, "attention": 0.0, "rest": 0.0}
    for op, seconds in ops.items():
        out[kind(op)] += seconds
    return out


def bound(fp32: dict[str, float], int8: dict[str, float], goal: float = 0.5) -> dict[str, float]:
    """What int8 / fp32 <= `goal` asks of the int8 pass's products, its attention and rest as measured."""
    total32, total8 = sum(fp32.values()), sum(int8.values())
    allowed = goal * total32 - int8["attention"] - int8["rest"]
    return {"ratio": total8 / total32, "product_ratio": int8["products"] / fp32["products"],
            "products_allowed_s": allowed, "products_allowed_ratio": allowed / fp32["products"],
            "floor": (int8["attention"] + int8["rest"]) / total32}


def attention_rows(tower: Path, pixels: np.ndarray, queries: int = 512) -> list[dict[str, float]]:
    """Per probed layer: the median row maximum of the attention probabilities against a uniform row's,
    and the median share of a row's mass in entries under 1/255 of its maximum (what 8 bits per row lose).
    The queries are the first `queries` patches; every key is used."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(tower), load_external_data=False)
    nodes = [n for n in model.graph.node if n.op_type == "MultiHeadAttention"]
    if not nodes:
        raise SystemExit(f"{tower} has no MultiHeadAttention node to probe")
    heads = next(a.i for a in nodes[0].attribute if a.name == "num_heads")
    layers = sorted({0, len(nodes) // 2, len(nodes) - 1})
    wanted = [t for i in layers for t in nodes[i].input[:2]]
    for t in wanted:
        model.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    # next to the original: onnxruntime reads external weights only from the model's own folder
    probe = tower.parent / ".attention-probe.onnx"
    try:
        onnx.save(model, str(probe))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep q and k as outputs
        outs = ort.InferenceSession(str(probe), so, providers=["CPUExecutionProvider"]).run(
            wanted, {"pixel_values": pixels})
    finally:
        probe.unlink(missing_ok=True)
    rows = []
    for j, layer in enumerate(layers):
        q, k = outs[2 * j][0], outs[2 * j + 1][0]
        n, d = q.shape[0], q.shape[1] // heads
        q = q.reshape(n, heads, d).transpose(1, 0, 2)[:, :queries]
        k = k.reshape(n, heads, d).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        peak = p.max(-1)
        lost = (p * (p < peak[..., None] / 255.0)).sum(-1)
        rows.append({"layer": layer, "keys": n, "peak_over_uniform": float(np.median(peak) * n),
                     "mass_under_peak_255": float(np.median(lost))})
    return rows


def child(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(argv)
    from edged.inference.manifest import load_manifest
    from edged.inference.preprocess import pixel_values

    manifest = load_manifest(args.bundle)
    pixels = pixel_values(imread(args.image), manifest.preprocessing)
    result: dict[str, Any] = {"isa": onnxruntime_isa(), "variants": {}}
    for variant in VARIANTS:
        print(f"profiling the {variant} tower ({result['isa']})", file=sys.stderr, flush=True)
        result["variants"][variant] = profile_pass(args.bundle, manifest.variant(variant).vision, pixels,
                                                    args.threads, args.passes)
    if args.attention_rows:
        print("probing attention rows", file=sys.stderr, flush=True)
        result["attention_rows"] = attention_rows(args.bundle / manifest.variant("fp32").vision, pixels)
    print(json.dumps(result))
    return 0


def _spawn(args: argparse.Namespace, extra_path: Path | None, attention: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.vision_profile", "--bundle", str(args.bundle),
           "--image", str(args.image), "--threads", str(args.threads), "--passes", str(args.passes)]
    cmd += ["--attention-rows"] if attention else []
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, env=child_env(extra_path))
    if proc.returncode != 0:
        raise SystemExit(f"vision profile failed (exit {proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def report(results: list[dict[str, Any]], threads: int) -> list[str]:
    lines = [f"the fastest of the profiled passes of each tower after a warm-up, {threads} threads, "
             "onnxruntime's profiler (kernel seconds)", "",
             "| kernels | tower | products s | attention s | rest s | total s |", "|---|---|---|---|---|---|"]
    for r in results:
        for variant in VARIANTS:
            s = split(r["variants"][variant]["ops"])
            lines.append(f"| {r['isa']} | {variant} | {s['products']:.2f} | {s['attention']:.2f} | "
                         f"{s['rest']:.2f} | {sum(s.values()):.2f} |")
    lines.append("")
    for r in results:
        totals = "; ".join(f"{v} " + ", ".join(f"{t:.2f}" for t in r["variants"][v]["totals_s"]) for v in VARIANTS)
        lines.append(f"{r['isa']}: kernel seconds per pass: {totals}")
    for r in results:
        b = bound(split(r["variants"]["fp32"]["ops"]), split(r["variants"]["int8-vision"]["ops"]))
        lines.append(f"{r['isa']}: int8 / fp32 {b['ratio']:.2f}x (products {b['product_ratio']:.2f}x); with the "
                     f"int8 pass's attention and rest as they are, 0.5x needs its products <= "
                     f"{b['products_allowed_s']:.2f} s ({b['products_allowed_ratio']:.2f}x fp32's); floor with "
                     f"free products {b['floor']:.2f}x")
    for row in results[0].get("attention_rows", []):
        lines.append(f"attention rows, layer {row['layer']}: median row peak {row['peak_over_uniform']:.2f}x a "
                     f"uniform row's (1/{row['keys']}); median mass under peak/255: {row['mass_under_peak_255']:.4f}")
    return lines


def run(args: argparse.Namespace) -> int:
    if not (args.bundle / "manifest.json").is_file():
        raise SystemExit(f"{args.bundle}: no model bundle (make the 2B one with `python -m benchmarks caption --e2e`)")
    args.image = args.image or sample_image(CACHE / "porch-frame.jpg")
    results = [_spawn(args, None, args.attention_rows)]
    if args.ort_avx2:
        results.append(_spawn(args, args.ort_avx2, False))
    print("\n".join(report(results, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(child(sys.argv[1:]))
