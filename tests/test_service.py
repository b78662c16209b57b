"""The systemd unit: hardening score, the directives the daemon relies on, and install-service's plan."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edged.config.schema import ApiConfig

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "edged.service"


def directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_exposure_is_at_most_2_5() -> None:
    """`systemd-analyze security` rates the unit 2.5 or better (docs/service.md lists what remains)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: ./script/test installs the systemd package")
    out = subprocess.run([analyze, "security", "--offline=yes", str(UNIT)], capture_output=True, text=True, check=False)
    match = re.search(r"Overall exposure level for edged\.service: ([0-9.]+)", out.stdout + out.stderr)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= 2.5


def test_unit_has_what_the_daemon_relies_on() -> None:
    """notify + watchdog, restart on failure, a dedicated user, the state directory, the hardening basics."""
    d = directives()
    assert d["Type"] == ["notify"]
    assert d["WatchdogSec"] and d["Restart"] == ["on-failure"]
    assert d["User"] == ["edged"]
    assert d["SupplementaryGroups"] == ["video audio"]
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "CapabilityBoundingSet": ""}.items():
        assert d[key] == [value], key
    assert d["ReadWritePaths"] == ["/var/lib/edged"]
    assert "kill -HUP" in d["ExecReload"][0]


def test_the_unit_lets_edged_bind_the_api_port_and_nothing_else() -> None:
    """edged only connects out, except the HTTP API: the unit allows binding its default port alone (the
    config's default and the unit's allowance are the same port)."""
    d = directives()
    port = ApiConfig().address[1]
    assert d["SocketBindAllow"] == [f"tcp:{port}"]
    assert d["SocketBindDeny"] == ["any"]


def test_install_service_dry_run_prints_every_step() -> None:
    """`--dry-run` shows the user, the unit (pointing at this installation) and systemctl steps; changes nothing."""
    out = subprocess.run([sys.executable, "-m", "edged", "install-service", "--dry-run", "--config",
                          str(ROOT / "config.yaml")], capture_output=True, text=True, check=True)
    text = out.stdout
    assert "useradd --system" in text
    assert "cat > /etc/systemd/system/edged.service" in text
    exe = re.search(r"ExecStart=(\S+) run", text)
    assert exe is not None
    assert Path(exe.group(1)).name == "edged"
    assert "systemctl daemon-reload" in text
    assert "systemctl enable --now edged.service" in text


@pytest.mark.slow
def test_the_wheel_is_the_daemon_and_installs_its_service(tmp_path: Path) -> None:
    """The wheel that goes onto a board holds edged and its unit (package data), none of the workshop
    (benchmarks, synthetic media, soak); `edged install-service --dry-run` works from it, outside any
    checkout."""
    source = tmp_path / "src"  # a copy: setuptools leaves build/ in the tree it builds
    for name in ("edged", "benchmarks", "tests"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "fixtures"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("edged-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "edged/data/edged.service" in names
    assert not [n for n in names if n.startswith(("benchmarks/", "tests/", "edged/bench/", "edged/synth/"))]
    assert "edged/soak.py" not in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    out = subprocess.run([sys.executable, "-m", "edged", "install-service", "--dry-run"], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Type=notify" in out.stdout
    probe = subprocess.run([sys.executable, "-c", "import edged; print(edged.__file__)"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(site))  # the wheel's copy ran, not the checkout
