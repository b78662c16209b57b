"""The persistent outbox: every durable message is committed to SQLite (WAL) before it is published
and deleted only after the broker's PUBACK.

A `kill -9` at any moment loses nothing committed: on restart the backlog is sent again (QoS 1
means a message may arrive twice, never not at all). During a broker outage the outbox grows,
bounded by `max_events` and `ttl`; the oldest are evicted first and counted. When the disk is
full, new messages wait in a bounded memory queue and are written back once space returns.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from edged.events import Message
from edged.logs import get_logger

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    mono REAL NOT NULL,
    boot TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
);
"""


# Columns added since the first release, with what an older row gets: an empty boot id makes its age come
# from the wall clock, which is all that release recorded.
_ADDED_COLUMNS = {"mono": "REAL NOT NULL DEFAULT 0", "boot": "TEXT NOT NULL DEFAULT ''"}


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring an outbox written by an earlier edged to this schema, keeping its pending rows."""
    have = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    for name, decl in _ADDED_COLUMNS.items():
        if name not in have:
            db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {decl}")


def boot_id() -> str:
    """This boot's id: monotonic times are comparable only within one boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


BOOT = boot_id()


@dataclass(frozen=True)
class Pending:
    """A committed message waiting for its PUBACK.

    Ages are measured on the monotonic clock within one boot, so the wall clock jumping (NTP setting
    a Pi's clock at boot, a user changing it) neither expires events nor makes them look new.
    """

    id: int
    created: float  # wall clock when committed (used only across reboots)
    mono: float  # monotonic clock when committed
    boot: str
    message: Message

    def age(self) -> float:
        if self.boot == BOOT:
            return time.monotonic() - self.mono
        return max(0.0, time.time() - self.created)

    def committed_before(self, mono: float) -> bool:
        """Whether it was committed before monotonic time `mono` of this boot (always true for earlier boots)."""
        return self.boot != BOOT or self.mono < mono


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or used; the message names the file."""


class Outbox:
    """A bounded, ordered, crash-safe queue of messages in one SQLite file."""

    def __init__(self, path: Path, max_events: int, ttl: float, memory_limit: int = 10_000) -> None:
        self.path = path
        self.max_events = max_events
        self.ttl = ttl
        self._lock = threading.Lock()
        self._db = self._open(path)
        self._memory: deque[Pending] = deque()  # used only while the disk refuses writes
        self._memory_limit = memory_limit
        self.evicted = 0
        self.expired = 0
        self.disk_errors = 0
        self.last_disk_error = ""
        self._count: int = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        # Ids rise monotonically across disk and memory, so one "after id" cursor keeps the order.
        self._last_id = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process kill
            db.executescript(_SCHEMA)
            _upgrade(db)
            return db
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"outbox {path}: {exc}") from None

    def __len__(self) -> int:
        with self._lock:
            return self._count + len(self._memory)

    def add(self, message: Message) -> int:
        """Commit `message`; returns its id. Never raises for a full disk: the message waits in memory."""
        with self._lock:
            self._last_id += 1
            item = Pending(self._last_id, time.time(), time.monotonic(), BOOT, message)
            if not self._memory:
                try:
                    self._insert(item)
                    self._count += 1
                    self._enforce_bounds()
                    return item.id
                except sqlite3.OperationalError as exc:
                    self._disk_failed(exc)
            return self._add_to_memory(item)

    def _insert(self, p: Pending) -> None:
        m = p.message
        self._db.execute(
            "INSERT INTO outbox (id, created, mono, boot, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (p.id, p.created, p.mono, p.boot, m.topic, m.payload, m.qos, int(m.retain)))

    def _add_to_memory(self, item: Pending) -> int:
        if len(self._memory) >= self._memory_limit:
            self._memory.popleft()
            self.evicted += 1
        self._memory.append(item)
        return item.id

    def _disk_failed(self, exc: sqlite3.Error) -> None:
        if not self.disk_errors or str(exc) != self.last_disk_error:
            get_logger(component="outbox").error("outbox_write_failed", path=str(self.path), error=str(exc),
                                                 detail="events wait in memory until the disk takes them again")
        self.disk_errors += 1
        self.last_disk_error = str(exc)

    def flush_memory(self) -> int:
        """Write messages held in memory back to disk (called periodically); returns how many moved."""
        moved = 0
        with self._lock:
            while self._memory:
                item = self._memory[0]
                try:
                    self._insert(item)
                except sqlite3.OperationalError as exc:
                    self._disk_failed(exc)
                    break
                self._memory.popleft()
                self._count += 1
                moved += 1
        return moved

    def _enforce_bounds(self) -> None:
        if self._count > self.max_events:
            excess = self._count - self.max_events
            self._db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,))
            self._count -= excess
            self.evicted += excess

    def expire(self) -> int:
        """Delete messages older than `ttl` (monotonic within this boot, wall clock across boots)."""
        with self._lock:
            try:
                n = self._db.execute(
                    "DELETE FROM outbox WHERE (boot = ? AND mono < ?) OR (boot != ? AND created < ?)",
                    (BOOT, time.monotonic() - self.ttl, BOOT, time.time() - self.ttl)).rowcount
            except sqlite3.OperationalError as exc:
                self._disk_failed(exc)
                return 0
            stale = [p for p in self._memory if p.age() > self.ttl]
            for p in stale:
                self._memory.remove(p)
            self._count -= n
            self.expired += n + len(stale)
            return n + len(stale)

    def fetch_after(self, after: int, limit: int) -> list[Pending]:
        """Up to `limit` messages with id > `after`, oldest first (disk rows, then memory)."""
        with self._lock:
            rows = self._db.execute("SELECT id, created, mono, boot, topic, payload, qos, retain FROM outbox "
                                    "WHERE id > ? ORDER BY id LIMIT ?", (after, limit)).fetchall()
            out = [Pending(r[0], r[1], r[2], r[3], Message(r[4], bytes(r[5]), r[6], bool(r[7]), True)) for r in rows]
            if len(out) < limit:  # memory holds only ids above every disk row
                out.extend([p for p in self._memory if p.id > after][: limit - len(out)])
            return out

    def ack(self, ids: list[int]) -> None:
        """Delete acknowledged messages."""
        if not ids:
            return
        with self._lock:
            if self._memory:
                acked = set(ids)
                kept = deque(p for p in self._memory if p.id not in acked)
                ids = [i for i in ids if i not in {p.id for p in self._memory}]
                self._memory = kept
            try:
                n = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids]).rowcount
                self._count -= max(n, 0)
            except sqlite3.OperationalError as exc:  # deleting needs no space; rare, and retried on restart
                self._disk_failed(exc)

    def close(self) -> None:
        with self._lock:
            self._db.close()

