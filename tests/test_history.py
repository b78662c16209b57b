"""The memory's core: search-query parsing (tables, injection attempts), the SQLite store (ranking,
filters, retention by age and by size against a clock the test sets) and the recorder thread (snapshots
written off the caller's thread, the drop policy, flush on stop). Real SQLite files in a temporary
directory; no fakes."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.analysis.history import AnalysedFrame
from edged.config.schema import HistoryConfig
from edged.events import Caption, MotionState, TriggerKind
from edged.memory.query import MAX_QUERY, QueryError, build_query, fts_expression, parse_time
from edged.memory.recorder import Recorder, caption_moment
from edged.memory.store import DB_NAME, SCHEMA_VERSION, HistoryError, HistoryStore, Moment, search

NOW = 1_800_000_000.0
DAY = 86400.0


class Clock:
    """Wall-clock time the test sets."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def jpeg(size: int) -> bytes:
    """A JPEG-looking blob of exactly `size` bytes (the store counts bytes, it does not decode)."""
    return b"\xff\xd8" + b"\0" * (size - 2)


def store(root: Path, max_age: float = 30 * DAY, max_bytes: int = 10**9, clock: Clock | None = None) -> HistoryStore:
    return HistoryStore(root, max_age, max_bytes, clock or Clock())


def titles(root: Path, text: str, **filters: object) -> list[str]:
    return [m.title for m in search(root, build_query(text, now=NOW, **filters))]  # type: ignore[arg-type]


# -- query parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expression"), [
    ("red car", '("red" AND "car")'),
    ('"red car"', '("red car")'),
    ("deliv*", '("deliv"*)'),
    ("cat OR dog", '("cat") OR ("dog")'),
    ("red car OR blue van", '("red" AND "car") OR ("blue" AND "van")'),
    ("car -night", '(("car")) NOT "night"'),
    ("car NOT night", '(("car")) NOT "night"'),
    ("  Car,  PARKED!  ", '("Car" AND "PARKED")'),
    ("OR car OR", '("car")'),
    ("voiture garée", '("voiture" AND "garée")'),
])
def test_words_become_quoted_fts_terms(text: str, expression: str) -> None:
    """Words, phrases, prefixes, OR and exclusions map to FTS5 with every term quoted."""
    assert fts_expression(text) == expression


@pytest.mark.parametrize(("text", "expression"), [
    ("title:car", '("title" AND "car")'),  # a column filter is two words
    ("NEAR(red car, 2)", '("NEAR" AND "red" AND "car" AND "2")'),
    ("^red +car {title text}", '("red" AND "car" AND "title" AND "text")'),
    ("car AND", '("car" AND "AND")'),  # FTS5's AND is a plain word here (words are ANDed anyway)
    ("'; DROP TABLE moments; --", '("DROP" AND "TABLE" AND "moments")'),
    ('car "" -', '("car")'),
])
def test_fts_syntax_in_a_query_is_taken_as_words(text: str, expression: str) -> None:
    """Injection attempts (columns, NEAR, ^, +, braces, SQL) are words, never FTS5 or SQL syntax."""
    assert fts_expression(text) == expression


@pytest.mark.parametrize(("text", "message"), [
    ("", "no words"),
    ("   ", "no words"),
    ("!!! ??? ...", "no words"),
    ("OR NOT", "no words"),
    ("-night", "only excludes"),
    ('"red car', "not closed"),
    ('red" car', "not closed"),
    ("x" * (MAX_QUERY + 1), "limit is 500"),
    (" ".join(f"w{i}" for i in range(17)), "more than 16 words"),
])
def test_bad_queries_are_refused_with_the_reason(text: str, message: str) -> None:
    """Empty, unbalanced, negative-only, huge and too-many-word queries raise QueryError naming why."""
    with pytest.raises(QueryError, match=message):
        fts_expression(text)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("1d", NOW - DAY), ("90m", NOW - 5400), ("30s", NOW - 30), (1_700_000_000, 1_700_000_000.0),
])
def test_since_takes_durations_and_timestamps(value: object, expected: float | None) -> None:
    """`since` is a duration back from now or seconds since the epoch."""
    assert parse_time(value, NOW, "since") == expected


