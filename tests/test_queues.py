"""Bounded queues: each drop policy does what its name says, and every drop is counted."""

from __future__ import annotations

import threading
import time

import pytest

from edged.queues import BoundedQueue, DropPolicy, QueueClosed


def test_drop_oldest_keeps_the_newest() -> None:
    """Live video: a full queue evicts its oldest item."""
    q: BoundedQueue[int] = BoundedQueue("t", 2, DropPolicy.DROP_OLDEST)
    results = [q.put(i) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert q.drain() == [3, 4]
    assert (q.dropped, q.put_count) == (3, 5)


def test_drop_newest_refuses_the_new_item() -> None:
    """Commands: a full queue refuses what comes last."""
    q: BoundedQueue[int] = BoundedQueue("t", 2, DropPolicy.DROP_NEWEST)
    assert [q.put(i) for i in range(3)] == [True, True, False]
    assert q.drain() == [0, 1]
    assert q.dropped == 1


def test_block_waits_for_room_and_loses_nothing() -> None:
    """Files: a producer waits for the consumer; every item arrives in order."""
    q: BoundedQueue[int] = BoundedQueue("t", 1, DropPolicy.BLOCK)
    got: list[int] = []

    def consume() -> None:
        for _ in range(50):
            item = q.get(timeout=5)
            assert item is not None
            got.append(item)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(50):
        assert q.put(i, timeout=5)
    t.join(5)
    assert got == list(range(50))
    assert q.dropped == 0


def test_block_with_a_deadline_counts_the_drop() -> None:
    """Audio: a put that can't get room in time is dropped and counted, not lost silently."""
    q: BoundedQueue[int] = BoundedQueue("t", 1, DropPolicy.BLOCK)
    q.put(1)
    assert q.put(2, timeout=0.01) is False
    assert q.dropped == 1


def test_close_releases_a_blocked_producer_and_the_consumer() -> None:
    """Closing wakes everyone: puts raise, gets raise once empty."""
    q: BoundedQueue[int] = BoundedQueue("t", 1, DropPolicy.BLOCK)
    q.put(1)
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            q.put(2)
        except QueueClosed as exc:
            errors.append(exc)

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.05)
    q.close()
    t.join(2)
    assert not t.is_alive()
    assert len(errors) == 1
    assert q.get(timeout=0) == 1
    with pytest.raises(QueueClosed):
        q.get(timeout=0)


def test_maxsize_must_be_positive() -> None:
    """An unbounded queue cannot be made by accident."""
    with pytest.raises(ValueError, match="maxsize"):
        BoundedQueue("t", 0, DropPolicy.BLOCK)
