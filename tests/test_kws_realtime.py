"""Keyword spotting keeps real time while busy onnxruntime sessions saturate every core it may use.

The one timed test of the keyword suite (the issue asks for it). The load is real onnxruntime sessions
running a chain of large MatMuls, two single-threaded sessions per core this process may run on (its
CPU affinity, which `taskset` and container cpusets set): the same twofold oversubscription from 1
core to 64. The audio is real speech with keywords, fed at real-time
pace by a thread that stamps each chunk with its due time, as an audio source does. Bounds are
generous (100 ms of lag on 10 ms chunks) but mean something: a spotter that fell behind by even one
second of work in ten would fail.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import psutil
import pytest
from onnx import TensorProto, helper

from edged.analysis.kws import KeywordSpotter
from edged.config.schema import MicrophoneConfig, WakewordConfig
from edged.events import KeywordDetected
from edged.queues import BoundedQueue, DropPolicy, QueueClosed
from edged.sources.audio.chunk import AudioChunk
from edged.sources.audio.files import iter_chunks
from tests.kws_support import fixture_audio

N = 384  # one MatMul is ~0.1 GFLOP
BURNERS_PER_CORE = 2


def _busy_session() -> ort.InferenceSession:
    rng = np.random.default_rng(0)
    weights = [
        helper.make_tensor(
            f"w{i}", TensorProto.FLOAT, [N, N], rng.standard_normal(N * N).astype(np.float32) / N
        )
        for i in range(4)
    ]
    nodes = [
        helper.make_node("MatMul", ["x" if i == 0 else f"y{i - 1}", f"w{i}"], [f"y{i}"]) for i in range(4)
    ]
    graph = helper.make_graph(
        nodes,
        "burn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, N])],
        [helper.make_tensor_value_info("y3", TensorProto.FLOAT, [N, N])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the burner thread computes; no pool sized by the core count
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _cores() -> list[int]:
    """The CPUs this process may run on (not os.cpu_count(), which ignores affinity and quotas)."""
    return sorted(os.sched_getaffinity(0))


def _cpu_times(cores: list[int]) -> list[Any]:
    per_cpu = psutil.cpu_times(percpu=True)
    return [per_cpu[c] for c in cores] if max(cores) < len(per_cpu) else [psutil.cpu_times()]


def _busy_fraction(before: list[Any], after: list[Any]) -> float:
    """Share of the given cores' time spent running something (anyone's) between two samples."""
    pairs = list(zip(after, before, strict=True))
    idle = sum((a.idle + getattr(a, "iowait", 0.0)) - (b.idle + getattr(b, "iowait", 0.0)) for a, b in pairs)
    total = sum(sum(a) - sum(b) for a, b in pairs)
    return 1.0 - idle / total if total > 0 else 0.0


def _feed_in_real_time(queue: BoundedQueue[AudioChunk], audio: np.ndarray) -> tuple[int, float]:
    """Put 10 ms chunks at their due times, stamped when they are put (as a live capture source stamps
    a chunk when it reads it from the device); returns the overruns and how late the feeder itself ran at
    worst (machine noise outside the spotter). Waits for the queue to drain."""
    overruns, late = 0, 0.0
    start = time.monotonic()
    for c in iter_chunks(audio, 160, "kitchen"):
        due = start + c.stream_time
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        late = max(late, time.monotonic() - due)
        chunk = AudioChunk("kitchen", c.seq, c.samples, c.stream_time, time.monotonic(), time.time())
        try:
            if not queue.put(chunk, timeout=0.5):
                overruns += 1
        except QueueClosed:  # pragma: no cover - the spotter never closes it
            break
    deadline = time.monotonic() + 5
    while len(queue) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    return overruns, late


@pytest.mark.slow
def test_spotter_keeps_real_time_with_every_core_saturated() -> None:
    """Under a saturating onnxruntime load the spotter stays < 100 ms behind, drops nothing, still hears."""
    cores = _cores()
    sessions = [_busy_session() for _ in range(BURNERS_PER_CORE * len(cores))]
    x = np.ones((N, N), np.float32)
    stop = threading.Event()
    runs = [0] * len(sessions)

    def burn(i: int) -> None:
        while not stop.is_set():
            sessions[i].run(None, {"x": x})
            runs[i] += 1

    burners = [
        threading.Thread(target=burn, args=(i,), name=f"burn-{i}", daemon=True) for i in range(len(sessions))
    ]
    audio = np.concatenate([fixture_audio("positive_hey_jarvis.flac"), fixture_audio("positive_hey_mycroft.flac")])[
        : 16000 * 20
    ]
    events: list[KeywordDetected] = []
    queue: BoundedQueue[AudioChunk] = BoundedQueue("kitchen-audio", 200, DropPolicy.BLOCK)  # 2 s of audio
    spotter = KeywordSpotter(
        MicrophoneConfig(id="kitchen", device="-"),
        WakewordConfig(keywords=("alexa", "okay_nabu", "hey_jarvis", "hey_mycroft")),
        queue,
        events.append,
    )
    for t in burners:
        t.start()
    time.sleep(0.5)  # let the load settle before the audio starts
    busy0 = _cpu_times(cores)
    spotter.start()
    try:
        overruns, late = _feed_in_real_time(queue, audio)
    finally:
        busy = _busy_fraction(busy0, _cpu_times(cores))
        stop.set()
        spotter.stop()
        for t in burners:
            t.join(10)
    stats = spotter.stats()
    assert busy > 0.9, f"{len(cores)} cores were not saturated during the test ({100 * busy:.0f}% busy)"
    assert min(runs) > 0
    assert overruns == 0
    assert stats["queue"]["overruns"] == 0
    assert stats["gaps"] == 0
    assert stats["chunks"] == len(list(iter_chunks(audio, 160)))
    # A feeder starved by other processes puts its late chunks at once; working off that burst may take as
    # long as the audio it holds, so the spotter's own budget (100 ms) is measured on top of the feeder's delay.
    assert stats["lag_ms"]["max"] < 100 + late * 1000, (
        f"{stats['lag_ms']}; the feeder itself was up to {late * 1000:.0f} ms late"
    )
    assert sum(e.keyword == "hey_jarvis" for e in events) >= 3  # of 4 (the offline engine finds 4)
    assert sum(e.keyword == "hey_mycroft" for e in events) >= 1  # of the 2 in the first 9 s (it finds both)
