"""Callers of edged's HTTP API for tests and benchmarks: a real porch frame, OpenAI-style messages, a
burst of concurrent callers (the `openai` package's async client), and the daemon's per-event latencies."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import openai

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "porch.mp4"
QUESTION = "Who is on the porch?"


def porch_jpeg(at_s: float = 6.0, width: int = 640) -> bytes:
    """A frame of the porch sample (the person walking past), as a camera snapshot would be."""
    cap = cv2.VideoCapture(str(SAMPLE))
    cap.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read a frame of {SAMPLE}")
    frame = cv2.resize(frame, (width, width * frame.shape[0] // frame.shape[1]))
    return bytes(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1])


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def openai_messages(url: str, question: str = QUESTION) -> list[dict[str, Any]]:
    """One user message with the question and the image, as Frigate's provider sends it."""
    return [{"role": "user", "content": [{"type": "text", "text": question},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


async def burst(url: str, token: str, image_url: str, seconds: float, clients: int, polite: bool = True,
                max_tokens: int = 8) -> dict[str, int]:
    """`clients` concurrent callers for `seconds`, each asking again when answered; refused, a polite one
    waits Retry-After first (as the openai client's own retries do), an impolite one asks again at once.
    Outcomes: "200", "429" or "503" (a refusal without a Retry-After of at least 1 s is counted apart)."""
    api = openai.AsyncOpenAI(base_url=url + "/v1", api_key=token, max_retries=0, timeout=120)
    counts: dict[str, int] = {}
    end = time.monotonic() + seconds
    messages: Any = openai_messages(image_url)

    async def caller() -> None:
        while time.monotonic() < end:
            wait = 0
            try:
                reply = await api.chat.completions.create(model="m", messages=messages, max_tokens=max_tokens)
                outcome = "200" if reply.choices[0].message.content else "200-empty"
            except openai.APIStatusError as exc:
                retry = exc.response.headers.get("retry-after", "")
                wait = int(retry) if retry.isdigit() and polite else 0
                outcome = f"{exc.status_code}" + ("" if retry.isdigit() and int(retry) >= 1 else "-without-retry-after")
            except openai.APIConnectionError:
                outcome = "connection-error"
            counts[outcome] = counts.get(outcome, 0) + 1
            await asyncio.sleep(wait)

    await asyncio.gather(*(caller() for _ in range(clients)))
    await api.close()
    return counts


def new_latencies(lines: Iterable[Mapping[str, object]], since: float, until: float) -> dict[str, list[float]]:
    """Trigger -> `new` milliseconds of each event the daemon opened in a wall-clock window, by trigger
    (from its `event_new` log lines)."""
    out: dict[str, list[float]] = {}
    for line in lines:
        if line.get("event") != "event_new":
            continue
        ts = datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()
        if since <= ts <= until:
            out.setdefault(str(line["trigger"]), []).append(float(str(line["latency_ms"])))
    return {trigger: sorted(ms) for trigger, ms in out.items()}
