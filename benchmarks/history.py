"""The memory: what recording costs the caption path vs. writing inline, and search on a full history.

1. Hot path: `Recorder.record(caption, frame)` on the caller's thread (what the scheduler pays) vs. the
   recorder thread's work per moment (JPEG of the frame, file, row, retention): the cost the scheduler
   would pay if it wrote inline (the baseline). Real porch frames, real files.
2. Search on a history of --moments captions (text only, generated from templates): `search()` as the
   CLI and `request/search` call it (opening the database read-only each time), p50/p95 per query.
3. Retention: one prune that deletes the oldest 10% of that history to meet a smaller size budget.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import cv2

from benchmarks.report import machine_line, print_table
from edged.analysis.history import AnalysedFrame, working_copy
from edged.config.schema import HistoryConfig
from edged.events import Caption, TriggerKind
from edged.memory.query import build_query
from edged.memory.recorder import Recorder
from edged.memory.store import HistoryStore, Moment, search
from edged.metrics import percentile

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "porch.mp4"
QUERIES = ("red car", "person OR dog", "deliv*", '"at the door"', "umbrella", "car -night")
_SUBJECTS = ("a person", "a man", "a woman", "two people", "a courier", "a dog", "a cat", "a fox", "a red car",
             "a white van", "a blue car", "a cyclist", "a child", "a delivery driver")
_ACTIONS = ("walks past", "stands", "waits", "parks", "drives past", "leaves a parcel", "rings the bell",
            "looks around", "sits", "runs across the lawn", "opens the gate", "carries a box")
_PLACES = ("at the door", "on the porch", "in the driveway", "on the street", "near the gate", "by the garage",
           "on the lawn", "under the lamp")
_TIMES = ("", " at night", " in the rain", " in the morning", " under an umbrella")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--writes", type=int, default=200, help="moments recorded with snapshots (default 200)")
    p.add_argument("--moments", type=int, default=15000, help="moments in the searched history (default 15000)")
    p.add_argument("--repeat", type=int, default=20, help="runs of each query (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def porch_frames(n: int = 8) -> list[AnalysedFrame]:
    cap = cv2.VideoCapture(str(SAMPLE))
    frames = []
    for i in range(n):
        cap.set(cv2.CAP_PROP_POS_MSEC, 1000.0 + i * 3000.0)
        ok, image = cap.read()
        if ok:
            frames.append(AnalysedFrame("porch", i, time.monotonic(), time.time(), 0.0, working_copy(image)))
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read {SAMPLE}")
    return frames


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_ACTIONS)} {rng.choice(_PLACES)}{rng.choice(_TIMES)}."


def hot_path(root: Path, writes: int) -> dict[str, float]:
    """record() on this thread vs. the writer thread's time per moment."""
    frames = porch_frames()
    recorder = Recorder(HistoryConfig(queue_size=writes + 1), root)
    per_write: list[float] = []
    real_add, real_jpeg = recorder.store.add, recorder._jpeg

    def timed_write(moment: Moment, snapshot: object) -> None:  # the writer's whole job for one moment
        start = time.perf_counter()
        real_add(moment, real_jpeg(snapshot))  # type: ignore[arg-type]
        recorder.store.prune()
        per_write.append(time.perf_counter() - start)

    recorder._write = timed_write  # type: ignore[method-assign]
    recorder.start()
    rng = random.Random(0)
    record_s = []
    for i in range(writes):
        text = sentence(rng)
        caption = Caption(f"ev-{i}", "porch", text, text, TriggerKind.MOTION, time.time(), time.time(), 1.0, "bench")
        start = time.perf_counter()
        recorder.record(caption, frames[i % len(frames)])
        record_s.append(time.perf_counter() - start)
        time.sleep(0.005)  # captions come seconds apart; keep the writer from being the only thing measured
    recorder.stop(timeout=60)
    snapshot_kb = sum(p.stat().st_size for p in root.glob("snapshots/*/*.jpg")) / max(1, writes) / 1024
    record_s.sort()
    per_write.sort()
    return {"record_p50_us": percentile(record_s, 50) * 1e6, "record_p95_us": percentile(record_s, 95) * 1e6,
            "write_p50_ms": percentile(per_write, 50) * 1e3, "write_p95_ms": percentile(per_write, 95) * 1e3,
            "snapshot_kb": snapshot_kb}


def fill(root: Path, moments: int) -> HistoryStore:
    rng = random.Random(1)
    store = HistoryStore(root, 365 * 86400.0, 10**12)
    now = time.time()
    for i in range(moments):
        text = sentence(rng)
        store.add(Moment(now - (moments - i) * 60.0, rng.choice(("porch", "drive", "garden")), "caption",
                         text.rstrip("."), text, "motion"))
    return store


def searches(root: Path, repeat: int) -> list[tuple[str, int, float, float]]:
    rows = []
    for text in QUERIES:
        query = build_query(text, since="30d", now=time.time())
        times, found = [], 0
        for _ in range(repeat):
            start = time.perf_counter()
            found = len(search(root, query))
            times.append(time.perf_counter() - start)
        times.sort()
        rows.append((text, found, percentile(times, 50) * 1e3, percentile(times, 95) * 1e3))
    return rows


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="edged-bench-history-"))
    try:
        hot = hot_path(tmp / "hot", args.writes)
        start = time.perf_counter()
        store = fill(tmp / "full", args.moments)
        fill_s = time.perf_counter() - start
        used = store.used_bytes()
        rows = searches(tmp / "full", args.repeat)
        store.max_bytes = int(used * 0.9)
        start = time.perf_counter()
        pruned = store.prune()
        prune_s = time.perf_counter() - start
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"hot_path": hot, "moments": args.moments, "db_mb": used / 1e6, "fill_per_moment_ms":
              fill_s / args.moments * 1e3, "searches": rows, "prune_ms": prune_s * 1e3, "pruned": pruned,
              "threads": threading.active_count()}
    if args.json:
        print(json.dumps(result))
        return 0
    print(machine_line())
    print_table(["recording one moment", "p50", "p95"], [
        ["record() on the scheduler's thread", f"{hot['record_p50_us']:.0f} us", f"{hot['record_p95_us']:.0f} us"],
        ["the writer's work (JPEG, file, row, retention): inline baseline", f"{hot['write_p50_ms']:.2f} ms",
         f"{hot['write_p95_ms']:.2f} ms"],
        ["ratio", f"{hot['record_p50_us'] / 1e3 / hot['write_p50_ms']:.4f}", ""]])
    print(f"snapshots: {hot['snapshot_kb']:.1f} KB each; history of {args.moments} moments: {used / 1e6:.1f} MB "
          f"(text only), {fill_s / args.moments * 1e3:.2f} ms per moment to fill")
    print_table(["query (since 30d)", "found (limit 20)", "p50", "p95"],
                [[q, n, f"{p50:.1f} ms", f"{p95:.1f} ms"] for q, n, p50, p95 in rows])
    print(f"prune to 90% of the size budget: {pruned} moments in {prune_s * 1e3:.0f} ms")
    return 0
