"""`edged motion VIDEO... [--json]`: the output contract of DESIGN.md section 5."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.motion_eval import iou
from benchmarks.synth.motion_clips import load_ground_truth
from edged.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "motion" / "mixed.mp4"


@pytest.fixture
def clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The committed clip copied into the working directory, named by a relative path."""
    shutil.copy(FIXTURE, tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    return "clip.mp4"


def test_json_lines_follow_the_contract(clip: str, capsys: pytest.CaptureFixture[str]) -> None:
    """One JSON object per interval with exactly file (as given), start and end (seconds, start < end)."""
    assert main(["motion", "--json", clip]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert records, "no intervals printed"
    for r in records:
        assert set(r) == {"file", "start", "end"}
        assert r["file"] == clip
        assert isinstance(r["start"], float | int)
        assert isinstance(r["end"], float | int)
        assert 0 <= r["start"] < r["end"] <= 45.0
    starts = [r["start"] for r in records]
    assert starts == sorted(starts)


def test_json_intervals_match_the_ground_truth(clip: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The printed intervals are the clip's motion: one per ground-truth event, overlapping it well."""
    main(["motion", "--json", clip])
    found = [(r["start"], r["end"]) for r in map(json.loads, capsys.readouterr().out.splitlines())]
    truth = load_ground_truth(FIXTURE).motion
    assert len(found) == len(truth)
    for t, f in zip(truth, found, strict=True):
        assert iou(t, f) > 0.6


def test_broken_file_is_named_and_the_others_still_run(clip: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable or missing file is reported on stderr by name, exit status 2, other files still processed."""
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video")
    status = main(["motion", "--json", "broken.mp4", clip, "missing.mp4"])
    out, err = capsys.readouterr()
    assert status == 2
    assert "broken.mp4" in err
    assert "missing.mp4" in err
    assert {json.loads(line)["file"] for line in out.splitlines()} == {clip}


def test_readable_mode_prints_intervals_and_a_summary(clip: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json every line names the file; one line per interval plus a summary line."""
    assert main(["motion", clip]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith(f"{clip}: ") for line in lines)
    assert sum(line.startswith(f"{clip}: motion ") for line in lines) == 3
    assert "3 motion intervals" in lines[-1]


def test_camera_settings_from_a_config(clip: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-c uses the camera's motion settings: a mask over the whole frame leaves no motion."""
    config = tmp_path / "edged.yaml"
    config.write_text(
        "cameras:\n"
        "  porch:\n"
        "    url: clip.mp4\n"
        "    motion:\n"
        "      masks: [[[0, 0], [1, 0], [1, 1], [0, 1]]]\n")
    assert main(["motion", "--json", "-c", str(config), clip]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--camera", "porch"], "--camera needs --config"),
    (["-c", "nowhere.yaml"], "nowhere.yaml"),
])
def test_bad_options_exit_2(clip: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Option errors exit with status 2 and say what was wrong."""
    assert main(["motion", *args, clip]) == 2
    assert message in capsys.readouterr().err
