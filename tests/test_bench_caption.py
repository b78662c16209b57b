"""`python -m benchmarks caption` end to end on the tiny bundle (figures are not checked: speed is the bench's job)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.glm_fixture import BUNDLE


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
