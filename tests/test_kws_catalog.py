"""Which keyword names which model, and the errors when a name or a file is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edged.analysis.kws import KeywordEngine, ModelError, UnknownKeywordError, available, resolve
from edged.analysis.kws.catalog import package_dir
from edged.config import ConfigError, parse_config
from edged.config.keywords import MICRO, OPEN
from edged.config.schema import KeywordConfig, WakewordConfig

MICRO_MODELS = package_dir("pymicro_wakeword") / "models"  # type: ignore[operator]


def test_builtin_models_resolve_with_their_own_settings() -> None:
    """Built-in names find the shipped files and the cutoff/window from each model's JSON."""
    spec = resolve(MICRO, "okay_nabu")
    assert spec.model.name == "okay_nabu.tflite"
    assert spec.model.is_file()
    assert (spec.cutoff, spec.window, spec.wake_word) == (0.85, 5, "Okay Nabu")
    assert set(available(MICRO)) == {"alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"}
    oww = resolve(OPEN, "ok_nabu")  # openWakeWord's spelling is folded into the same event name
    assert (oww.keyword, oww.cutoff, oww.window) == ("okay_nabu", 0.5, 1)
    assert "hey_rhasspy" in available(OPEN)


def test_unknown_keyword_lists_the_available_ones() -> None:
    """A name no backend knows fails with every name that would have worked."""
    with pytest.raises(
        UnknownKeywordError, match=r"'hey_siri'.*available: alexa, hey_jarvis, hey_mycroft, okay_nabu"
    ):
        resolve(MICRO, "hey_siri")
    with pytest.raises(
        UnknownKeywordError, match=r"models.wakeword.keywords\[1\]: unknown keyword 'hey_rhasspy'"
    ):
        KeywordEngine.from_config(WakewordConfig(keywords=("alexa", "hey_rhasspy")))


def _copy_user_model(tmp: Path, name: str) -> Path:
    shutil.copy(MICRO_MODELS / "hey_jarvis.tflite", tmp / f"{name}.tflite")
    config = json.loads((MICRO_MODELS / "hey_jarvis.json").read_text())
    config["model"] = f"{name}.tflite"
    config["micro"]["probability_cutoff"] = 0.6
    (tmp / f"{name}.json").write_text(json.dumps(config))
    return tmp / f"{name}.json"


def test_user_micro_model_by_path_and_by_models_dir(tmp_path: Path) -> None:
    """A user model is found by its .json (or .tflite) path, or by name in models_dir."""
    path = _copy_user_model(tmp_path, "hey_edged")
    for ref in (str(path), str(path.with_suffix(".tflite"))):
        spec = resolve(MICRO, ref)
        assert (spec.keyword, spec.cutoff) == ("hey_edged", 0.6)
    assert resolve(MICRO, "hey_edged", tmp_path).model == tmp_path / "hey_edged.tflite"
    assert "hey_edged" in available(MICRO, tmp_path)
    engine = KeywordEngine.from_config(WakewordConfig(keywords=("hey_edged",), models_dir=tmp_path))
    assert engine.keywords == ("hey_edged",)
    engine.close()


def test_missing_and_corrupt_model_files_are_named(tmp_path: Path) -> None:
    """Each broken file is named: missing .tflite, missing .json, corrupt model, bad JSON."""
    path = _copy_user_model(tmp_path, "broken")
    (tmp_path / "broken.tflite").unlink()
    with pytest.raises(ModelError, match=r"broken\.tflite: model file not found"):
        resolve(MICRO, str(path))
    (tmp_path / "lonely.tflite").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"lonely\.json: a microWakeWord model needs its \.json"):
        resolve(MICRO, str(tmp_path / "lonely.tflite"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"bad\.json: model config is not valid JSON"):
        resolve(MICRO, str(tmp_path / "bad.json"))
    corrupt = _copy_user_model(tmp_path, "corrupt")
    (tmp_path / "corrupt.tflite").write_bytes(b"\x00garbage" * 64)
    with pytest.raises(ModelError, match=r"corrupt\.tflite: not a valid TensorFlow Lite model"):
        KeywordEngine.from_config(WakewordConfig(keywords=(str(corrupt),)))
    with pytest.raises(ModelError, match=r"nothere\.tflite: model file not found"):
        KeywordEngine.from_config(
            WakewordConfig(backend="openwakeword", keywords=(str(tmp_path / "nothere.tflite"),))
        )


def test_config_rejects_unknown_keywords_with_a_suggestion() -> None:
    """check-config catches a misspelt keyword, naming the key, the backend and the choices."""
    with pytest.raises(ConfigError) as err:
        parse_config("models:\n  wakeword:\n    keywords: [okay_nabu, hey_jarvs]\n", "c.yaml")
    text = str(err.value)
    assert "c.yaml:3 models.wakeword.keywords[1]: unknown keyword 'hey_jarvs'" in text
    assert "did you mean 'hey_jarvis'?" in text


def test_config_per_keyword_backend_and_duplicates() -> None:
    """A keyword may pick its backend; listing the same keyword twice for one backend is an error."""
    cfg = parse_config(
        "models:\n  wakeword:\n    keywords: [{name: okay_nabu, backend: micro-wakeword}, {name: hey_rhasspy, "
        "backend: openwakeword}, {name: okay_nabu, backend: openwakeword, cutoff: 0.6}]\n"
    )
    kws = cfg.models.wakeword.keyword_settings
    assert [(k.name, k.backend, k.cutoff) for k in kws] == [
        ("okay_nabu", "micro-wakeword", 0.98),  # not its tuned family: that family's own tuned cutoff
        ("hey_rhasspy", "openwakeword", None),
        ("okay_nabu", "openwakeword", 0.6),
    ]
    with pytest.raises(ConfigError, match=r"keywords\[1\]: keyword 'alexa' is listed twice"):
        parse_config("models:\n  wakeword:\n    keywords: [alexa, alexa]\n")
    with pytest.raises(ConfigError, match=r"keywords\[1\]: keyword 'alexa' is listed twice for openwakeword"):
        parse_config("models:\n  wakeword:\n    keywords: [alexa, {name: alexa, backend: openwakeword}]\n")
    assert (
        WakewordConfig(probability_cutoff=0.9, keywords=(KeywordConfig("alexa", cutoff=0.7), "okay_nabu"))
        .keyword_settings[1]
        .cutoff
        == 0.9
    )
