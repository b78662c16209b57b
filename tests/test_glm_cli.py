"""`edged caption` and `edged models list|verify|quantize` on the tiny bundle."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from edged.cli import main
from tests.glm_fixture import BUNDLE, goldens

GOLDEN = goldens()


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """The CLI configures structlog for its stderr; later tests must not log into a closed capture."""
    yield
    structlog.reset_defaults()


def test_caption_json_lines_follow_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    """One JSON line per image with exactly file, caption, tokens, latency_ms, timings."""
    images = [str(BUNDLE / name) for name in GOLDEN["images"]]
    rc = main(
        [
            "caption",
            *images,
            "--model",
            str(BUNDLE),
            "--variant",
            "fp32",
            "--threads",
            "1",
            "--repetition-penalty",
            "1.0",
            "--max-new-tokens",
            str(GOLDEN["max_new_tokens"]),
            "--json",
        ]
    )
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == images
    for line, name in zip(lines, GOLDEN["images"], strict=True):
        assert set(line) == {"file", "caption", "tokens", "latency_ms", "timings"}
        assert line["tokens"] == GOLDEN["variants"]["fp32"][name]["tokens"]
        assert line["caption"] == GOLDEN["variants"]["fp32"][name]["text"]
        assert line["latency_ms"] > 0
        assert "vision_ms" in line["timings"]


def test_caption_with_a_question(capsys: pytest.CaptureFixture[str]) -> None:
    """--prompt is the question; plain output prints file: answer."""
    rc = main(
        [
            "caption",
            str(BUNDLE / GOLDEN["images"][0]),
            "--model",
            str(BUNDLE),
            "--prompt",
            "is there a dog ?",
            "--max-new-tokens",
            "3",
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{BUNDLE / GOLDEN['images'][0]}: ")


def test_caption_ask_answers_questions_in_one_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """--ask twice and --caption: one JSON line with the caption, both answers and one vision pass; the
    answers equal the library's look() and the caption equals the golden one."""
    from edged.inference.images import load_image
    from tests.glm_fixture import captioner

    name = GOLDEN["images"][0]
    questions = ["Is the door open?", "Is there a package on the porch?"]
    rc = main(
        [
            "caption", str(BUNDLE / name), "--model", str(BUNDLE), "--variant", "fp32", "--threads", "1",
            "--repetition-penalty", "1.0", "--max-new-tokens", str(GOLDEN["max_new_tokens"]),
            "--ask", questions[0], "--ask", questions[1], "--caption", "--json",
        ]
    )
    assert rc == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert set(line) == {"file", "caption", "tokens", "answers", "latency_ms", "timings"}
    assert line["tokens"] == GOLDEN["variants"]["fp32"][name]["tokens"]
    assert line["timings"]["vision_passes"] == 1
    cap = captioner()
    want = cap.look(load_image(BUNDLE / name), [], questions).answers
    cap.close()
    assert [(a["question"], a["answer"]) for a in line["answers"]] == [(a.question, a.answer) for a in want]
    # Printed to 4 decimals; the CLI's session may be graph-optimized differently (summation order).
    assert [a["p_yes"] for a in line["answers"]] == pytest.approx([a.p_yes for a in want], abs=1e-3)


def test_caption_ask_without_caption_and_a_bad_question(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --caption only answers come back; an empty question is exit 2 naming it, before loading."""
    image = str(BUNDLE / GOLDEN["images"][0])
    assert main(["caption", image, "--model", str(BUNDLE), "--threads", "1", "--ask", "Is it night?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{image}: Is it night? ")
    assert "p_yes" in out
    assert main(["caption", image, "--model", str(BUNDLE / "missing"), "--ask", "ok?", "--ask", " "]) == 2
    assert "error: question 2: the question is empty" in capsys.readouterr().err


def test_caption_without_model_says_how_to_get_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing bundle is exit 2 and one line naming the pull command."""
    rc = main(["caption", str(BUNDLE / GOLDEN["images"][0]), "--model", str(tmp_path / "none")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "edged models pull glm-edge-v-2b" in err


def test_unreadable_image_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not an image is an error line and exit 1; other images still run."""
    bad = tmp_path / "bad.png"
    bad.write_text("not an image", encoding="utf-8")
    rc = main(
        [
            "caption",
            str(bad),
            str(BUNDLE / GOLDEN["images"][0]),
            "--model",
            str(BUNDLE),
            "--json",
            "--max-new-tokens",
            "2",
            "--threads",
            "1",
        ]
    )
    assert rc == 1
    captured = capsys.readouterr()
    assert "bad.png: not a readable image" in captured.err
    assert len(captured.out.splitlines()) == 1


def test_models_verify_ok_and_corrupt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """verify exits 0 on the fixture and 1, naming the file, on a corrupted copy."""
    assert main(["models", "verify", str(BUNDLE)]) == 0
    assert "ok (" in capsys.readouterr().out
    copy = tmp_path / "b"
    shutil.copytree(BUNDLE, copy)
    data = bytearray((copy / "tokenizer.json").read_bytes())
    data[10] ^= 1
    (copy / "tokenizer.json").write_bytes(bytes(data))
    assert main(["models", "verify", str(copy)]) == 1
    assert "tokenizer.json is corrupt" in capsys.readouterr().err
    assert main(["models", "verify", str(copy), "--variant", "int4"]) == 1


def test_models_list_shows_variants(capsys: pytest.CaptureFixture[str]) -> None:
    """list prints one line per variant, the default marked."""
    assert main(["models", "list", str(BUNDLE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert any("*int4" in line for line in out)


def test_models_list_empty_dir_hints_pull(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No bundles: exit 1 with the pull hint."""
    assert main(["models", "list", str(tmp_path)]) == 1
    assert "edged models pull" in capsys.readouterr().err


def test_models_quantize_adds_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """quantize on an fp32-only bundle adds int8-vision and int4 and makes int4 the default."""
    pytest.importorskip("onnx_ir", reason="the quantizer needs the export extra (onnx, onnx-ir)")
    import onnx

    from edged.export.pull import prune
    from edged.inference.manifest import load_manifest
    from tests import glm_quant as q

    copy = tmp_path / "b"
    shutil.copytree(BUNDLE, copy)
    prune(copy, load_manifest(copy), "fp32")
    assert set(load_manifest(copy).variants) == {"fp32"}
    assert main(["models", "quantize", str(copy), "--block-size", "32"]) == 0
    m = load_manifest(copy)
    assert set(m.variants) == {"fp32", "int8-vision", "int4"}
    assert m.default_variant == "int4"
    assert main(["models", "verify", str(copy)]) == 0
    # The fresh graphs hold the fp32 weights on the recipe's grids (exact: numpy on the stored bytes).
    decoder, vision = onnx.load(copy / q.DECODER), onnx.load(copy / q.VISION)
    int4 = q.int4_grids(onnx.load(copy / q.DECODER_INT4))
    assert q.grid_problems(q.matmul_weights(decoder), int4, q.int4_block_scale(32)) == []
    int8 = q.int8_grids(onnx.load(copy / q.VISION_INT8))
    assert q.grid_problems(q.matmul_weights(vision), int8, q.int8_channel_scale) == []
