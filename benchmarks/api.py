"""The HTTP API: its latency over a direct caption, and camera events during a burst of API callers.

`overhead`: the same image (a porch frame, as a JPEG) and question, captioned in rounds by the
captioner called directly in this process (`edged caption`'s path: decode the JPEG, caption it) and by
an `edged run` daemon through `POST /v1/chat/completions` with the `openai` client (base64 data URL,
JSON, HTTP, the scheduler's image lane, the model, the answer back). Greedy decoding writes the same
tokens both ways (checked), so the difference is the endpoint's cost; the goal is <= 2% of the
caption time. The rounds interleave the two (the API first every other round), so a loaded machine
slows both alike; the median of the rounds' differences is the figure, best and medians beside it.

`burst`: a daemon with the tiny model and a camera playing the porch sample in a loop (two motion
starts and a keyword per 30 s pass): one pass with no API traffic, one with 50 concurrent callers that
wait Retry-After when refused (as the openai client's retries do), one with 50 that ask again at once
(a flood). Per pass: the trigger -> `new` latency of the camera's motion and keyword events (from the
daemon's `event_new` log lines), what the callers got (200, 429, 503), and the daemon's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import REPO, child_env
from benchmarks.report import cpu_flags, load_average, machine, today

TINY = REPO / "tests" / "fixtures" / "glm-edge-v-tiny"
GOAL_PCT = 2.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--part", choices=("overhead", "burst", "all"), default="all")
    p.add_argument("--bundle", type=Path, default=REPO / ".cache" / "glm-edge-v-2b-random",
                   help="bundle for the overhead part (default: the 2B-shaped one, models/export-2b-random.sh)")
    p.add_argument("--variant", default="int4")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3, help="rounds of the overhead part")
    p.add_argument("--seconds", type=float, default=31.0, help="length of each burst pass (one loop of the clip)")
    p.add_argument("--report", type=Path, help="write the figures as Markdown here")


# -- overhead -----------------------------------------------------------------------------------------
def _daemon(tmp: Path, captioner: str, api: str, cameras: str = "") -> Any:
    from tests.support.broker import Broker, free_port
    from tests.support.daemon import DaemonProcess

    broker = Broker(tmp).start()
    port = free_port()
    config = tmp / "edged.yaml"
    config.write_text(f"device: {{id: bench}}\nstate_dir: {tmp / 'state'}\nlog: {{level: info, format: json}}\n"
                      f"mqtt: {{port: {broker.port}}}\nmodels: {{captioner: {captioner}}}\n"
                      f"api: {{listen: 127.0.0.1:{port}{api}}}\n{cameras}")
    daemon = DaemonProcess(config, env=child_env())
    daemon.wait_log("api_listening", timeout=600)
    return broker, daemon, f"http://127.0.0.1:{port}"


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    import openai

    from edged.config.schema import CaptionerConfig
    from edged.inference.glm_edge_v import GlmEdgeVCaptioner
    from tests.support.api import porch_jpeg

    if not (args.bundle / "manifest.json").is_file():
        raise SystemExit(f"error: {args.bundle} is not a bundle; make it with models/export-2b-random.sh "
                         "(or pass --bundle tests/fixtures/glm-edge-v-tiny)")
    jpeg = porch_jpeg(width=1280)
    with tempfile.TemporaryDirectory(prefix="edged-bench-api-") as tmp_name:
        tmp = Path(tmp_name)
        image_path = tmp / "porch.jpg"
        image_path.write_bytes(jpeg)
        settings = f"{{path: {args.bundle.resolve()}, variant: {args.variant}, threads: {args.threads}, " \
                   f"max_new_tokens: {args.new_tokens}}}"
        broker, daemon, url = _daemon(tmp, settings, ", max_tokens: 1024, deadline: 10m")
        direct = GlmEdgeVCaptioner(CaptionerConfig(path=args.bundle, variant=args.variant, threads=args.threads,
                                                   max_new_tokens=args.new_tokens))
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
        rows: list[dict[str, float]] = []
        try:
            for round_ in range(args.repeat):
                if round_ % 2:  # every other round the API goes first: neither side always runs second
                    reply, api_s = _through_api(client, jpeg, args.new_tokens)
                    result, direct_s = _direct(direct, image_path, args.new_tokens)
                else:
                    result, direct_s = _direct(direct, image_path, args.new_tokens)
                    reply, api_s = _through_api(client, jpeg, args.new_tokens)
                same = reply.choices[0].message.content == result.text
                tokens = reply.usage.completion_tokens if reply.usage is not None else -1
                rows.append({"direct_s": direct_s, "api_s": api_s, "tokens": float(len(result.tokens)),
                             "api_tokens": float(tokens), "same": float(same)})
                print(f"[api bench] round {round_ + 1}: direct {direct_s:.2f} s, API {api_s:.2f} s, "
                      f"{len(result.tokens)} tokens, same text: {same}", file=sys.stderr, flush=True)
        finally:
            client.close()
            direct.close()
            daemon.stop()
            broker.stop()
    best_d, best_a = min(r["direct_s"] for r in rows), min(r["api_s"] for r in rows)
    med_d, med_a = statistics.median(r["direct_s"] for r in rows), statistics.median(r["api_s"] for r in rows)
    paired = statistics.median(r["api_s"] - r["direct_s"] for r in rows)  # a round's two runs see the same load
    return {"rows": rows, "best_direct_s": best_d, "best_api_s": best_a, "median_direct_s": med_d,
            "median_api_s": med_a, "overhead_best_pct": 100 * (best_a - best_d) / best_d,
            "overhead_median_pct": 100 * (med_a - med_d) / med_d, "paired_ms": paired * 1000,
            "paired_pct": 100 * paired / med_d, "same_text": all(r["same"] for r in rows),
            "tokens": rows[0]["tokens"]}


def _direct(captioner: Any, image_path: Path, new_tokens: int) -> tuple[Any, float]:
    """`edged caption`'s path: read the JPEG, caption it."""
    from edged.inference.images import load_image
    from tests.support.api import QUESTION

    t0 = time.perf_counter()
    result = captioner.caption(load_image(image_path), QUESTION, max_new_tokens=new_tokens)
    return result, time.perf_counter() - t0


