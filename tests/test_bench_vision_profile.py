"""`python -m benchmarks vision-profile`: the split of a tower pass and the bound it puts on int8 / fp32."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.vision_profile import bound, kind, split
from tests.glm_fixture import BUNDLE


def test_ops_are_split_into_products_attention_and_rest() -> None:
    ops = ("Gemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MultiHeadAttention", "FastGelu", "Conv")
    assert [kind(op) for op in ops] == ["products", "products", "products", "attention", "rest", "rest"]
    assert split({"Gemm": 5.0, "MatMul": 0.5, "MultiHeadAttention": 2.0, "LayerNormalization": 0.25,
                  "Add": 0.25}) == {"products": 5.5, "attention": 2.0, "rest": 0.5}


def test_bound_is_what_the_int8_products_may_take_for_half_the_fp32_pass() -> None:
    """fp32 8 s (products 6); int8 5 s with attention 2 and rest 0.5: 0.5x needs 4 - 2.5 = 1.5 s of products."""
    b = bound({"products": 6.0, "attention": 1.8, "rest": 0.2}, {"products": 2.5, "attention": 2.0, "rest": 0.5})
    assert b["ratio"] == pytest.approx(5.0 / 8.0)
    assert b["product_ratio"] == pytest.approx(2.5 / 6.0)
    assert b["products_allowed_s"] == pytest.approx(1.5)
    assert b["products_allowed_ratio"] == pytest.approx(0.25)
    assert b["floor"] == pytest.approx(2.5 / 8.0)


def test_profiles_both_towers_of_a_real_bundle_and_probes_its_attention(tmp_path: Path) -> None:
    """The tiny bundle's two towers through onnxruntime's profiler, in a child, and its attention rows read
    from the fp32 graph's own q and k; the probe model it writes beside the tower is removed again."""
    bundle = shutil.copytree(BUNDLE, tmp_path / "bundle")
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "vision-profile", "--bundle", str(bundle),
                           "--threads", "1", "--attention-rows"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| int8 ") or line.startswith("| NEON")]
    assert [row.split("|")[2].strip() for row in rows] == ["fp32", "int8-vision"]
    assert "0.5x needs its products <=" in proc.stdout
    probes = [line for line in proc.stdout.splitlines() if line.startswith("attention rows, layer")]
    assert len(probes) == 2  # the tiny tower's two layers: first and last
    for line in probes:
        peak = float(line.split("median row peak ")[1].split("x")[0])
        assert peak >= 1.0  # a row's largest probability is at least the uniform one
    assert not (bundle / ".attention-probe.onnx").exists()