def test_since_takes_iso_dates_in_local_time() -> None:
    """An ISO date-time without a zone is local time; with a zone it is that zone."""
    assert parse_time("2027-01-15T08:00:00+00:00", NOW, "since") == NOW
    assert parse_time("2027-01-15", NOW, "since") == dt.datetime(2027, 1, 15).timestamp()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"since": "yesterday"}, "since must be a duration"),
    ({"since": True}, "since must be"),
    ({"until": "1d", "since": "1h"}, "until must be later"),
    ({"limit": 0}, "limit must be"),
    ({"limit": 201}, "limit must be"),
    ({"limit": "5"}, "limit must be"),
    ({"kind": "video"}, "kind must be one of caption, answer, watch"),
    ({"camera": ""}, "camera must be"),
    ({"camera": 3}, "camera must be"),
])
def test_bad_filters_are_refused(kwargs: dict[str, object], message: str) -> None:
    """Every filter is checked, with an error that names it."""
    with pytest.raises(QueryError, match=message):
        build_query("car", now=NOW, **kwargs)  # type: ignore[arg-type]


def test_a_query_that_is_not_text_is_refused() -> None:
    """A number or a list as the query (an MQTT request) is an error, not a crash."""
    for value in (42, ["car"], None, {"q": 1}):
        with pytest.raises(QueryError, match="must be text"):
            build_query(value, now=NOW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list('ab "*-():^+{}\'ORNTAD,.é\\')), max_size=40))
def test_any_text_is_a_clear_error_or_a_search_that_runs(text: str, tmp_path: Path) -> None:
    """Whatever a user types, FTS5 never sees a syntax error: QueryError, or results."""
    root = tmp_path / "h"
    if not (root / DB_NAME).exists():
        db = store(root)
        db.add(Moment(NOW, "porch", "caption", "a b", "ab ba OR NOT"))
        db.close()
    try:
        q = build_query(text, now=NOW)
    except QueryError:
        return
    search(root, q)  # raises on an FTS5 syntax error


# -- the store: search -----------------------------------------------------------------------------------
@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A history with a few moments of two cameras over three days."""
    db = store(tmp_path)
    for m in [
        Moment(NOW - 2 * DAY, "porch", "caption", "Courier at the door", "A courier leaves a parcel.",
               "motion", labels=("person", "package")),
        Moment(NOW - DAY, "drive", "caption", "Red car parks", "A red car parks in the driveway.", "motion",
               labels=("vehicle",)),
        Moment(NOW - 3600, "drive", "caption", "Quiet drive", "A driveway; a red car drove past earlier and a "
               "blue van is parked at the far end near the trees.", "periodic", labels=("vehicle",)),
        Moment(NOW - 60, "porch", "answer", "No", "No, the door is closed.", "ask",
               question="Is the red door open?"),
        Moment(NOW - 30, "drive", "caption", "Cars on the street", "Two cars drive down the street at night.",
               "periodic", labels=("vehicle",)),
    ]:
        db.add(m)
    db.close()
    return tmp_path


def test_all_words_must_match_in_any_form(history: Path) -> None:
    """`red car` finds both words (title weighs more than a long text); `cars` finds `car` (stemming)."""
    assert titles(history, "red car") == ["Red car parks", "Quiet drive"]
    assert set(titles(history, "car")) == {"Red car parks", "Quiet drive", "Cars on the street"}
    assert titles(history, "parcels") == ["Courier at the door"]


def test_phrase_prefix_or_and_not(history: Path) -> None:
    """A phrase keeps word order; `cour*` is a prefix; OR widens; -word excludes."""
    assert titles(history, '"car parks"') == ["Red car parks"]
    assert titles(history, "cour*") == ["Courier at the door"]
    assert set(titles(history, "van OR parcel")) == {"Quiet drive", "Courier at the door"}
    assert set(titles(history, "car -night")) == {"Red car parks", "Quiet drive"}


def test_labels_and_questions_are_searched(history: Path) -> None:
    """A label (`vehicle`) and a question's words find their moments."""
    assert set(titles(history, "vehicle")) == {"Red car parks", "Quiet drive", "Cars on the street"}
    assert titles(history, "open") == ["No"]


