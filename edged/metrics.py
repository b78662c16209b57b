"""Small, thread-safe measurements for stats: event rates over a window and latency percentiles."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateMeter:
    """Events per second over the last `window` seconds."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.total = 0

    def mark(self, n: int = 1) -> None:
        now = self._clock()
        with self._lock:
            self.total += n
            self._times.extend([now] * n)
            self._trim(now)

    def rate(self) -> float:
        now = self._clock()
        with self._lock:
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            span = max(now - self._times[0], 1e-6)
            return len(self._times) / min(self.window, max(span, 1.0))

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()


class Percentiles:
    """Keeps the last `size` samples; reports p50/p95/max."""

    def __init__(self, size: int = 1000) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(value)

    def values(self) -> list[float]:
        with self._lock:
            return list(self._samples)

    @classmethod
    def merged(cls, parts: list[Percentiles]) -> Percentiles:
        out = cls(sum(p._samples.maxlen or 0 for p in parts) or 1)
        for part in parts:
            for value in part.values():
                out.add(value)
        return out

    def summary(self) -> dict[str, float]:
        with self._lock:
            data = sorted(self._samples)
        if not data:
            return {"n": 0}
        return {"n": len(data), "p50": round(percentile(data, 50), 2), "p95": round(percentile(data, 95), 2),
                "max": round(data[-1], 2)}


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
