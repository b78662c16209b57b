"""Config loading: typed once, every error with file:line, key path, bad value and rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edged.config import ConfigError, load_config, parse_config
from edged.config.dump import REDACTED, to_plain
from edged.config.loader import parse_duration
from edged.config.secrets import SecretError, SecretRef

ROOT = Path(__file__).resolve().parents[1]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.yaml")
    return [str(p) for p in info.value.problems]


def test_range_error_names_file_line_key_value_and_rule() -> None:
    """The issue's own example: a negative analysis rate on line 3."""
    text = "cameras:\n  porch:\n    analysis_fps: -5\n    url: rtsp://cam/stream\n"
    assert problems(text) == ["config.yaml:3 cameras.porch.analysis_fps: must be > 0 fps (got -5)"]


def test_unknown_key_suggests_the_close_one() -> None:
    """A typo gets a 'did you mean'."""
    text = "cameras:\n  porch:\n    url: a.mp4\n    motion:\n      treshold: 3\n"
    assert problems(text) == ["config.yaml:5 cameras.porch.motion.treshold: unknown key; did you mean 'threshold'?"]


def test_unknown_key_without_a_close_match_lists_the_known_ones() -> None:
    """No near match: the known keys are listed."""
    [line] = problems("log: {zzz: 1}\n")
    assert line.startswith("config.yaml:1 log.zzz: unknown key; known keys: format, level")


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    """Several mistakes, one run: all of them, sorted by line."""
    text = ("mqtt:\n  port: 99999\n  keepalive: soon\n"
            "cameras:\n  a:\n    url: a.mp4\n    captions: {on: [motion, sometimes]}\n")
    assert problems(text) == [
        "config.yaml:2 mqtt.port: must be <= 65535 (got 99999)",
        "config.yaml:3 mqtt.keepalive: must be a duration such as 30s, 5m or 7d (got 'soon')",
        "config.yaml:7 cameras.a.captions.on[1]: must be one of ask, request, keyword, motion, periodic, watch "
        "(got 'sometimes')",
    ]


def test_yaml_on_is_a_key_not_a_boolean() -> None:
    """YAML 1.1 reads a bare `on:` as true; edged reads the key as written."""
    config = parse_config("cameras:\n  a:\n    url: a.mp4\n    captions: {on: [keyword]}\n")
    assert config.cameras["a"].captions.on == ("keyword",)


def test_defaults_apply_to_every_camera_and_cameras_override_them() -> None:
    """Global defaults with per-camera overrides, merged key by key."""
    text = ("defaults:\n  analysis_fps: 2\n  motion: {threshold: 40, off_delay: 10s}\n"
            "cameras:\n  a: {url: a.mp4}\n  b:\n    url: b.mp4\n    motion: {threshold: 12}\n")
    config = parse_config(text)
    a, b = config.cameras["a"], config.cameras["b"]
    assert (a.analysis_fps, a.motion.threshold, a.motion.off_delay) == (2.0, 40, 10.0)
    assert (b.analysis_fps, b.motion.threshold, b.motion.off_delay) == (2.0, 12, 10.0)


def test_a_bad_default_is_reported_once_under_defaults() -> None:
    """A mistake in defaults is one problem, not one per camera."""
    text = "defaults:\n  analysis_fps: 0\ncameras:\n  a: {url: a.mp4}\n  b: {url: b.mp4}\n"
    assert problems(text) == ["config.yaml:2 defaults.analysis_fps: must be > 0 fps (got 0)"]


def test_cross_field_rules_point_at_the_key() -> None:
    """interval.max < interval.min is caught with the line of max."""
    text = "cameras:\n  a:\n    url: a.mp4\n    captions:\n      interval: {min: 5m, max: 1m}\n"
    assert problems(text) == ["config.yaml:5 cameras.a.captions.interval.max: must be >= min (300s)"]


def test_invalid_yaml_reports_its_line() -> None:
    """Broken YAML syntax is a config error with a line, not a traceback."""
    [line] = problems("cameras:\n  a: {url: a.mp4\n")
    assert line.startswith("config.yaml:3: invalid YAML")


@pytest.mark.parametrize(("text", "seconds"), [(90, 90.0), ("90s", 90.0), ("1.5m", 90.0), ("100ms", 0.1),
                                               ("7d", 604800.0), ("2h", 7200.0)])
def test_durations(text: object, seconds: float) -> None:
    """Durations accept plain seconds and unit suffixes."""
    assert parse_duration(text) == pytest.approx(seconds)


def test_inline_password_is_refused() -> None:
    """Secrets never live in the YAML."""
    [line] = problems("mqtt: {username: u, password: hunter2}\n")
    assert "config.yaml:1 mqtt.password: inline passwords are not allowed" in line
    assert "hunter2" not in line