def test_equal_matches_rank_newest_first(tmp_path: Path) -> None:
    """Moments that match equally well come newest first."""
    db = store(tmp_path)
    for i in range(3):
        db.add(Moment(NOW - 100 + i, "porch", "caption", "A cat", "A cat sits."))
    db.close()
    assert [m.ts for m in search(tmp_path, build_query("cat", now=NOW))] == [NOW - 98, NOW - 99, NOW - 100]


def test_filters_narrow_by_time_camera_and_kind(history: Path) -> None:
    """since/until, camera, kind and limit each narrow the result."""
    assert set(titles(history, "car", since="2h")) == {"Cars on the street", "Quiet drive"}
    assert titles(history, "car", until="2h") == ["Red car parks"]
    assert titles(history, "red", camera="porch") == ["No"]
    assert titles(history, "red", kind="caption") == ["Red car parks", "Quiet drive"]
    assert len(titles(history, "car", limit=1)) == 1
    assert titles(history, "car", camera="garden") == []


def test_moment_payload_names_time_camera_kind_text_and_snapshot(tmp_path: Path) -> None:
    """A result's JSON has the contract's keys; the snapshot is a path on the board to a real file."""
    db = store(tmp_path)
    db.add(Moment(NOW, "porch", "caption", "Red car", "A red car.", "motion", "ev-1", labels=("vehicle",),
                  threat_level=0, model="m"), jpeg(500))
    db.close()
    (found,) = search(tmp_path, build_query("car", now=NOW))
    payload = found.to_payload(tmp_path)
    assert {k: payload[k] for k in ("camera", "kind", "trigger", "event_id", "title", "text", "labels",
                                    "threat_level", "ts")} == {
        "camera": "porch", "kind": "caption", "trigger": "motion", "event_id": "ev-1", "title": "Red car",
        "text": "A red car.", "labels": ["vehicle"], "threat_level": 0, "ts": NOW}
    assert payload["time"].startswith("2027-01-15T") and Path(payload["snapshot"]).read_bytes() == jpeg(500)


