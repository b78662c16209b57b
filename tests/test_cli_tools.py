"""The small tools: `edged watch` (a live view of what edged publishes) and `python -m benchmarks synth sample`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edged.cli.watch import describe
from tests.support.broker import Broker
from tests.support.mqtt import Subscriber

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("topic", "payload", "shown"), [
    ("edged/d/porch_mic/keyword", {"event_type": "okay_nabu", "score": 0.93, "stream_time": 3.4},
     "heard 'okay_nabu' score 0.93 at 3.4 s"),
    ("edged/d/events", {"type": "new", "id": "ev-1", "camera": "porch", "trigger": "motion", "labels": []},
     "new    ev-1 porch [motion]"),
    ("edged/d/porch/caption", {"title": "A cat.", "latency_ms": 4200, "trigger": "periodic", "replayed": True},
     "'A cat.' (4200 ms, periodic) (replayed)"),
    ("edged/d/porch/health", {"state": "reconnecting", "reason": "connect failed: refused", "reconnects": 2,
                              "stalls": 0}, "reconnecting: connect failed: refused (reconnects 2, stalls 0)"),
])
def test_describe_makes_one_readable_line(topic: str, payload: dict[str, object], shown: str) -> None:
    """Each kind of message reads as one line a person can follow."""
    assert describe(topic, json.dumps(payload).encode()) == shown


def test_describe_handles_text_and_images() -> None:
    """ON/OFF as text, JPEGs by size, anything else without crashing."""
    assert describe("edged/d/porch/motion", b"ON") == "ON"
    assert describe("edged/d/porch/snapshot", b"\xff\xd8" + b"x" * 2046) == "[JPEG snapshot, 2.0 KB]"
    assert describe("edged/d/x", b"\xff\xfe\x00") != ""


def test_watch_shows_what_is_on_the_broker(tmp_path: Path, broker: Broker) -> None:
    """`edged watch` subscribes under the base topic and prints retained state it finds."""
    sub = Subscriber(broker.port, []).start()
    sub.publish("edged/dev1/porch/motion", "ON", retain=True)
    sub.stop()
    out = subprocess.run([sys.executable, "-m", "edged", "watch", "--port", str(broker.port), "--seconds", "2"],
                         capture_output=True, text=True, timeout=30, check=True)
    assert "porch/motion" in out.stdout
    assert out.stdout.rstrip().endswith("ON")


@pytest.mark.slow
def test_the_sample_regenerates_exactly(tmp_path: Path) -> None:
    """`python -m benchmarks synth sample` rebuilds the bundled sample: same ground truth as the committed one."""
    out = subprocess.run([sys.executable, "-m", "benchmarks", "synth", "sample", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    made = json.loads((tmp_path / "porch.json").read_text())
    committed = json.loads((ROOT / "samples" / "porch.json").read_text())
    assert made == committed
    assert (tmp_path / "porch.mp4").stat().st_size > 100_000
