"""The history database: moments (captions, answers, watch changes) with full-text search and their
snapshots as JPEG files beside it, bounded by age and by total size.

Layout under the history directory (`<state_dir>/history` by default):

    history.db            SQLite in WAL mode: one writer (the daemon's recorder), any number of readers
    snapshots/YYYY-MM-DD/  one JPEG per moment that has one, named in the moment's row

`HistoryStore` is the writer (one thread uses it); `search()` opens the file read-only, so the CLI
and the daemon's `search` request read while the recorder writes. Retention deletes moments older than
`max_age`, then the oldest moments until the database's live pages plus the snapshots fit `max_bytes`.
A snapshot file is written before its row is committed and deleted after its row is: a crash leaves at
worst a file without a row, and those are swept when the store opens.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.memory.query import QueryError, SearchQuery

DB_NAME = "history.db"
SNAPSHOTS = "snapshots"
SCHEMA_VERSION = 1
ROW_OVERHEAD = 96  # bytes a row costs beyond its text (record header, index entries, FTS postings), roughly
_SCHEMA = """
CREATE TABLE IF NOT EXISTS moments (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    camera TEXT NOT NULL,
    kind TEXT NOT NULL,
    trigger TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    question TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '',
    threat_level INTEGER,
    model TEXT NOT NULL DEFAULT '',
    snapshot TEXT,
    snapshot_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS moments_ts ON moments(ts);
CREATE VIRTUAL TABLE IF NOT EXISTS moments_fts USING fts5(
    title, text, question, labels, content='moments', content_rowid='id', tokenize='porter unicode61');
CREATE TRIGGER IF NOT EXISTS moments_added AFTER INSERT ON moments BEGIN
    INSERT INTO moments_fts(rowid, title, text, question, labels)
    VALUES (new.id, new.title, new.text, new.question, new.labels);
END;
CREATE TRIGGER IF NOT EXISTS moments_deleted AFTER DELETE ON moments BEGIN
    INSERT INTO moments_fts(moments_fts, rowid, title, text, question, labels)
    VALUES ('delete', old.id, old.title, old.text, old.question, old.labels);
END;
"""
# bm25 weights per FTS column (title, text, question, labels): a word in the title says more.
_RANK = "bm25(moments_fts, 4.0, 1.0, 0.5, 0.5)"
_COLUMNS = "m.id, m.ts, m.camera, m.kind, m.trigger, m.event_id, m.title, m.text, m.question, m.labels, " \
           "m.threat_level, m.model, m.snapshot"


class HistoryError(RuntimeError):
    """The history database cannot be used (missing, unreadable, from a newer edged)."""


@dataclass(frozen=True)
class Moment:
    """One remembered moment: what was seen (or answered) on a camera, when, and its snapshot."""

    ts: float  # wall clock of the frame
    camera: str
    kind: str  # caption | answer | watch
    title: str
    text: str
    trigger: str = ""
    event_id: str = ""
    question: str = ""
    labels: tuple[str, ...] = ()
    threat_level: int | None = None
    model: str = ""
    id: int | None = None  # the row, once stored
    snapshot: str | None = None  # path relative to the history directory

    def to_payload(self, root: Path) -> dict[str, Any]:
        """The JSON form (the CLI's lines, the `search` response): the snapshot as a path on the board."""
        when = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.ts))
        return {"id": self.id, "time": when, "ts": round(self.ts, 3), "camera": self.camera, "kind": self.kind,
                "trigger": self.trigger, "event_id": self.event_id or None, "title": self.title,
                "text": self.text, "question": self.question or None, "labels": list(self.labels),
                "threat_level": self.threat_level, "model": self.model,
                "snapshot": str(root / self.snapshot) if self.snapshot else None}


