"""`python -m benchmarks caption` end to end on the tiny bundle (figures are not checked: speed is the bench's job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.glm_fixture import BUNDLE

REPO = Path(__file__).resolve().parents[1]


def test_bench_runs_each_variant_in_a_child_and_writes_a_report(tmp_path: Path) -> None:
    """Each variant gets a table row; the report names the command, machine and the llama.cpp baseline."""
    report = tmp_path / "bench.md"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks",
        "caption",
        "--bundle",
        str(BUNDLE),
        "--variants",
        "fp32,int4",
        "--threads",
        "1",
        "--prompt-tokens",
        "24",
        "--new-tokens",
        "4",
        "--llama",
        "off",
        "--report",
        str(report),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = report.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith(("| fp32 ", "| int4 "))]
    assert len(rows) == 2
    assert "(24)" in rows[0]  # the prompt was padded to the asked length
    assert "machine:" in text
    assert "anchor" in text  # without llama.cpp in the run, the spec's anchor figures are the baseline
    assert "[caption bench] int4: vision" in proc.stderr
    # The look row: caption + 4 questions with prefix reuse (one vision pass) and the naive way (five).
    reuse = next(line for line in text.splitlines() if line.startswith("| caption + 4 questions, prefix reuse"))
    naive = next(line for line in text.splitlines() if line.startswith("| caption + 4 questions, a caption()"))
    assert reuse.endswith("| 1 |") and naive.endswith("| 5 |")
    assert "Caption tokens identical to caption(): True" in text


def test_bench_without_bundle_says_how_to_make_one(tmp_path: Path) -> None:
    """A missing bundle is exit 2 with the export and quantize commands."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "caption", "--bundle", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--random-init --shape 2b" in proc.stderr


def test_e2e_bench_times_every_stage_of_a_caption_from_an_image_file(tmp_path: Path) -> None:
    """`--e2e` on the tiny bundle, llama.cpp off (it is compiled only by the bench extra).

    The default image is a frame of the bundled sample video; every round's stages fit inside its wall
    total, the vision pairs are all there, and the plot is a PNG. The AVX2 rows run through the copy of
    the installed onnxruntime that `benchmarks.ort_avx2` writes (this machine's wheel, patched for real).
    """
    report, plot = tmp_path / "e2e.md", tmp_path / "e2e.png"
    cmd = [sys.executable, "-m", "benchmarks", "caption", "--e2e", "--bundle", str(BUNDLE), "--variants", "int4",
           "--threads", "1", "--prompt-tokens", "24", "--new-tokens", "4", "--repeat", "2", "--llama", "off",
           "--ort-avx2", str(tmp_path / "ort-avx2"), "--report", str(report), "--plot", str(plot)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / ".cache" / "porch-frame.jpg").is_file()  # written from samples/porch.mp4
    text = report.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| edged int4 |"))
    assert "int8 " in row.split("|")[2] or "NEON" in row.split("|")[2]  # the kernels onnxruntime picks here
    assert "(24)" in row and "n/a" in row  # prompt padded to 24 positions; no llama.cpp to compare with
    assert "fp32 and int8 in turn in one process (6 pairs)" in text
    avx2 = next(line for line in text.splitlines() if line.startswith("| edged int4, AVX2 kernels |"))
    assert avx2.split("|")[2].strip().startswith("int8 AVX2, fp32 AVX2 FMA (copy")
    goals = text[text.index("| goal |"):]
    assert goals.splitlines()[0] == "| goal | this CPU's kernels | AVX2 kernels only |"
    assert "| int8 vision encoder <= 0.5x fp32 (median of pairs) | " in goals
    raw = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))
    for one in raw["runs"]["edged int4"]:
        stages = sum(one[k] for k in ("decode_image_ms", "preprocess_ms", "vision_ms", "prefill_ms", "decode_ms"))
        assert 0 < stages <= one["total_ms"] and one["ttft_ms"] <= one["total_ms"]
    assert len(raw["runs"]["edged vision"]) == 2 and raw["check"] is None
    assert len(raw["runs"]["edged vision, AVX2 kernels"]) == 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
