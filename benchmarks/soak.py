"""Soak: the sample pipeline for a long time, faster than real time, watched for anything that grows.

Starts a private Mosquitto and a real `edged run` process whose cameras and microphone loop the
bundled sample as fast as the machine allows, with the tiny caption model on a short periodic
interval, then samples the process every few seconds: resident memory, threads, open file
descriptors and the outbox size, plus the events a subscriber receives. After a warm-up, none of
them may grow: the last third of the run is compared with the middle third.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import REPO as ROOT
from benchmarks.mqtt import start_broker
from benchmarks.report import pyplot
from edged.system_stats import open_fds, os_threads, rss_mb


@dataclass
class Sample:
    t: float  # seconds since start
    rss_mb: float
    threads: int
    fds: int
    outbox: int
    events: int


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)
    grew: list[str] = field(default_factory=list)


def _outbox_rows(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return -1


def soak_config(tmp: Path, port: int, sample: Path, model: Path) -> Path:
    cameras = "".join(
        f"  cam{i}:\n    url: {sample}\n    loop: true\n    realtime: false\n"
        f"    captions: {{interval: {{min: 5s, max: 20s}}, deadlines: {{periodic: 30s}}}}\n"
        + (f"    microphone: {{device: {sample}, loop: true, realtime: false}}\n" if i == 0 else "")
        for i in range(2))
    text = (f"device: {{id: soak}}\nstate_dir: {tmp}/state\nlog: {{level: warning, format: json}}\n"
            f"mqtt: {{port: {port}, stats_interval: 5s}}\n"
            f"models: {{captioner: {{path: {model}, threads: 1, max_new_tokens: 16}}, "
            "wakeword: {keywords: [okay_nabu, alexa, hey_jarvis]}}\n"
            f"cameras:\n{cameras}")
    path = tmp / "soak.yaml"
    path.write_text(text)
    return path


class _Counter:
    """Counts what edged publishes (a real subscriber)."""

    def __init__(self, port: int) -> None:
        self.count = 0
        # Not "edged-soak": that is the daemon's own default id, and the broker would keep
        # disconnecting one to let the other in.
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="edged-soak-subscriber")
        self.client.on_connect = lambda c, *_: c.subscribe("edged/soak/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, *_: Any) -> None:
        self.count += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_soak(minutes: float, interval: float = 5.0, progress: bool = True) -> SoakResult:
    result = SoakResult()
    with tempfile.TemporaryDirectory(prefix="edged-soak-") as tmpdir:
        tmp = Path(tmpdir)
        broker, port = start_broker(tmp)
        tiny = ROOT / "tests" / "fixtures" / "glm-edge-v-tiny"
        config = soak_config(tmp, port, ROOT / "samples" / "porch.mp4", tiny)
        log = open(tmp / "edged.log", "wb")  # noqa: SIM115 - closed below
        daemon = subprocess.Popen([sys.executable, "-m", "edged", "run", "-c", str(config)], stdout=log,
                                  stderr=subprocess.STDOUT)
        counter = _Counter(port)
        try:
            _watch(daemon, tmp / "state" / "outbox.db", counter, minutes, interval, result, progress)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(20)
            counter.close()
            broker.terminate()
            broker.wait(5)
            log.close()
    judge(result)
    return result


def _watch(daemon: subprocess.Popen[bytes], outbox: Path, counter: _Counter, minutes: float, interval: float,
           result: SoakResult, progress: bool) -> None:
    start = time.monotonic()
    end = start + minutes * 60
    while time.monotonic() < end:
        time.sleep(interval)
        if daemon.poll() is not None:
            raise RuntimeError(f"edged exited during the soak (status {daemon.returncode})")
        sample = Sample(round(time.monotonic() - start, 1), rss_mb(daemon.pid), os_threads(daemon.pid),
                        open_fds(daemon.pid), _outbox_rows(outbox), counter.count)
        result.samples.append(sample)
        if progress:
            print(f"  {sample.t:7.0f} s  rss {sample.rss_mb:6.1f} MB  threads {sample.threads:3d}  "
                  f"fds {sample.fds:3d}  outbox {sample.outbox:4d}  published {sample.events}", flush=True)


def judge(result: SoakResult) -> None:
    """After warm-up (the first third), the last third may not exceed the middle third (with a little slack)."""
    n = len(result.samples)
    if n < 6:
        result.verdicts["run"] = "too short to judge (needs 6 samples)"
        return
    middle = result.samples[n // 3: 2 * n // 3]
    last = result.samples[2 * n // 3:]
    slack = {"rss_mb": (1.05, 8.0), "threads": (1.0, 0), "fds": (1.0, 2), "outbox": (1.0, 20)}
    for name, (factor, plus) in slack.items():
        before = max(getattr(s, name) for s in middle)
        after = statistics.mean(getattr(s, name) for s in last)
        ok = after <= before * factor + plus
        result.verdicts[name] = f"middle max {before:g}, last mean {after:.1f}: {'flat' if ok else 'GROWS'}"
        if not ok:
            result.grew.append(name)
    result.verdicts["rss_trend"] = f"{rss_slope_mb_per_hour(result.samples[n // 3:]):+.1f} MB/h after warm-up"


def rss_slope_mb_per_hour(samples: list[Sample]) -> float:
    """Least-squares slope of resident memory: a creep the thirds comparison's slack would hide."""
    ts = [s.t for s in samples]
    mean_t, mean_r = statistics.mean(ts), statistics.mean(s.rss_mb for s in samples)
    var = sum((t - mean_t) ** 2 for t in ts)
    cov = sum((s.t - mean_t) * (s.rss_mb - mean_r) for s in samples)
    return cov / var * 3600 if var else 0.0


def write_png(result: SoakResult, path: Path, title: str) -> None:
    plt = pyplot()

    t = [s.t / 60 for s in result.samples]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    series = [("rss_mb", "resident memory (MB)"), ("threads", "threads"), ("fds", "open file descriptors"),
              ("outbox", "outbox rows")]
    for ax, (name, label) in zip(axes.flat, series, strict=True):
        ax.plot(t, [getattr(s, name) for s in result.samples])
        ax.set_title(label)
        ax.axvspan(0, t[len(t) // 3] if t else 0, color="0.9", label="warm-up")
        if name != "rss_mb":  # memory gets a close-up axis, so that a slow creep shows
            ax.set_ylim(bottom=0)
    for ax in axes[1]:
        ax.set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_json(result: SoakResult) -> str:
    last = result.samples[-1] if result.samples else None
    return json.dumps({"samples": len(result.samples), "verdicts": result.verdicts, "grew": result.grew,
                       "last": None if last is None else last.__dict__})