def test_inline_camera_password_in_url_is_refused() -> None:
    """`rtsp://user:pass@host` is refused, pointing at password_file."""
    [line] = problems("cameras:\n  a: {url: 'rtsp://admin:hunter2@10.0.0.9/s'}\n")
    assert "cameras.a.url: inline passwords are not allowed" in line
    assert "hunter2" not in line


def test_password_over_plain_tcp_to_a_remote_broker_is_refused(tmp_path: Path) -> None:
    """A password in clear text across the network needs an explicit allow_insecure."""
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    text = f"mqtt: {{host: 10.1.2.3, username: u, password_file: {pw}}}\n"
    [line] = problems(text)
    assert "mqtt.tls: a password to 10.1.2.3 over plain TCP" in line
    allowed = parse_config(f"mqtt: {{host: 10.1.2.3, username: u, password_file: {pw}, allow_insecure: true}}\n")
    assert allowed.mqtt.password is not None
    assert allowed.mqtt.password.reveal() == "s3cret"


def test_secret_from_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """password_credential reads $CREDENTIALS_DIRECTORY/<name> (systemd LoadCredential=)."""
    (tmp_path / "mqtt-password").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = parse_config("mqtt: {username: u, password_credential: mqtt-password}\n")
    ref = config.mqtt.password
    assert ref is not None
    assert ref.reveal() == "from-systemd"
    assert "from-systemd" not in repr(config)


def test_missing_secret_names_the_file_not_the_value(tmp_path: Path) -> None:
    """An unreadable secret is a clear error naming where it was looked for."""
    ref = SecretRef(file=tmp_path / "nope")
    with pytest.raises(SecretError, match="does not exist"):
        ref.reveal()


def test_dump_redacts_secret_fields(tmp_path: Path) -> None:
    """The `config` command's view shows that a secret is set, never where or what."""
    pw = tmp_path / "pw"
    pw.write_text("s3cret")
    config = parse_config(f"mqtt: {{username: u, password_file: {pw}}}\n")
    plain = to_plain(config)
    assert plain["mqtt"]["password_file"] == REDACTED
    assert plain["mqtt"]["username"] == "u"
    assert "s3cret" not in str(plain)


def test_nested_microphone_gets_its_id_and_camera() -> None:
    """A camera's microphone is `<camera>_mic`, linked to the camera."""
    config = parse_config("cameras:\n  porch: {url: a.mp4, microphone: {device: camera}}\n")
    [mic] = config.all_microphones
    assert (mic.id, mic.camera) == ("porch_mic", "porch")


def test_microphone_linked_to_a_missing_camera() -> None:
    """A top-level microphone must name a configured camera."""
    text = "cameras:\n  porch: {url: a.mp4}\nmicrophones:\n  kitchen: {device: default, camera: garage}\n"
    [line] = problems(text)
    assert "camera 'garage' is not configured (cameras: porch)" in line


