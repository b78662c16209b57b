"""`python -m benchmarks soak` (short): a real daemon under fast-looping sources, watched for growth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_short_soak_reports_flat_threads_descriptors_and_outbox(tmp_path: Path) -> None:
    """40 s of the sample pipeline faster than real time: figures for all four series and a PNG; threads and
    file descriptors stay flat after warm-up (memory is judged over the recorded 30-minute run)."""
    png = tmp_path / "soak.png"
    out = subprocess.run([sys.executable, "-m", "benchmarks", "soak", "--minutes", "0.67", "--interval", "2", "--json",
                          "--png", str(png)], capture_output=True, text=True, timeout=180, check=False)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["samples"] >= 15
    assert set(summary["verdicts"]) == {"rss_mb", "threads", "fds", "outbox", "rss_trend"}
    assert "threads" not in summary["grew"]
    assert "fds" not in summary["grew"]
    assert summary["last"]["events"] > 0  # the pipeline published all along
    assert png.stat().st_size > 10_000
