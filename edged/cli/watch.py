"""`edged watch`: a live terminal view of what edged publishes (a real MQTT subscriber)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edged.config import ConfigError, load_config

_COLOURS = {"events": "33", "caption": "32", "keyword": "35", "motion": "36", "status": "34", "response": "37"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("watch", help="show what edged publishes, live")
    p.add_argument("-c", "--config", help="read broker and topics from this config")
    p.add_argument("--host", help="broker host (default: the config's, or 127.0.0.1)")
    p.add_argument("--port", type=int, help="broker port (default: the config's, or 1883)")
    p.add_argument("--topic", help="topic filter (default: <base>/#)")
    p.add_argument("--stats", action="store_true", help="also show the periodic stats")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    p.set_defaults(func=run)


def describe(topic: str, payload: bytes) -> str:
    """One readable line for a message (pure, so the view is testable)."""
    if topic.endswith("/snapshot"):
        return f"[JPEG snapshot, {len(payload) / 1024:.1f} KB]"
    try:
        data: Any = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return payload.decode(errors="replace")[:200]
    if not isinstance(data, dict):
        return str(data)[:200]
    return _describe_json(topic, data)


def _describe_json(topic: str, d: dict[str, Any]) -> str:
    late = " (replayed)" if d.get("replayed") else ""
    if topic.endswith("/keyword"):
        return f"heard {d.get('event_type')!r} score {d.get('score')} at {d.get('stream_time')} s{late}"
    if topic.endswith("/events"):
        what = d.get("caption") or d.get("keyword") or ""
        labels = ",".join(d.get("labels") or [])
        return f"{d.get('type'):6} {d.get('id')} {d.get('camera')} [{d.get('trigger')}] {what} {labels}{late}".strip()
    if topic.endswith("/caption"):
        return f"{d.get('title')!r} ({d.get('latency_ms')} ms, {d.get('trigger')}){late}"
    if topic.endswith("/health"):
        reason = "" if d.get("reason") == d.get("state") else f": {d.get('reason')}"
        return f"{d.get('state')}{reason} (reconnects {d.get('reconnects')}, stalls {d.get('stalls')})"
    if topic.endswith("/stats"):
        parts = [f"{k} {v.get('analysed_fps', v.get('chunks_per_s', ''))}/s" for k, v in d.get("sources", {}).items()]
        return f"uptime {d.get('uptime_s')} s, rss {d.get('system', {}).get('rss_mb')} MB, " + ", ".join(parts)
    return json.dumps(d)[:200]


def run(args: argparse.Namespace) -> int:
    host, port, base = args.host or "127.0.0.1", args.port or 1883, "edged/+"
    if args.config:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        host, port, base = args.host or config.mqtt.host, args.port or config.mqtt.port, config.base_topic
    topic = args.topic or f"{base}/#"
    colour = sys.stdout.isatty()
    stop = threading.Event()

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic.endswith("/stats") and not args.stats:
            return
        kind = msg.topic.rsplit("/", 1)[-1]
        short = msg.topic.split("/", 2)[-1] if msg.topic.count("/") >= 2 else msg.topic
        line = f"{time.strftime('%H:%M:%S')} {short:28} {describe(msg.topic, bytes(msg.payload))}"
        code = _COLOURS.get(kind) or _COLOURS.get(msg.topic.split("/")[2] if msg.topic.count("/") > 2 else "")
        print(f"\033[{code}m{line}\033[0m" if colour and code else line, flush=True)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"edged-watch-{uuid.uuid4().hex[:6]}")
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_message = on_message
    try:
        client.connect(host, port)
    except OSError as exc:
        print(f"cannot reach the broker at {host}:{port}: {exc}", file=sys.stderr)
        return 1
    print(f"watching {topic} on {host}:{port} (Ctrl-C to stop)", flush=True)
    client.loop_start()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
        stop.wait(args.seconds or None)
    client.disconnect()
    client.loop_stop()
    return 0
