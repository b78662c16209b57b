"""Nothing is lost: the SQLite outbox across broker outages, a kill -9 of the daemon, and a full disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from edged.events import CameraEvent, Message
from edged.outputs.mqtt.outbox import Outbox
from edged.outputs.mqtt.publisher import MqttPublisher
from tests.support.broker import Broker
from tests.support.mqtt import Subscriber
from tests.test_mqtt_publisher import make_config


def distinct_ids(sub: Subscriber) -> set[str]:
    return {json.loads(m.payload)["id"] for m in list(sub.messages) if m.topic.endswith("/events")}


def test_outbox_is_ordered_bounded_and_survives_reopening(tmp_path: Path) -> None:
    """Oldest evicted first past max_events; what is committed is there after reopening."""
    path = tmp_path / "o.db"
    box = Outbox(path, max_events=5, ttl=3600)
    for i in range(8):
        box.add(Message("t", str(i).encode(), durable=True))
    assert box.evicted == 3
    assert [p.message.payload for p in box.fetch_after(0, 10)] == [b"3", b"4", b"5", b"6", b"7"]
    box.close()
    again = Outbox(path, max_events=5, ttl=3600)
    assert len(again) == 5
    assert again.fetch_after(0, 10)[0].message.payload == b"3"
    again.close()


def test_an_outbox_from_the_first_release_is_upgraded_with_its_pending_events(tmp_path: Path) -> None:
    """The first release's table had no monotonic columns: its pending rows are kept and sent (aged by the
    wall clock), and new events go to disk again."""
    import sqlite3

    path = tmp_path / "o.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, "
                "topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)")
    old.execute("INSERT INTO outbox (created, topic, payload, qos, retain) VALUES (?, 't', x'6f6c64', 1, 0)",
                (time.time() - 60,))
    old.commit()
    old.close()
    box = Outbox(path, max_events=100, ttl=3600)
    box.add(Message("t", b"new", durable=True))
    assert box.disk_errors == 0
    pending = box.fetch_after(0, 10)
    assert [p.message.payload for p in pending] == [b"old", b"new"]
    assert 59 < pending[0].age() < 120
    box.close()


def test_expired_events_are_evicted_and_counted(tmp_path: Path) -> None:
    """Events older than the TTL are dropped and counted."""
    box = Outbox(tmp_path / "o.db", max_events=100, ttl=0.05)
    box.add(Message("t", b"old", durable=True))
    time.sleep(0.1)
    box.add(Message("t", b"new", durable=True))
    box.ttl = 0.08
    assert box.expire() == 1
    assert box.expired == 1
    assert [p.message.payload for p in box.fetch_after(0, 10)] == [b"new"]
    box.close()


def test_a_full_disk_keeps_events_in_memory_and_writes_them_back(tmp_path: Path) -> None:
    """ENOSPC: add() doesn't fail, messages wait in memory (in order) and go to disk when space returns."""
    import sqlite3

    box = Outbox(tmp_path / "o.db", max_events=100, ttl=3600)
    box.add(Message("t", b"0", durable=True))
    real = box._db

    class FullDisk:
        """Stands in for a SQLite connection on a full disk (ENOSPC can't be made safely in a test)."""

        def execute(self, sql: str, *args: object) -> object:
            if sql.lstrip().upper().startswith("INSERT"):
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    box._db = FullDisk()  # type: ignore[assignment]
    ids = [box.add(Message("t", str(i).encode(), durable=True)) for i in range(1, 4)]
    assert box.disk_errors >= 1
    assert len(box) == 4
    assert [p.message.payload for p in box.fetch_after(0, 10)] == [b"0", b"1", b"2", b"3"]
    assert box.flush_memory() == 0  # still full
    box._db = real
    assert box.flush_memory() == 3
    assert [p.id for p in box.fetch_after(0, 10)][1:] == ids
    box.close()