def _through_api(client: Any, jpeg: bytes, new_tokens: int) -> tuple[Any, float]:
    """The same JPEG and question as a data URL through `POST /v1/chat/completions`."""
    from tests.support.api import data_url, openai_messages

    t0 = time.perf_counter()
    reply = client.chat.completions.create(model="m", messages=openai_messages(data_url(jpeg)),
                                           max_tokens=new_tokens)
    return reply, time.perf_counter() - t0


# -- burst ----------------------------------------------------------------------------------------------
def burst_passes(args: argparse.Namespace) -> list[dict[str, Any]]:
    import psutil

    from tests.support.api import SAMPLE, burst, data_url, new_latencies, porch_jpeg
    from tests.support.mqtt import Subscriber

    image = data_url(porch_jpeg())
    camera = (f"cameras:\n  porch: {{url: {SAMPLE}, loop: true, motion: {{off_delay: 3s}},\n"
              "    microphone: {device: camera, loop: true}}\n")
    passes = []
    with tempfile.TemporaryDirectory(prefix="edged-bench-api-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "token").write_text("bench-token\n")
        broker, daemon, url = _daemon(tmp, f"{{path: {TINY}, max_new_tokens: 16}}",
                                      f", token_file: {tmp / 'token'}", camera)
        proc = psutil.Process(daemon.proc.pid)
        sub = Subscriber(broker.port, ["edged/bench/porch/caption"]).start()
        try:
            time.sleep(5)  # the camera and microphone are streaming
            for name, callers in (("no API traffic", None), ("50 callers, Retry-After", True),
                                  ("50 callers, no waiting (flood)", False)):
                print(f"[api bench] burst pass: {name} ...", file=sys.stderr, flush=True)
                cpu: list[float] = []
                stop = threading.Event()
                sampler = threading.Thread(target=_sample_cpu, args=(proc, cpu, stop), daemon=True)
                sampler.start()
                since = time.time()
                counts: dict[str, int] = {}
                if callers is None:
                    time.sleep(args.seconds)
                else:
                    counts = asyncio.run(burst(url, "bench-token", image, args.seconds, 50, polite=callers))
                until = time.time()
                stop.set()
                sampler.join()
                latencies = new_latencies(daemon.lines(), since, until)
                captions = [json.loads(m.payload) for m in sub.on("edged/bench/porch/caption")]
                captioned = [c["trigger"] for c in captions if since <= c["published_ts"] <= until]
                passes.append({"name": name, "counts": counts, "motion_ms": latencies.get("motion", []),
                               "keyword_ms": latencies.get("keyword", []),
                               "captions": {k: captioned.count(k) for k in sorted(set(captioned))},
                               "cpu_pct": statistics.mean(cpu) if cpu else 0.0})
                print(f"[api bench]   {passes[-1]}", file=sys.stderr, flush=True)
        finally:
            sub.stop()
            daemon.stop()
            broker.stop()
    return passes


def _sample_cpu(proc: Any, out: list[float], stop: threading.Event) -> None:
    proc.cpu_percent()
    while not stop.wait(2.0):
        out.append(proc.cpu_percent())


# -- report ---------------------------------------------------------------------------------------------
def report(args: argparse.Namespace, over: dict[str, Any] | None, passes: list[dict[str, Any]]) -> str:
    lines = ["# Benchmark: python -m benchmarks api", "",
             f"- machine: {machine()}; {cpu_flags()}",
             f"- date: {today()}; load average at the end: {load_average()}"]
    if over is not None:
        lines += ["", "## Endpoint latency over a direct caption", "",
                  f"- command: `python -m benchmarks api --part overhead --bundle {args.bundle} --variant "
                  f"{args.variant} --threads {args.threads} --new-tokens {args.new_tokens} --repeat {args.repeat}`",
                  f"- goal: the endpoint adds <= {GOAL_PCT:g}% to the caption time",
                  "", "| round | direct caption ms | through the API ms | API - direct ms | tokens | same text |",
                  "|---|---|---|---|---|---|"]
        for i, r in enumerate(over["rows"], 1):
            lines.append(f"| {i} | {r['direct_s'] * 1000:.0f} | {r['api_s'] * 1000:.0f} "
                         f"| {(r['api_s'] - r['direct_s']) * 1000:+.0f} | {r['tokens']:.0f} "
                         f"| {'yes' if r['same'] else 'NO'} |")
        lines += ["", f"Median of the rounds' differences: **{over['paired_ms']:+.0f} ms = "
                  f"{over['paired_pct']:+.2f}%** of the median direct caption "
                  f"({over['median_direct_s'] * 1000:.0f} ms). "
                  f"Best of {args.repeat}: direct {over['best_direct_s'] * 1000:.0f} ms, API "
                  f"{over['best_api_s'] * 1000:.0f} ms ({over['overhead_best_pct']:+.2f}%); medians "
                  f"{over['overhead_median_pct']:+.2f}%."]
    if passes:
        lines += ["", "## Camera events during a burst of API callers (tiny model, porch sample)", "",
                  f"- command: `python -m benchmarks api --part burst --seconds {args.seconds:g}`", "",
                  "| pass | motion: trigger -> `new` ms | keyword: trigger -> `new` ms | camera captions published "
                  "| API answers | daemon CPU % |",
                  "|---|---|---|---|---|---|"]
        for p in passes:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(p["counts"].items())) or "-"
            captions = ", ".join(f"{k}: {v}" for k, v in p["captions"].items()) or "none"
            lines.append(f"| {p['name']} | {_ms(p['motion_ms'])} | {_ms(p['keyword_ms'])} | {captions} | {counts} "
                         f"| {p['cpu_pct']:.0f} |")
    return "\n".join(lines) + "\n"


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values) if values else "none"


def run(args: argparse.Namespace) -> int:
    over = overhead(args) if args.part in ("overhead", "all") else None
    passes = burst_passes(args) if args.part in ("burst", "all") else []
    text = report(args, over, passes)
    print(text)
    if args.report:
        args.report.write_text(text, encoding="utf-8")
    return 0
