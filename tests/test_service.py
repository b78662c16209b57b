"""The systemd unit: hardening score, the directives the daemon relies on, and install-service's plan."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