class HistoryStore:
    """The writing side (see the module doc). Used by one thread at a time; `close()` when done."""

    def __init__(self, root: Path, max_age: float, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.max_age = max_age
        self.max_bytes = max_bytes
        self._clock = clock
        root.mkdir(parents=True, exist_ok=True)
        (root / SNAPSHOTS).mkdir(exist_ok=True)
        # check_same_thread off: opened by the owner, then used by the recorder thread alone.
        self._db = sqlite3.connect(root / DB_NAME, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, no fsync per row
        self._db.execute("PRAGMA journal_size_limit=4194304")  # the WAL shrinks back to 4 MB after a checkpoint
        self._migrate()
        self._snapshot_bytes = int(self._db.execute("SELECT COALESCE(SUM(snapshot_bytes), 0) FROM moments")
                                   .fetchone()[0])
        self.orphans_removed = self._sweep_orphans()

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise HistoryError(f"{self.root / DB_NAME} is from a newer edged (schema {version}; this one "
                               f"knows {SCHEMA_VERSION})")
        # One script, one transaction (executescript commits whatever is pending before it runs).
        self._db.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nPRAGMA user_version={SCHEMA_VERSION};\nCOMMIT;")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _sweep_orphans(self) -> int:
        """Delete snapshot files no row names (a crash between writing one and committing its row)."""
        named = {row[0] for row in self._db.execute("SELECT snapshot FROM moments WHERE snapshot IS NOT NULL")}
        removed = 0
        for path in (self.root / SNAPSHOTS).glob("*/*.jpg"):
            if str(path.relative_to(self.root)) not in named:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- writing ---------------------------------------------------------------------------------------
    def add(self, moment: Moment, jpeg: bytes | None = None) -> int:
        """Store `moment` (and its snapshot); returns its row id. Retention is `prune()`'s job."""
        snapshot = self._write_snapshot(moment, jpeg) if jpeg else None
        try:
            with self._transaction():
                cursor = self._db.execute(
                    "INSERT INTO moments (ts, camera, kind, trigger, event_id, title, text, question, labels, "
                    "threat_level, model, snapshot, snapshot_bytes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (moment.ts, moment.camera, moment.kind, moment.trigger, moment.event_id, moment.title,
                     moment.text, moment.question, " ".join(moment.labels), moment.threat_level, moment.model,
                     snapshot, len(jpeg) if snapshot and jpeg else 0))
        except BaseException:
            if snapshot is not None:
                (self.root / snapshot).unlink(missing_ok=True)
            raise
        if snapshot and jpeg:
            self._snapshot_bytes += len(jpeg)
        return int(cursor.lastrowid or 0)

    def _write_snapshot(self, moment: Moment, jpeg: bytes) -> str:
        day = time.strftime("%Y-%m-%d", time.gmtime(moment.ts))
        safe_camera = "".join(c if c.isalnum() or c in "-_" else "_" for c in moment.camera)[:64]
        name = f"{SNAPSHOTS}/{day}/{safe_camera}-{int(moment.ts * 1000)}-{secrets.token_hex(3)}.jpg"
        path = self.root / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(jpeg)
        return name

    # -- retention -------------------------------------------------------------------------------------
    def prune(self) -> int:
        """Delete moments older than `max_age`, then the oldest until the total fits `max_bytes`; returns how
        many were deleted."""
        cutoff = self._clock() - self.max_age
        removed = self._delete("SELECT id, snapshot, snapshot_bytes FROM moments WHERE ts < ?", (cutoff,))
        for _ in range(10_000):  # each pass frees at least one row; the bound only guards against a bug
            excess = self.used_bytes() - self.max_bytes
            if excess <= 0:
                break
            chosen = self._oldest_covering(excess)
            if not chosen:
                break
            marks = ",".join("?" * len(chosen))
            removed += self._delete(f"SELECT id, snapshot, snapshot_bytes FROM moments WHERE id IN ({marks})",
                                    tuple(chosen))
        return removed

    def _oldest_covering(self, excess: int) -> list[int]:
        """The oldest moments whose snapshots and text add up to `excess` bytes (at least one)."""
        chosen: list[int] = []
        freed = 0
        rows = self._db.execute(
            "SELECT id, snapshot_bytes + length(title) + length(text) + length(question) + length(labels) "
            "FROM moments ORDER BY ts, id LIMIT 512")
        for row_id, size in rows:
            chosen.append(int(row_id))
            freed += int(size) + ROW_OVERHEAD
            if freed >= excess:
                break
        return chosen

    def _delete(self, select: str, args: tuple[Any, ...]) -> int:
        with self._transaction():
            rows = self._db.execute(select, args).fetchall()
            if not rows:
                return 0
            marks = ",".join("?" * len(rows))
            self._db.execute(f"DELETE FROM moments WHERE id IN ({marks})", [r[0] for r in rows])
        for _row_id, snapshot, size in rows:  # after the commit: a row never names a missing file
            if snapshot:
                self._snapshot_bytes -= int(size)
                path = self.root / snapshot
                path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # the day's directory, once empty
                    path.parent.rmdir()
        return len(rows)

    # -- figures ---------------------------------------------------------------------------------------
    def used_bytes(self) -> int:
        """The database's live pages plus the snapshots (the WAL adds up to a few MB between checkpoints)."""
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        return (pages - free) * size + self._snapshot_bytes

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM moments").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def open_reader(root: Path) -> sqlite3.Connection:
    """The history database, read-only (raises `HistoryError` when there is none, or it cannot be read)."""
    path = root / DB_NAME
    if not path.is_file():
        raise HistoryError(f"no history at {path} (is history enabled, and has edged run?)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read {path}: {exc}") from None
    if version != SCHEMA_VERSION:
        db.close()
        raise HistoryError(f"{path} has schema {version}; this edged reads {SCHEMA_VERSION}")
    return db


def search(root: Path, query: SearchQuery) -> list[Moment]:
    """The moments matching `query`, best first (then newest); raises `HistoryError` or `QueryError`."""
    db = open_reader(root)
    try:
        return _search(db, query)
    finally:
        db.close()


def _search(db: sqlite3.Connection, query: SearchQuery) -> list[Moment]:
    where: list[str] = ["moments_fts MATCH ?"]
    args: list[object] = [query.match]
    for clause, value in (("m.ts >= ?", query.since), ("m.ts < ?", query.until), ("m.camera = ?", query.camera),
                          ("m.kind = ?", query.kind)):
        if value is not None:
            where.append(clause)
            args.append(value)
    sql = (f"SELECT {_COLUMNS} FROM moments_fts JOIN moments m ON m.id = moments_fts.rowid "
           f"WHERE {' AND '.join(where)} ORDER BY {_RANK}, m.ts DESC LIMIT ?")
    try:
        rows = db.execute(sql, [*args, query.limit]).fetchall()
    except sqlite3.OperationalError as exc:  # the expression is built to be valid: this is a bug or a bad file
        raise QueryError(f"the search could not be run ({exc})") from None
    return [_moment(row) for row in rows]


def _moment(row: tuple[Any, ...]) -> Moment:
    (row_id, ts, camera, kind, trigger, event_id, title, text, question, labels, threat, model, snapshot) = row
    return Moment(float(ts), camera, kind, title, text, trigger, event_id, question,
                  tuple(labels.split()) if labels else (), threat, model, int(row_id), snapshot)


def dumps(moments: list[Moment], root: Path) -> list[str]:
    """One JSON line per moment (the CLI's `--json`)."""
    return [json.dumps(m.to_payload(root), ensure_ascii=False) for m in moments]