# -- the store: files, versions, readers ------------------------------------------------------------------
def test_a_reader_sees_new_moments_while_the_writer_keeps_the_file_open(tmp_path: Path) -> None:
    """WAL: the CLI reads (read-only) while the daemon's connection writes."""
    db = store(tmp_path)
    db.add(Moment(NOW, "porch", "caption", "A dog", "A dog."))
    assert titles(tmp_path, "dog") == ["A dog"]
    db.add(Moment(NOW + 1, "porch", "caption", "Another dog", "Another dog."))
    assert titles(tmp_path, "dog") == ["Another dog", "A dog"]
    reader = sqlite3.connect(f"file:{tmp_path / DB_NAME}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("DELETE FROM moments")
    reader.close()
    db.close()


def test_no_database_and_a_newer_schema_are_clear_errors(tmp_path: Path) -> None:
    """Searching where nothing was recorded, or a file from a newer edged, says so."""
    with pytest.raises(HistoryError, match="no history at"):
        search(tmp_path / "none", build_query("car", now=NOW))
    store(tmp_path).close()
    raw = sqlite3.connect(tmp_path / DB_NAME)
    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(HistoryError, match="newer edged"):
        store(tmp_path)
    with pytest.raises(HistoryError, match="schema"):
        search(tmp_path, build_query("car", now=NOW))


def test_snapshot_files_without_a_row_are_swept_on_open(tmp_path: Path) -> None:
    """A JPEG left by a crash before its row was committed is deleted when the store opens again."""
    db = store(tmp_path)
    db.add(Moment(NOW, "porch", "caption", "kept", "kept"), jpeg(100))
    db.close()
    stray = tmp_path / "snapshots" / "2027-01-15" / "porch-1-abc.jpg"
    stray.write_bytes(jpeg(100))
    db = store(tmp_path)
    assert db.orphans_removed == 1 and not stray.exists()
    assert len(list((tmp_path / "snapshots").glob("*/*.jpg"))) == 1
    db.close()


# -- retention -------------------------------------------------------------------------------------------
def test_moments_older_than_max_age_go_with_their_snapshots(tmp_path: Path) -> None:
    """Age retention against the store's clock: exactly the moments before now - max_age are deleted."""
    clock = Clock()
    db = store(tmp_path, max_age=DAY, clock=clock)
    for hours in range(48):  # one moment an hour over two days, each with a snapshot
        db.add(Moment(NOW - hours * 3600, "porch", "caption", f"m{hours}", f"moment {hours}"), jpeg(1000))
    assert db.prune() == 23  # 25..47 hours old (24 hours old is not older than a day)
    assert db.count() == 25
    assert len(list((tmp_path / "snapshots").glob("*/*.jpg"))) == 25
    clock.now += 12 * 3600
    assert db.prune() == 12
    assert sorted(m.title for m in search(tmp_path, build_query("moment", limit=200, now=NOW))) == sorted(
        f"m{h}" for h in range(13))
    db.close()


def test_the_oldest_moments_go_when_the_size_budget_is_exceeded(tmp_path: Path) -> None:
    """Size retention: after prune the database's live pages plus the snapshots fit the budget, the
    newest moments are the ones kept, and deleted snapshots are gone from the disk."""
    probe = store(tmp_path / "probe")
    empty = probe.used_bytes()
    probe.close()
    budget = empty + 20 * 10_000 + 16_384  # room for about 20 snapshots of 10 kB beside the text pages
    db = store(tmp_path / "h", max_bytes=budget)
    for i in range(50):
        db.add(Moment(NOW - 50 + i, "porch", "caption", f"m{i}", f"moment number {i}"), jpeg(10_000))
    assert db.used_bytes() > budget
    removed = db.prune()
    kept = sorted(int(m.title[1:]) for m in search(tmp_path / "h", build_query("moment", limit=200, now=NOW)))
    assert db.used_bytes() <= budget
    assert removed == 50 - len(kept) and 15 <= len(kept) <= 21
    assert kept == list(range(50 - len(kept), 50))  # the newest are kept
    assert len(list((tmp_path / "h" / "snapshots").glob("*/*.jpg"))) == len(kept)
    db.close()


def test_size_retention_without_snapshots_trims_text_rows(tmp_path: Path) -> None:
    """With no snapshots the budget still holds: the oldest text rows go."""
    db = store(tmp_path, max_bytes=10**9)
    for i in range(2000):
        db.add(Moment(NOW - 2000 + i, "porch", "caption", f"m{i}", "a long caption about the porch " * 8))
    full = db.used_bytes()
    db.max_bytes = full // 2
    db.prune()
    assert db.used_bytes() <= full // 2
    kept = db.count()
    assert 500 < kept < 1500
    assert titles(tmp_path, "m1999") == ["m1999"] and titles(tmp_path, "m0") == []
    db.close()


# -- the recorder thread -------------------------------------------------------------------------------
def caption(camera: str = "porch", text: str = "A red car parks.", trigger: str = "motion", question: str = "",
            event_id: str = "ev-1") -> Caption:
    return Caption(event_id, camera, text, text, TriggerKind(trigger), NOW, NOW + 2, 2000.0, "tiny", ("vehicle",),
                   question, 5)


def analysed_frame() -> AnalysedFrame:
    image = np.full((432, 768, 3), 90, np.uint8)
    cv2.rectangle(image, (100, 100), (300, 300), (0, 0, 255), -1)
    image.flags.writeable = False
    return AnalysedFrame("porch", 1, 0.0, NOW, 0.0, image)


def test_caption_and_answer_moments() -> None:
    """A caption is a `caption` moment with its event; an `ask` is an `answer` with its question."""
    assert caption_moment(caption()) == Moment(NOW, "porch", "caption", "A red car parks.", "A red car parks.",
                                               "motion", "ev-1", "", ("vehicle",), None, "tiny")
    answer = caption_moment(caption(text="Yes.", trigger="ask", question="Is a car there?", event_id="cap-porch-9"))
    assert (answer.kind, answer.question, answer.event_id) == ("answer", "Is a car there?", "")


def test_the_recorder_writes_the_snapshot_on_its_own_thread(tmp_path: Path) -> None:
    """`record` returns at once; the thread writes the row and a decodable JPEG at the configured height."""
    recorder = Recorder(HistoryConfig(snapshot_height=216), tmp_path)
    recorder.start()
    writer: list[str] = []
    real_add = recorder.store.add

    def spy(moment: Moment, data: bytes | None = None) -> int:
        writer.append(threading.current_thread().name)
        return real_add(moment, data)

    recorder.store.add = spy  # type: ignore[method-assign]
    assert recorder.record(caption(), analysed_frame())
    assert recorder.stop(timeout=10)
    assert writer == ["history"]
    (found,) = search(tmp_path, build_query("car", now=NOW))
    assert found.snapshot is not None
    image = cv2.imdecode(np.frombuffer((tmp_path / found.snapshot).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (216, 384, 3)
    assert recorder.stats()["written"] == 1


def test_snapshots_off_keeps_only_the_text(tmp_path: Path) -> None:
    """`snapshots: false`: the moment is stored without a file."""
    recorder = Recorder(HistoryConfig(snapshots=False), tmp_path)
    recorder.start()
    recorder.record(caption(), analysed_frame())
    recorder.stop(timeout=10)
    (found,) = search(tmp_path, build_query("car", now=NOW))
    assert found.snapshot is None and list((tmp_path / "snapshots").iterdir()) == []


def test_a_full_queue_drops_the_newest_counts_and_logs(tmp_path: Path) -> None:
    """Drop policy: with the writer not yet running, moments beyond queue_size are refused, counted and
    logged once; stop then writes the queued ones (the flush)."""
    recorder = Recorder(HistoryConfig(queue_size=3), tmp_path)
    with structlog.testing.capture_logs() as logs:
        results = [recorder.record(caption(text=f"Car number {i}.")) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert recorder.stats()["dropped"] == 2
    drops = [line for line in logs if line["event"] == "history_dropped"]
    assert len(drops) == 1 and drops[0]["policy"] == "drop_newest"
    recorder.start()
    assert recorder.stop(timeout=10)
    assert sorted(titles(tmp_path, "car")) == ["Car number 0.", "Car number 1.", "Car number 2."]


def test_stop_flushes_everything_queued(tmp_path: Path) -> None:
    """Every moment recorded before stop is in the database after it."""
    recorder = Recorder(HistoryConfig(queue_size=64), tmp_path)
    recorder.start()
    for i in range(40):
        assert recorder.record(caption(text=f"Dog {i}."), analysed_frame())
    assert recorder.stop(timeout=30)
    assert len(search(tmp_path, build_query("dog", limit=100, now=NOW))) == 40
    assert not recorder.record(caption())  # stopped: refused, not raised


def test_events_without_a_moment_are_not_recorded(tmp_path: Path) -> None:
    """Only the types in MOMENTS are remembered (motion state is not a moment)."""
    recorder = Recorder(HistoryConfig(), tmp_path)
    assert not recorder.record(MotionState("porch", True))
    recorder.start()
    recorder.stop(timeout=10)


# -- the CLI on a database made here ------------------------------------------------------------------------
def test_cli_text_json_and_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`edged history search` prints a line (and the snapshot path) per moment, or JSON lines; exit 1 when
    there is no history, 2 for a bad query; filters pass through."""
    from edged.cli import main

    db = store(tmp_path / "h")
    db.add(Moment(NOW, "porch", "caption", "Red car", "A red car parks.", "motion", labels=("vehicle",)), jpeg(64))
    db.add(Moment(NOW + 1, "drive", "answer", "Yes", "Yes, a car.", "ask", question="Is a car there?"))
    db.close()
    assert main(["history", "search", "car", "--dir", str(tmp_path / "h"), "--since", "2027-01-01"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "porch  caption [motion]  A red car parks." in out[0] and out[1].strip().endswith(".jpg")  # title match
    assert "drive  answer [ask]  Is a car there? -> Yes, a car." in out[2]
    assert main(["history", "search", "car", "--dir", str(tmp_path / "h"), "--kind", "caption", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["text"] == "A red car parks."
    assert main(["history", "search", "car", "--dir", str(tmp_path / "none")]) == 1
    assert "no history at" in capsys.readouterr().err
    assert main(["history", "search", "", "--dir", str(tmp_path / "h")]) == 2
    assert "no words to look for" in capsys.readouterr().err
    assert main(["history", "search", "car", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
