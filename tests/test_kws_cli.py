"""`edged kws`: the DESIGN.md section 5 contract, on the committed fixtures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edged.cli import main
from tests.kws_support import FIXTURES


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", "kws", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_json_lines_are_the_contract() -> None:
    """One JSON object per detection with exactly file (as given), keyword, t and score."""
    path = str(FIXTURES / "positive_alexa.flac")
    proc = _run("--keywords", "alexa", "--model-defaults", "--json", path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) >= 3
    for line in lines:
        assert set(line) == {"file", "keyword", "t", "score"}
        assert line["file"] == path
        assert line["keyword"] == "alexa"
        assert 0.9 < line["score"] <= 1.0
        assert line["t"] > 0
    assert [x["t"] for x in lines] == sorted(x["t"] for x in lines)


def test_files_are_independent_streams(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same audio twice in one call gives the same detections for each (state reset between files)."""
    copy = tmp_path / "again.flac"
    shutil.copy(FIXTURES / "positive_okay_nabu.flac", copy)
    assert (
        main(["kws", "-k", "okay_nabu,alexa", "--json", str(FIXTURES / "positive_okay_nabu.flac"), str(copy)])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    first = [
        (x["keyword"], x["t"], x["score"]) for x in lines if x["file"].endswith("positive_okay_nabu.flac")
    ]
    second = [(x["keyword"], x["t"], x["score"]) for x in lines if x["file"] == str(copy)]
    assert first
    assert first == second


def test_readable_output_cutoff_and_backend(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json one readable line per detection; --cutoff and --backend apply to every keyword."""
    path = str(FIXTURES / "positive_hey_rhasspy.flac")
    assert main(["kws", "--backend", "openwakeword", "-k", "hey_rhasspy", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out
    assert all(line.startswith(path) and "hey_rhasspy" in line and "openwakeword" in line for line in out)
    assert main(["kws", "--backend", "openwakeword", "-k", "hey_rhasspy", "--cutoff", "0.999", path]) == 0
    assert len(capsys.readouterr().out.splitlines()) < len(out)


def test_errors_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown keyword: exit 2 listing the choices; unreadable file: exit 1, the other files still run."""
    assert main(["kws", "-k", "hey_siri", str(FIXTURES / "speech.flac")]) == 2
    assert "available: alexa, hey_jarvis, hey_mycroft, okay_nabu" in capsys.readouterr().err
    assert (
        main(
            [
                "kws",
                "-k",
                "hey_jarvis",
                "--json",
                str(tmp_path / "nope.wav"),
                str(FIXTURES / "positive_hey_jarvis.flac"),
            ]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert "nope.wav: no such file" in captured.err
    assert len(captured.out.splitlines()) >= 3
    assert main(["kws", "--cutoff", "1.5", str(FIXTURES / "speech.flac")]) == 2
