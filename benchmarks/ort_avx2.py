"""A copy of onnxruntime that runs only its AVX2 kernels, for the AVX2 rows of `caption --e2e`.

onnxruntime has no switch for its instruction set: MLAS, its kernel library, reads cpuid once when the
library loads and installs the fastest kernels the CPU has. To measure edged as it runs on a CPU without
AVX-512 on one that has it, `python -m benchmarks ort-avx2` copies the installed package and changes two
bytes in its extension module: the conditional jumps after MLAS's AVX-512 F test (cpuid leaf 7 EBX bit
16 and the ZMM state in XCR0) and after its AVX-VNNI test (leaf 7.1 EAX bit 4) become unconditional,
so both branch as they do on a CPU without those features. MLAS then installs the AVX2/FMA3 kernels it
runs on an AVX2-only CPU; nothing else changes. The byte patterns are checked to occur exactly once.

`--verify` runs an fp32, a dynamic int8 and a 4-bit matrix product through each copy under `perf` and
reports the share of onnxruntime's samples on instructions with 512-bit (zmm) registers and on VNNI
dot products, the evidence that the copy runs AVX2 code (needs `perf` and `objdump`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import child_env

CACHE = Path(".cache")
MARKER = "AVX2_ONLY.json"  # in the copy's onnxruntime/capi/: what was changed, read by the kernels column


@dataclass(frozen=True)
class Site:
    """One feature test in MLAS's platform setup: the bytes around it and where its `je` (0x74) is."""

    feature: str
    pattern: bytes  # a regex over the module's bytes; `.` stands for a jump distance
    jump_at: int  # offset of the 0x74 opcode inside the match


SITES = (
    # test r10d, 0x10000 (AVX512F); je +d; mov rax, r8; not rax; test al, 0xe0 (opmask/ZMM state)
    Site("AVX-512", rb"\x41\xf7\xc2\x00\x00\x01\x00\x74.\x4c\x89\xc0\x48\xf7\xd0\xa8\xe0", 7),
    # mov eax, 7; mov ecx, 1; cpuid; test al, 0x10 (AVX-VNNI); je +d
    Site("AVX-VNNI", rb"\xb8\x07\x00\x00\x00\xb9\x01\x00\x00\x00\x0f\xa2\xa8\x10\x74", 14),
)
JE, JMP = 0x74, 0xEB


def extension_module(package: Path) -> Path:
    found = sorted((package / "capi").glob("onnxruntime_pybind11_state*.so"))
    if not found:
        raise SystemExit(f"ort-avx2: no onnxruntime_pybind11_state*.so in {package / 'capi'} (not a Linux wheel?)")
    return found[0]


def patch_sites(data: bytearray, where: Path) -> list[dict[str, object]]:
    """Turn each site's `je` into `jmp`; refuses unless every pattern occurs exactly once."""
    changed: list[dict[str, object]] = []
    for site in SITES:
        hits = [m.start() for m in re.finditer(site.pattern, bytes(data), flags=re.DOTALL)]
        if len(hits) != 1:
            raise SystemExit(
                f"ort-avx2: MLAS's {site.feature} test found {len(hits)} times in {where} (expected once); the "
                "patterns are those of onnxruntime's x86_64 Linux wheels (checked on 1.32.0). Measure the AVX2 "
                "rows on an AVX2-only CPU instead."
            )
        offset = hits[0] + site.jump_at
        assert data[offset] == JE
        data[offset] = JMP
        changed.append({"feature": site.feature, "offset": offset, "from": hex(JE), "to": hex(JMP)})
    return changed


def write_copy(out: Path) -> Path:
    """Copy the installed onnxruntime package under `out` with MLAS's AVX-512 and AVX-VNNI tests turned off."""
    import onnxruntime

    source = Path(onnxruntime.__file__).parent
    target = out / "onnxruntime"
    marker = target / "capi" / MARKER
    if marker.is_file() and json.loads(marker.read_text())["version"] == onnxruntime.__version__:
        return out
    shutil.rmtree(target, ignore_errors=True)
    print(f"[ort-avx2] copying onnxruntime {onnxruntime.__version__} from {source} ...", file=sys.stderr, flush=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    module = extension_module(target)
    data = bytearray(module.read_bytes())
    changed = patch_sites(data, module)
    module.write_bytes(bytes(data))
    marker.write_text(json.dumps({"version": onnxruntime.__version__, "module": module.name, "changed": changed},
                                 indent=1), encoding="utf-8")
    for c in changed:
        print(f"[ort-avx2] {module.name}: {c['feature']} test at byte {c['offset']:#x}: je -> jmp", file=sys.stderr)
    return out


def restricted_to_avx2() -> bool:
    """True in a process that imported the copy this module writes (its marker sits next to the module)."""
    import onnxruntime

    return (Path(onnxruntime.__file__).parent / "capi" / MARKER).is_file()


# --- --verify: which instructions each copy executes --------------------------------------------------


def _models(directory: Path) -> dict[str, Path]:
    """fp32 MatMul, its dynamic int8 form and its 4-bit MatMulNBits form, at a tower layer's shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    w = np.random.default_rng(0).standard_normal((1152, 4304)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [576, 1152])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [576, 4304])],
        [numpy_helper.from_array(w, "w")],
    )
    paths = {kind: directory / f"{kind}.onnx" for kind in ("fp32", "int8", "int4")}
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), paths["fp32"])
    quantize_dynamic(str(paths["fp32"]), str(paths["int8"]), per_channel=True, reduce_range=True,
                     weight_type=QuantType.QInt8)
    quant = MatMulNBitsQuantizer(str(paths["fp32"]), bits=4, block_size=64, is_symmetric=True, accuracy_level=4)
    quant.process()
    quant.model.save_model_to_file(str(paths["int4"]))
    return paths


def work(model: Path, seconds: float) -> dict[str, float]:
    """The child under `perf`: run one model for about `seconds`; returns ms per run."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((576, 1152)).astype(np.float32)
    session.run(None, {"x": x})
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, {"x": x})
        runs += 1
    return {"ms_per_run": (time.perf_counter() - t0) * 1000.0 / runs, "avx2_only": float(restricted_to_avx2())}


