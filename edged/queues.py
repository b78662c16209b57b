"""Bounded queues with a named drop policy: every hand-off between edged's threads goes through one.

Live cameras use DROP_OLDEST (the freshest frame wins), file replay uses BLOCK (lossless), audio
uses BLOCK with a deadline and counts every overrun. Nothing is dropped without being counted.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DropPolicy(enum.Enum):
    """What `put` does when the queue is full."""

    DROP_OLDEST = "drop_oldest"  # evict the oldest item: consumers always see the newest
    DROP_NEWEST = "drop_newest"  # refuse the new item
    BLOCK = "block"  # wait for room (lossless), up to the put's timeout


class QueueClosed(Exception):
    """The queue was closed: no more items will come."""


class BoundedQueue(Generic[T]):
    """A thread-safe FIFO of at most `maxsize` items with an explicit drop policy and counters."""

    def __init__(self, name: str, maxsize: int, policy: DropPolicy) -> None:
        if maxsize < 1:
            raise ValueError(f"queue {name}: maxsize must be >= 1 (got {maxsize})")
        self.name = name
        self.maxsize = maxsize
        self.policy = policy
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.put_count = 0
        self.dropped = 0
        self.high_water = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add `item`; returns False when the item (or, for DROP_OLDEST, an older one) was dropped.

        With BLOCK, waits up to `timeout` seconds for room (forever when None) and drops the new
        item if none came. Raises `QueueClosed` after `close()`.
        """
        with self._cond:
            if self._closed:
                raise QueueClosed(self.name)
            self.put_count += 1
            ok = True
            if len(self._items) >= self.maxsize:
                ok = self._make_room(timeout)
                if not ok and self.policy is not DropPolicy.DROP_OLDEST:
                    self.dropped += 1
                    return False
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify()
            return ok

    def _make_room(self, timeout: float | None) -> bool:
        if self.policy is DropPolicy.DROP_OLDEST:
            self._items.popleft()
            self.dropped += 1
            return False
        if self.policy is DropPolicy.DROP_NEWEST:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._items) >= self.maxsize and not self._closed:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._cond.wait(remaining if remaining is not None else 0.5)
        if self._closed:
            raise QueueClosed(self.name)
        return True

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, or None after `timeout` seconds. Raises `QueueClosed` once closed and empty."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                if self._closed:
                    raise QueueClosed(self.name)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def drain(self) -> list[T]:
        """Take every queued item at once."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def close(self) -> None:
        """Wake every waiter; later puts raise and gets raise once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
