"""MQTT through the persistent outbox vs. paho publishing directly without persistence (the floor).

Both publish the same QoS 1 messages to a loopback Mosquitto: a burst (throughput: messages acknowledged
per second) and a paced stream (latency from enqueue to PUBACK, p50/p95). Starts a private Mosquitto
on a free port unless --port is given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.report import machine_line, print_table
from edged.config import parse_config
from edged.events import Message
from edged.metrics import percentile
from edged.outputs.mqtt.publisher import MqttPublisher


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=5000, help="messages per burst (default 5000)")
    p.add_argument("--rate", type=float, default=200.0, help="paced stream rate, messages/s (default 200)")
    p.add_argument("--paced-seconds", type=float, default=5.0, help="length of the paced stream (default 5)")
    p.add_argument("--port", type=int, help="use the broker on 127.0.0.1:PORT instead of starting one")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def payload(i: int) -> bytes:
    return json.dumps({"type": "new", "id": f"ev-{i}", "camera": "porch", "trigger": "motion",
                       "start_ts": time.time(), "labels": ["person"], "caption": "x" * 200}).encode()


class DirectPaho:
    """The floor: a bare paho client, QoS 1, the same in-flight window as edged, no persistence."""

    def __init__(self, port: int) -> None:
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.done = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-direct")
        self.client.max_inflight_messages_set(100)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self.done:
            self.latencies.append(time.perf_counter() - self.sent.pop(mid, time.perf_counter()))
            self.done.notify_all()

    def publish(self, i: int) -> None:
        start = time.perf_counter()
        info = self.client.publish("bench/direct/events", payload(i), qos=1)
        with self.done:
            self.sent[info.mid] = start

    def wait(self, n: int, timeout: float = 60) -> None:
        with self.done:
            self.done.wait_for(lambda: len(self.latencies) >= n, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def burst(publish: Any, wait: Any, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        publish(i)
    wait(n)
    return n / (time.perf_counter() - start)


def paced(publish: Any, wait: Any, rate: float, seconds: float) -> int:
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        publish(i)
    wait(n)
    return n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def run_edged(tmp: Path, port: int, args: argparse.Namespace) -> dict[str, float]:
    config = parse_config(f"device: {{id: bench}}\nstate_dir: {tmp}/state\nmqtt: {{port: {port}}}\n")
    pub = MqttPublisher(config, None, lambda m: None, [])
    pub.start()
    pub.link.connected.wait(10)

    def publish(i: int) -> None:
        pub.publish_message(Message("edged/bench/events", payload(i), 1, False, True))

    def wait(n: int) -> None:
        deadline = time.monotonic() + 60
        while pub.sender.sent < wait.base + n and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.001)
        wait.base += n  # type: ignore[attr-defined]

    wait.base = 0  # type: ignore[attr-defined]
    rate = burst(publish, wait, args.messages)
    pub.sender.latency_ms = type(pub.sender.latency_ms)(100_000)
    paced(publish, wait, args.rate, args.paced_seconds)
    lat = sorted(pub.sender.latency_ms._samples)
    pub.stop()
    return {"msgs_per_s": rate, "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95)}


def run_direct(port: int, args: argparse.Namespace) -> dict[str, float]:
    direct = DirectPaho(port)
    time.sleep(0.2)
    rate = burst(direct.publish, direct.wait, args.messages)
    direct.latencies.clear()
    paced(direct.publish, direct.wait, args.rate, args.paced_seconds)
    lat = sorted(x * 1000 for x in direct.latencies)
    direct.close()
    return {"msgs_per_s": rate, "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95)}


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        proc, port = (None, args.port) if args.port else start_broker(tmp)
        try:
            print("  floor: paho direct ...", flush=True)
            floor = run_direct(port, args)
            print("  edged: through the outbox ...", flush=True)
            ours = run_edged(tmp, port, args)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(5)
    ratio = ours["msgs_per_s"] / floor["msgs_per_s"]
    if args.json:
        print(json.dumps({"machine": machine_line(), "floor": floor, "edged": ours, "throughput_ratio": ratio}))
        return 0
    print(f"python -m benchmarks mqtt - {machine_line()}")
    print(f"burst of {args.messages} QoS 1 messages; paced {args.rate:g}/s for {args.paced_seconds:g} s")
    print_table(["", "msgs/s (burst)", "enqueue->PUBACK p50 ms", "p95 ms"], [
        ["paho direct (floor)", round(floor["msgs_per_s"]), round(floor["p50_ms"], 2), round(floor["p95_ms"], 2)],
        ["edged outbox", round(ours["msgs_per_s"]), round(ours["p50_ms"], 2), round(ours["p95_ms"], 2)],
    ])
    print(f"throughput ratio {ratio:.2f} (goal >= 0.5); edged p95 {ours['p95_ms']:.1f} ms (goal <= 20)")
    return 0
