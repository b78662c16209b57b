"""The whole pipeline on the bundled sample: motion, keywords and captions, as `edged replay` shows them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "porch.mp4"
TRUTH = json.loads((ROOT / "samples" / "porch.json").read_text())
TINY = ROOT / "tests" / "fixtures" / "glm-edge-v-tiny"


def overlaps(a: tuple[float, float], b: tuple[float, float], slack: float = 1.0) -> bool:
    return a[0] < b[1] + slack and b[0] < a[1] + slack


@pytest.mark.slow
def test_replay_of_the_sample_shows_motion_keywords_and_captions(tmp_path: Path) -> None:
    """Every spoken keyword is heard, both motion intervals open an event, each event gets its caption
    (from the tiny random-weight model of the real architecture) as an update on the same id."""
    out = subprocess.run([sys.executable, "-m", "edged", "replay", str(SAMPLE), "-c", str(ROOT / "config.yaml"),
                          "--model", str(TINY), "--json"], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    summary = lines[-1]["summary"]
    published = [line for line in lines[:-1]]
    keywords = [p["payload"] for p in published if p["topic"].endswith("/keyword")]
    heard = [(k["event_type"], k["stream_time"]) for k in keywords]
    for spoken in TRUTH["keywords"]:
        assert any(kw == spoken["keyword"] and spoken["start"] <= t <= spoken["end"] + 1.5 for kw, t in heard), heard
    assert len(keywords) == len(TRUTH["keywords"])  # no false accepts on the sample's other speech
    events = [p["payload"] for p in published if p["topic"].endswith("/events")]
    motion_new = [e for e in events if e["type"] == "new" and e["trigger"] == "motion"]
    assert len(motion_new) == len(TRUTH["motion"])
    captions = [p["payload"] for p in published if p["topic"].endswith("/porch/caption")]
    caption_of = {c["id"]: c for c in captions}
    for event in [e for e in events if e["type"] == "new"]:
        updates = [e for e in events if e["type"] == "update" and e["id"] == event["id"]]
        ends = [e for e in events if e["type"] == "end" and e["id"] == event["id"]]
        assert len(updates) == 1, event
        # The update carries the event's caption, whatever words this CPU's int4 kernels chose (they
        # differ between CPUs; the model may even stop at once, giving an empty caption).
        assert caption_of[event["id"]]["tokens"] >= 1
        assert updates[0]["caption"] == caption_of[event["id"]]["caption"]
        assert len(ends) == 1
    assert {c["trigger"] for c in captions} == {"motion", "keyword"}
    assert all(c["model"] == "glm-edge-v-tiny:int4" for c in captions)
    assert summary["captions"] == len(captions) == 5
    assert summary["trigger_to_event_ms"]["p95"] < 200
    assert summary["stale_dropped"] == 0
    motion_on = [p for p in published if p["topic"].endswith("/porch/motion") and p["payload"] == "ON"]
    assert len(motion_on) == 2