@pytest.mark.parametrize("path", sorted([ROOT / "config.yaml", *(ROOT / "pipelines").glob("*.yaml")]),
                         ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    """config.yaml and every pipeline example is valid."""
    config = load_config(path)
    assert config.cameras or config.microphones


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    """`edged check-config` exits 0 for a valid file and 2 (with the message) for an invalid one."""
    good = tmp_path / "good.yaml"
    good.write_text("cameras:\n  a: {url: a.mp4}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  a: {url: a.mp4, analysis_fps: 0}\n")
    ok = subprocess.run([sys.executable, "-m", "edged", "check-config", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0
    assert "valid" in ok.stdout
    fail = subprocess.run([sys.executable, "-m", "edged", "check-config", str(bad)], capture_output=True, text=True)
    assert fail.returncode == 2
    assert f"{bad}:2 cameras.a.analysis_fps: must be > 0 fps (got 0)" in fail.stderr


def test_check_config_names_every_unreadable_secret_file(tmp_path: Path) -> None:
    """check-config reads what the daemon will read: a camera's password file as well as the broker's."""
    config = tmp_path / "edged.yaml"
    config.write_text(f"mqtt: {{username: u, password_file: {tmp_path / 'mqtt.pass'}}}\n"
                      "cameras:\n  door:\n    url: rtsp://admin@10.0.0.9/main\n"
                      f"    password_file: {tmp_path / 'cam.pass'}\n")
    out = subprocess.run([sys.executable, "-m", "edged", "check-config", str(config)], capture_output=True, text=True)
    assert out.returncode == 2
    assert f"{config} mqtt.password: " in out.stderr
    assert f"{config} cameras.door.password: " in out.stderr
    (tmp_path / "mqtt.pass").write_text("a")
    (tmp_path / "cam.pass").write_text("b")
    ok = subprocess.run([sys.executable, "-m", "edged", "check-config", str(config)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_nested_microphones_get_distinct_ids_and_a_clash_with_them_is_named() -> None:
    """Two cameras with a `microphone:` each are valid (`a_mic`, `b_mic`); a top-level microphone that takes
    the id a nested one will have is an error naming both."""
    config = parse_config("cameras:\n  a: {url: a.mp4, microphone: {device: camera}}\n"
                          "  b: {url: b.mp4, microphone: {device: camera}}\n", "two.yaml")
    assert sorted(m.id for m in config.all_microphones) == ["a_mic", "b_mic"]
    with pytest.raises(ConfigError, match="microphone 'a_mic' uses the id of microphone 'a_mic'"):
        parse_config("cameras:\n  a: {url: a.mp4, microphone: {device: camera}}\n"
                     "microphones:\n  a_mic: {device: speech.wav}\n", "clash.yaml")


def test_the_api_is_off_unless_its_section_is_there() -> None:
    """No `api:` section: no endpoint. `api: {}`: loopback 127.0.0.1:11435, no token needed there."""
    assert parse_config("cameras: {}\n").api is None
    api = parse_config("api: {}\n").api
    assert api is not None
    assert (api.address, api.token, api.max_concurrent) == (("127.0.0.1", 11435), None, 2)
    assert parse_config("api: {listen: '[::1]:8080'}\n").api.address == ("::1", 8080)  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "expected"), [
    ("api:\n  listen: 0.0.0.0:11435\n",
     "config.yaml:2 api.listen: 0.0.0.0 is reachable from other machines: set token_file (or token_credential) "
     "so only clients with the token are answered, or listen on 127.0.0.1"),
    ("api:\n  listen: board.local:11435\n", "config.yaml:2 api.listen: board.local is reachable from other machines"),
    ("api:\n  listen: 127.0.0.1\n", "config.yaml:2 api.listen: must be host:port, e.g. 127.0.0.1:11435"),
    ("api:\n  listen: 127.0.0.1:0\n", "config.yaml:2 api.listen: port must be 1-65535 (got '0')"),
    ("api:\n  listen: '::1:11435'\n", "config.yaml:2 api.listen: an IPv6 address goes in brackets"),
    ("api:\n  max_image_mb: 8\n  max_body_mb: 9\n",
     "config.yaml:3 api.max_body_mb: must be >= 10.7 (max_image_mb in base64"),
    ("api:\n  max_concurrent: 0\n", "config.yaml:2 api.max_concurrent: must be >= 1 (got 0)"),
    ("api:\n  deadline: forever\n", "config.yaml:2 api.deadline: must be a duration such as 30s"),
    ("api:\n  token: abc\n", "config.yaml:2 api.token: inline tokens are not allowed: write it to a file"),
])
def test_api_settings_are_checked_with_their_line(text: str, expected: str) -> None:
    """Every api rule names the file, line, key and what to do; a non-loopback address needs a token."""
    (problem,) = problems(text)
    assert problem.startswith(expected), problem


def test_an_api_token_is_a_secret_read_from_a_file(tmp_path: Path) -> None:
    """A LAN address with a token file is fine; the token is read like every secret and never dumped."""
    token = tmp_path / "api.token"
    token.write_text("t0ken-value\n")
    config = parse_config(f"api: {{listen: 0.0.0.0:11435, token_file: {token}}}\n")
    assert config.secret_refs["api.token"].reveal() == "t0ken-value"
    plain = to_plain(config)
    assert plain["api"]["token_file"] == REDACTED
    assert "t0ken" not in str(plain) and str(token) not in str(plain)


def test_captions_on_takes_trigger_kinds_and_a_question_is_a_request() -> None:
    """`captions.on` is checked against the one list of trigger kinds; `ask` is refused with the way to say it
    (listing `request` admits caption_now and ask)."""
    from edged.events import TriggerKind

    config = parse_config("cameras:\n  a: {url: a.mp4, captions: {on: [keyword, request]}}\n")
    assert config.cameras["a"].captions.on == (TriggerKind.KEYWORD, TriggerKind.REQUEST)
    with pytest.raises(ConfigError, match=r"cameras\.a\.captions\.on: a question is a request: list request"):
        parse_config("cameras:\n  a: {url: a.mp4, captions: {on: [ask]}}\n", "ask.yaml")


def test_ids_that_home_assistant_would_merge_are_refused() -> None:
    """`front-door` and `front_door` would share Home Assistant unique ids (edged spells '-' as '_' there)."""
    with pytest.raises(ConfigError, match=r"camera 'front_door' and cameras\.front-door differ only in '-' and '_'"):
        parse_config("cameras:\n  front-door: {url: a.mp4}\n  front_door: {url: b.mp4}\n", "ids.yaml")
    with pytest.raises(ConfigError, match="microphone 'front-door_mic' uses the id of microphone 'front_door_mic'"):
        parse_config("cameras:\n  front-door: {url: a.mp4, microphone: {device: camera}}\n"
                     "microphones:\n  front_door_mic: {device: talk.wav}\n", "ids.yaml")
