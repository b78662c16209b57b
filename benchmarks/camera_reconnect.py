"""Camera reconnect: time from an RTSP server's return to each camera's status online (goal <= 5 s).

Runs the real pieces on loopback: Mosquitto, GStreamer's RTSP server (tests/support/rtsp_server.py) and
`edged run` with N cameras on that one server (default settings for reconnects and timeouts), and with
`--microphones` a microphone on each camera's audio. Each run kills the server, keeps it down for
`--outage` seconds, starts it again, and measures, per source, the time from the server's return (it
answers on its port) to the source's retained `<base>/<source>/status` turning `online`. The promise
for cameras is <= 5 s.

    .venv/bin/python -m benchmarks reconnect --runs 5 [--out results.json]

Not a test: it prints one line per run and a summary, and can write every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Received, Subscriber
from tests.support.rtsp import RtspServer

BASE = "edged/bench"


def write_config(folder: Path, broker_port: int, url: str, cameras: int, extra: str, mics: bool) -> Path:
    path = folder / "edged.yaml"
    cams = ""
    for i in range(cameras):
        mic = f", microphone: {{id: cam{i}_mic, device: camera}}" if mics else ""
        cams += f"  cam{i}: {{url: '{url}'{extra}{mic}}}\n"
    path.write_text(f"device: {{id: bench}}\nstate_dir: {folder / 'state'}\nlog: {{level: info, format: json}}\n"
                    f"mqtt: {{port: {broker_port}}}\n"
                    f"models: {{captioner: {{backend: none}}}}\ncameras:\n{cams}")
    return path


def last_status(sub: Subscriber, cam: str) -> bytes | None:
    msgs = sub.on(f"{BASE}/{cam}/status")
    return msgs[-1].payload if msgs else None


def marks(sub: Subscriber, cams: list[str]) -> dict[str, int]:
    """How many status messages each camera has had so far."""
    return {cam: len(sub.on(f"{BASE}/{cam}/status")) for cam in cams}


def wait_all(sub: Subscriber, since: dict[str, int], payload: bytes, timeout: float) -> dict[str, float]:
    """Monotonic time at which each camera's status became `payload` after its first `since[cam]` messages."""
    seen: dict[str, float] = {}
    cams = list(since)

    def check(_msgs: list[Received]) -> bool:
        now = time.monotonic()
        for cam in cams:
            if cam not in seen and any(m.payload == payload for m in sub.on(f"{BASE}/{cam}/status")[since[cam]:]):
                seen[cam] = now
        return len(seen) == len(cams)

    if not check([]):
        sub.wait_for(check, timeout=timeout)
    return seen


def one_run(sub: Subscriber, server: RtspServer, cams: list[str], outage: float) -> dict[str, object]:
    before = marks(sub, cams)
    killed = time.monotonic()
    server.kill()
    offline = wait_all(sub, before, b"offline", timeout=30)
    time.sleep(max(0.0, killed + outage - time.monotonic()))
    before = marks(sub, cams)
    server.start()
    back = time.monotonic()  # start() returns once the server answers on its port
    online = wait_all(sub, before, b"online", timeout=60)
    return {
        "offline_after_kill_s": {c: round(t - killed, 2) for c, t in offline.items()},
        "down_s": round(back - killed, 2),
        "online_after_return_s": {c: round(online[c] - back, 2) for c in cams},
    }


def summarise(times: list[float]) -> dict[str, float]:
    return {"n": len(times), "min_s": min(times), "median_s": round(statistics.median(times), 2),
            "max_s": max(times), "over_5s": sum(t > 5.0 for t in times)}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--outage", type=float, default=5.0, help="seconds from the kill to the restart")
    ap.add_argument("--camera-options", default="", help="extra camera keys, e.g. ', read_timeout: 4s'")
    ap.add_argument("--microphones", action="store_true",
                    help="stream audio too and give each camera a microphone on it (timed like the cameras)")
    ap.add_argument("--out", type=Path, help="write all figures here as JSON")


def run(args: argparse.Namespace) -> int:
    cams = [f"cam{i}" for i in range(args.cameras)]
    sources = cams + [f"{cam}_mic" for cam in cams] * args.microphones
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="edged-reconnect-") as tmp:
        folder = Path(tmp)
        broker = Broker(folder).start()
        server = RtspServer(audio=args.microphones).start()
        sub = Subscriber(broker.port, [f"{BASE}/#"]).start()
        daemon = DaemonProcess(write_config(folder, broker.port, server.url, args.cameras,
                                             args.camera_options, args.microphones))
        try:
            wait_all(sub, dict.fromkeys(sources, 0), b"online", timeout=60)
            time.sleep(2)
            for i in range(args.runs):
                result = one_run(sub, server, sources, args.outage)
                runs.append(result)
                print(f"run {i + 1}: {json.dumps(result)}", flush=True)
                time.sleep(3)  # streaming again for a while before the next outage
        finally:
            daemon.stop()
            sub.stop()
            server.kill()
            broker.stop()
    summary = {kind: summarise([t for r in runs for name, t in r["online_after_return_s"].items()  # type: ignore[attr-defined]
                                if name.endswith("_mic") == (kind == "microphones")])
               for kind in ("cameras", "microphones")[:1 + args.microphones]}
    print(f"online after the server's return: {json.dumps(summary)}")
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
    return 0