def _instructions(module: Path, addresses: set[int]) -> dict[int, str]:
    """The disassembly of the sampled addresses (one pass of objdump over the module)."""
    found: dict[int, str] = {}
    proc = subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", str(module)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line_re = re.compile(r"\s*([0-9a-f]+):\s+(.*)")
    for line in proc.stdout:
        m = line_re.match(line)
        if m and int(m.group(1), 16) in addresses:
            found[int(m.group(1), 16)] = m.group(2)
    proc.wait()
    return found


def _samples(data: Path, module: Path) -> dict[int, float]:
    """perf's share of all samples per address inside `module` (its symbols are stripped: one row each)."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--dsos", module.name, "--sort", "sym", "-q",
                          "--percent-limit", "0"], capture_output=True, text=True, check=True).stdout
    rows = (re.match(r"\s*([\d.]+)%\s+\[\.\]\s+0x([0-9a-f]+)", line) for line in out.splitlines())
    return {int(m.group(2), 16): float(m.group(1)) for m in rows if m}


def instruction_mix(samples: dict[int, float], instructions: dict[int, str]) -> dict[str, float]:
    """Shares (percent of the module's samples) on zmm, on ymm, on xmm-or-scalar, and on VNNI dot products."""
    total = sum(samples.values()) or 1.0
    mix = {"zmm": 0.0, "ymm": 0.0, "other": 0.0, "vnni": 0.0}
    for address, share in samples.items():
        text = instructions.get(address, "")
        width = "zmm" if "zmm" in text else "ymm" if "ymm" in text else "other"
        mix[width] += share
        if re.search(r"\bvpdp(bu|ws)sds?\b", text):
            mix["vnni"] += share
    return {k: 100.0 * v / total for k, v in mix.items()}


def _profile(model: Path, package_dir: Path | None, data: Path, seconds: float) -> dict[str, float]:
    env = child_env(package_dir)
    cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-o", str(data), "--", sys.executable, "-m",
           "benchmarks.ort_avx2", "_work", str(model), str(seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"ort-avx2: perf record failed: {proc.stderr[-800:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def verify(out: Path, seconds: float) -> str:
    """Each kind of product through the installed and the AVX2 copy under perf; a Markdown table."""
    import onnxruntime

    for tool in ("perf", "objdump"):
        if shutil.which(tool) is None:
            raise SystemExit(f"ort-avx2 --verify needs `{tool}` (apt-get install linux-perf binutils)")
    copies = {"installed": (None, extension_module(Path(onnxruntime.__file__).parent)),
              "AVX2 copy": (out, extension_module(out / "onnxruntime"))}
    lines = ["| product | onnxruntime | ms per run | zmm (512-bit) % | ymm % | xmm/scalar % | VNNI dot products % |",
             "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(Path(tmp))
        for kind, model in models.items():
            for name, (package_dir, module) in copies.items():
                print(f"[ort-avx2] perf: {kind} through the {name} ...", file=sys.stderr, flush=True)
                data = Path(tmp) / f"{kind}-{name.split()[0]}.perf"
                timing = _profile(model, package_dir, data, seconds)
                samples = _samples(data, module)
                mix = instruction_mix(samples, _instructions(module, set(samples)))
                lines.append(f"| {kind} | {name} | {timing['ms_per_run']:.1f} | {mix['zmm']:.1f} | {mix['ymm']:.1f} "
                             f"| {mix['other']:.1f} | {mix['vnni']:.1f} |")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=CACHE / "ort-avx2",
                   help="where the copy goes; pass it to `caption --e2e --ort-avx2`")
    p.add_argument("--verify", action="store_true",
                   help="profile fp32, int8 and 4-bit products through both copies with perf: zmm and VNNI shares")
    p.add_argument("--seconds", type=float, default=3.0, help="run time of each --verify profile")


def run(args: argparse.Namespace) -> int:
    out = write_copy(args.out)
    print(f"[ort-avx2] ready: {out} (caption --e2e --ort-avx2 {out})", file=sys.stderr)
    if args.verify:
        print(verify(out, args.seconds))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_work":
        print(json.dumps(work(Path(sys.argv[2]), float(sys.argv[3]))))
        raise SystemExit(0)
    raise SystemExit("usage: python -m benchmarks ort-avx2 [--out DIR] [--verify]")
