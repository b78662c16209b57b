"""TLS with server verification, client certificates and password auth against a real Mosquitto."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edged.config import parse_config
from edged.config.schema import Config
from edged.events import MotionState
from edged.outputs.mqtt.publisher import MqttPublisher
from tests.support.broker import Broker
from tests.support.mqtt import Subscriber
from tests.support.tls import Certs, make_certs


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


def secured_broker(tmp_path: Path, certs: Certs, client_certs: bool = False) -> Broker:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "edged", "correct horse"], check=True)
    conf = (f"allow_anonymous false\npassword_file {passwd}\ncafile {certs.ca}\ncertfile {certs.server_cert}\n"
            f"keyfile {certs.server_key}\n")
    if client_certs:
        conf += "require_certificate true\n"
    return Broker(tmp_path, extra_config=conf).start()


def config(tmp_path: Path, port: int, password: str, tls: str) -> Config:
    pw = tmp_path / "mqtt.pass"
    pw.write_text(password + "\n")
    return parse_config(f"device: {{id: sec}}\nstate_dir: {tmp_path / 'state'}\n"
                        f"mqtt: {{host: localhost, port: {port}, username: edged, password_file: {pw}, tls: {tls}}}\n")


def test_tls_with_password_publishes(tmp_path: Path, certs: Certs) -> None:
    """Server certificate verified against the test CA, user and password from a file: state arrives."""
    broker = secured_broker(tmp_path, certs)
    cfg = config(tmp_path, broker.port, "correct horse", f"{{ca: {certs.ca}}}")
    assert cfg.mqtt.password is not None
    pub = MqttPublisher(cfg, cfg.mqtt.password.reveal(), lambda m: None, [])
    try:
        pub.start()
        assert pub.link.connected.wait(10)
        sub = Subscriber(broker.port, ["edged/sec/#"], tls={"ca_certs": str(certs.ca)},
                         auth=("edged", "correct horse")).start()
        pub.publish(MotionState("porch", True))
        sub.wait_topic("edged/sec/porch/motion", b"ON")
        sub.stop()
    finally:
        pub.stop()
        broker.stop()


def test_wrong_password_is_refused_and_never_logged(tmp_path: Path, certs: Certs) -> None:
    """A refused connection leaves `connected` false, is logged as refused, and the password never appears."""
    broker = secured_broker(tmp_path, certs)
    cfg = config(tmp_path, broker.port, "wrong-password-123", f"{{ca: {certs.ca}}}")
    pub = MqttPublisher(cfg, "wrong-password-123", lambda m: None, [])
    with capture_logs() as logs:
        pub.start()
        deadline = time.monotonic() + 10
        while not any(e["event"] == "mqtt_connect_refused" for e in logs) and time.monotonic() < deadline:
            time.sleep(0.05)
        pub.stop(flush_timeout=0.1)
    broker.stop()
    assert not pub.link.connected.is_set()
    assert any(e["event"] == "mqtt_connect_refused" for e in logs)
    assert "wrong-password-123" not in repr(logs)


def test_an_untrusted_server_certificate_is_refused(tmp_path: Path, certs: Certs) -> None:
    """Verification is on by default: a CA that didn't sign the server's certificate fails the handshake."""
    broker = secured_broker(tmp_path, certs)
    other = tmp_path / "other"
    other.mkdir()
    stranger = make_certs(other)
    cfg = config(tmp_path, broker.port, "correct horse", f"{{ca: {stranger.ca}}}")
    pub = MqttPublisher(cfg, "correct horse", lambda m: None, [])
    try:
        pub.start()
        assert not pub.link.connected.wait(3)
    finally:
        pub.stop(flush_timeout=0.1)
        broker.stop()


def test_client_certificate(tmp_path: Path, certs: Certs) -> None:
    """A broker that requires client certificates accepts edged's cert and key."""
    broker = secured_broker(tmp_path, certs, client_certs=True)
    cfg = config(tmp_path, broker.port, "correct horse",
                 f"{{ca: {certs.ca}, cert: {certs.client_cert}, key: {certs.client_key}}}")
    pub = MqttPublisher(cfg, "correct horse", lambda m: None, [])
    try:
        pub.start()
        assert pub.link.connected.wait(10)
    finally:
        pub.stop()
        broker.stop()