def test_2000_events_through_two_broker_restarts_all_arrive(tmp_path: Path) -> None:
    """2,000 events while the broker is stopped and restarted twice: every id arrives, duplicates only as
    QoS 1 redeliveries of the same id. The subscriber keeps a persistent session (the broker persists
    it across its restarts), so what it sees is what the broker accepted."""
    broker = Broker(tmp_path, persistence=True).start()
    config = make_config(tmp_path, broker.port)
    pub = MqttPublisher(config, None, lambda m: None, [])
    pub.start()
    sub = Subscriber(broker.port, ["edged/t1/events"], persistent=True).start()
    try:
        assert pub.link.connected.wait(10)
        for i in range(2000):
            pub.publish(CameraEvent("new", f"ev-{i}", "porch", "motion", time.time()))
            if i in (600, 1300):
                broker.stop()  # mid-stream outage: the next events wait in the outbox
            if i in (900, 1600):
                broker.start()
            if i % 50 == 0:
                time.sleep(0.005)
        sub.wait_subscribed(30)
        assert pub.flush(60)
        deadline = time.monotonic() + 30
        while len(distinct_ids(sub)) < 2000 and time.monotonic() < deadline:
            time.sleep(0.1)
        ids = [json.loads(m.payload)["id"] for m in list(sub.messages)]
        assert set(ids) == {f"ev-{i}" for i in range(2000)}
        assert len(pub.outbox) == 0
    finally:
        sub.stop()
        pub.stop()
        broker.stop()


def test_outage_backlog_is_delivered_in_order_and_marked_replayed(tmp_path: Path) -> None:
    """Events published while the broker is down arrive after it returns, in order, with `replayed: true`."""
    broker = Broker(tmp_path, persistence=True).start()
    config = make_config(tmp_path, broker.port)
    pub = MqttPublisher(config, None, lambda m: None, [])
    pub.start()
    sub = Subscriber(broker.port, ["edged/t1/events"], persistent=True).start()
    try:
        assert pub.link.connected.wait(10)
        broker.stop()
        for i in range(500):
            pub.publish(CameraEvent("new", f"ev-{i}", "porch", "motion", time.time()))
        time.sleep(1.1)
        broker.start()
        sub.wait_subscribed(30)
        deadline = time.monotonic() + 30
        while len(distinct_ids(sub)) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        payloads = [json.loads(m.payload) for m in list(sub.messages)]
        first_seen = list(dict.fromkeys(p["id"] for p in payloads))
        assert first_seen == [f"ev-{i}" for i in range(500)]
        assert all(p["replayed"] is True for p in payloads)
    finally:
        sub.stop()
        pub.stop()
        broker.stop()


PRODUCER = textwrap.dedent("""
    import sys, time
    from edged.logs import configure_logging
    configure_logging("warning", "json")
    from edged.config import parse_config
    from edged.events import CameraEvent
    from edged.outputs.mqtt.publisher import MqttPublisher
    state, port, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    config = parse_config(f"device: {{id: t1}}\\nstate_dir: {state}\\nmqtt: {{port: {port}}}\\n")
    pub = MqttPublisher(config, None, lambda m: None, [])
    pub.start()
    for i in range(start, start + count):
        pub.publish(CameraEvent("new", f"ev-{i}", "porch", "motion", time.time()))
        print(i, flush=True)  # committed to the outbox
        time.sleep(0.002)
    # flush() doesn't wait for a broker that isn't there; the restart must see the link up first.
    if not (pub.link.connected.wait(30) and pub.flush(30)):
        sys.exit("backlog not delivered within 30 s")
    pub.stop()
""")


def test_kill_9_mid_stream_loses_nothing_committed(tmp_path: Path) -> None:
    """A producer killed with SIGKILL while its broker is down: the restart delivers every committed id."""
    state = tmp_path / "state"
    broker = Broker(tmp_path, persistence=True).start()
    sub = Subscriber(broker.port, ["edged/t1/events"], persistent=True).start()
    broker.stop()
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER, str(state), str(broker.port), "0", "100000"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = []
    for line in proc.stdout:
        committed.append(int(line))
        if len(committed) == 300:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(10)
    proc.stdout.close()
    broker.start()
    sub.wait_subscribed(30)
    restart = subprocess.run([sys.executable, "-c", PRODUCER, str(state), str(broker.port), "1000000", "1"],
                             capture_output=True, text=True, timeout=90)
    assert restart.returncode == 0, restart.stderr
    try:
        want = {f"ev-{i}" for i in committed}
        deadline = time.monotonic() + 30
        while not want <= distinct_ids(sub) and time.monotonic() < deadline:
            time.sleep(0.05)
        missing = sorted(want - distinct_ids(sub), key=lambda x: int(x[3:]))
        assert missing == [], f"{len(missing)} of {len(want)} missing; producer said: {restart.stderr[-2000:]}"
        payloads = [json.loads(m.payload) for m in sub.messages]
        late = [p["id"] for p in payloads if p["id"] in want and not p.get("replayed")]
        assert late == []
    finally:
        sub.stop()
        broker.stop()
