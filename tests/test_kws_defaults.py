"""Per-keyword defaults: what naming a built-in keyword gets (the values `python -m benchmarks
kws-heldout` and `kws-verifier` tuned), how the config's own values override them, and that they work on real audio
with the real shipped models of both families."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edged.analysis.kws import KeywordEngine
from edged.config import ConfigError, parse_config
from edged.config.keywords import FAMILY_DEFAULTS, KEYWORD_DEFAULTS, MICRO, OPEN
from edged.config.schema import ConfirmConfig, KeywordConfig, WakewordConfig
from tests.kws_support import fired, spoken

FOUR = ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft")

# The tuned values (docs/benchmarks.md, "Keyword defaults"): change them only with a new run of the
# benchmark. (name, family, cutoff, window, second stage: (family, cutoff, window, within) or None)
# Every one of them has its verifier on (tests/test_kws_verifier.py).
TUNED = [
    ("okay_nabu", OPEN, 0.02, 1, None),
    ("hey_jarvis", OPEN, 0.02, 1, None),
    ("alexa", OPEN, 0.05, 1, None),
    ("hey_mycroft", MICRO, 0.05, 1, None),
]


def _row(kw: KeywordConfig) -> tuple[object, ...]:
    c = kw.confirm
    stage = (c.backend, c.cutoff, c.window, c.within) if c is not None and c.enabled else None
    return kw.name, kw.backend, kw.cutoff, kw.window, stage


def test_naming_a_keyword_gets_its_tuned_defaults() -> None:
    """`keywords: [okay_nabu, hey_jarvis, alexa, hey_mycroft]` and nothing else: each keyword's tuned
    family, cutoff, window and second stage, from the config alone and as the engine plans them."""
    config = parse_config("models:\n  wakeword:\n    keywords: [okay_nabu, hey_jarvis, alexa, hey_mycroft]\n")
    assert [_row(k) for k in config.models.wakeword.keyword_settings] == TUNED
    assert set(KEYWORD_DEFAULTS) == set(FOUR)
    assert all(kw.verify for kw in config.models.wakeword.keyword_settings)
    engine = KeywordEngine.from_config(config.models.wakeword)
    try:
        rows = sorted((r["keyword"], r["backend"], r["role"], r["cutoff"], r["window"]) for r in engine.describe())
    finally:
        engine.close()
    assert rows == [
        ("alexa", OPEN, "detect, verified (threshold 0.8)", 0.05, 1),
        ("hey_jarvis", OPEN, "detect, verified (threshold 0.9)", 0.02, 1),
        ("hey_mycroft", MICRO, "detect, verified (threshold 0.9)", 0.05, 1),
        ("okay_nabu", OPEN, "detect, verified (threshold 0.9)", 0.02, 1),
    ]


@pytest.mark.parametrize(
    ("yaml_keywords", "extra", "expected"),
    [
        # an explicit cutoff overrides only the cutoff
        ("[{name: alexa, cutoff: 0.3}]", "", ("alexa", OPEN, 0.3, 1, None)),
        # the other family: that family's own tuned values, no second stage
        ("[{name: alexa, backend: micro-wakeword}]", "", ("alexa", MICRO, 0.99, 8, None)),
        ("[hey_jarvis]", "    backend: micro-wakeword\n", ("hey_jarvis", MICRO, 0.05, 1, None)),
        # the verifier switched off: the family's best setting without one
        ("[{name: alexa, verify: false}]", "", ("alexa", OPEN, 0.5, 2, None)),
        ("[{name: okay_nabu, verify: false}]", "", ("okay_nabu", OPEN, 0.05, 1, None)),
        ("[{name: hey_mycroft, verify: false}]", "", ("hey_mycroft", MICRO, None, None, None)),  # none: the model's
        # a second stage the tuning did not pick: the other family at the model's own settings
        ("[{name: hey_jarvis, confirm: {}}]", "", ("hey_jarvis", OPEN, 0.02, 1, (MICRO, None, None, 1.0))),
        # one cutoff for all keywords overrides the tuned cutoffs (and nothing else)
        ("[hey_jarvis]", "    probability_cutoff: 0.7\n", ("hey_jarvis", OPEN, 0.7, 1, None)),
        # the models' own settings, as before tuning
        ("[alexa]", "    defaults: model\n", ("alexa", MICRO, None, None, None)),
        # a model by path gets no tuned values
        ("[/x/alexa.json]", "", ("/x/alexa.json", MICRO, None, None, None)),
    ],
)
def test_config_values_override_the_tuned_ones(yaml_keywords: str, extra: str, expected: tuple[object, ...]) -> None:
    config = parse_config(f"models:\n  wakeword:\n    keywords: {yaml_keywords}\n{extra}")
    [kw] = config.models.wakeword.keyword_settings
    assert _row(kw) == expected


def test_effective_settings_are_stable() -> None:
    """Resolving already-effective settings again changes nothing (`edged kws --cutoff` does that)."""
    off = KeywordConfig("okay_nabu", confirm=ConfirmConfig(enabled=False))
    config = WakewordConfig(keywords=(*FOUR[1:], off, KeywordConfig("alexa", backend=MICRO, confirm=ConfirmConfig())))
    once = config.keyword_settings
    assert WakewordConfig(keywords=once).keyword_settings == once


def test_family_defaults_cover_both_families_of_each_tuned_keyword() -> None:
    """hey_mycroft has none: no setting of either family alone kept its recall within budget."""
    for name, d in KEYWORD_DEFAULTS.items():
        assert {(name, MICRO), (name, OPEN)} <= set(FAMILY_DEFAULTS) or name == "hey_mycroft"
        assert d.confirm in (None, MICRO, OPEN) and d.confirm != d.backend


@pytest.mark.parametrize(
    ("yaml_keywords", "message"),
    [
        ("[{name: alexa, backend: openwakeword, confirm: {backend: openwakeword}}]",
         r"keywords\[0\].confirm.backend: must be the other family"),
        ("[{name: hey_rhasspy, backend: openwakeword, confirm: {}}]",
         r"keywords\[0\].confirm: unknown keyword 'hey_rhasspy' for backend micro-wakeword"),
        ("[{name: alexa, confirm: {within: 9s}}]", r"within"),
    ],
)
def test_bad_second_stages_are_config_errors(yaml_keywords: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f"models:\n  wakeword:\n    keywords: {yaml_keywords}\n")


def test_check_config_prints_the_effective_keyword_settings(tmp_path: Path) -> None:
    """`edged check-config` says what each keyword will run with: tuned values and the file's own."""
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  wakeword:\n    keywords: [alexa, {name: okay_nabu, cutoff: 0.2}, hey_mycroft]\n"
                    "microphones:\n  kitchen: {device: default}\n")
    out = subprocess.run([sys.executable, "-m", "edged", "check-config", str(path)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == [
        "  keyword alexa: openwakeword, cutoff 0.05, window 1; each detection checked by its shipped verifier",
        "  keyword okay_nabu: openwakeword, cutoff 0.2, window 1; each detection checked by its shipped verifier",
        "  keyword hey_mycroft: micro-wakeword, cutoff 0.05, window 1; each detection checked by its shipped "
        "verifier",
    ]


# -- the defaults on real audio, real models (peak scores noted are far from the cutoffs, so no CPU's
# rounding can change an outcome) -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("keyword", "text", "engine", "voice"),
    [
        ("alexa", "alexa", "festival", "kal_diphone"),  # openwakeword ~1.0 (0.05), its verifier ~0.98 (0.8)
        ("okay_nabu", "okay nabu", "espeak-ng", "en-us"),  # openwakeword ~0.95 (0.02), verifier ~0.99 (0.9)
        ("hey_jarvis", "hey jarvis", "espeak-ng", "en-gb"),  # openwakeword ~1.0 (0.02), verifier ~1.0 (0.9)
    ],
)
def test_defaults_hear_the_keyword(keyword: str, text: str, engine: str, voice: str) -> None:
    assert fired(WakewordConfig(keywords=(keyword,)), spoken(text, engine, voice)) == [keyword]


def test_defaults_hear_what_the_bare_model_missed() -> None:
    """This voice's "hey jarvis" scores ~0.0 on microWakeWord (the old default) and ~1.0 on
    openWakeWord, the tuned family."""
    audio = spoken("hey jarvis", "espeak-ng", "en-gb")
    assert fired(WakewordConfig(keywords=("hey_jarvis",), defaults="model"), audio) == []
    assert fired(WakewordConfig(keywords=("hey_jarvis",)), audio) == ["hey_jarvis"]


@pytest.mark.parametrize(
    ("keyword", "text", "engine", "voice"),
    [
        ("okay_nabu", "okay nabil", "espeak-ng", "en-us"),  # openwakeword ~0.10 (0.02), verifier ~0.24 (0.9)
        ("hey_jarvis", "hey travis", "espeak-ng", "en-gb"),  # openwakeword ~0.22 (0.02), verifier ~0.68 (0.9)
        ("alexa", "alex", "espeak-ng", "en-us"),  # openwakeword ~0.002 (0.05)
    ],
)
def test_defaults_ignore_a_near_miss(keyword: str, text: str, engine: str, voice: str) -> None:
    assert fired(WakewordConfig(keywords=(keyword,)), spoken(text, engine, voice)) == []


def test_second_stage_rejects_a_near_miss_one_family_takes_for_the_keyword() -> None:
    """Festival's "electra": microWakeWord gives alexa ~0.9, openWakeWord ~0.0005. Alone at the
    second stage's cutoff (0.1) microWakeWord fires; with openWakeWord (0.05) having to agree
    within 0.5 s (the previous default) nothing does."""
    audio = spoken("electra", "festival", "kal_diphone")
    alone = KeywordConfig("alexa", cutoff=0.1, window=1, backend=MICRO)
    assert fired(WakewordConfig(keywords=(alone,)), audio) == ["alexa"]
    agreed = KeywordConfig("alexa", cutoff=0.05, window=1, backend=OPEN, verify=False,
                           confirm=ConfirmConfig(MICRO, 0.1, 1, 0.5))
    assert fired(WakewordConfig(keywords=(agreed,)), audio) == []


def test_without_openwakeword_installed_the_tuned_family_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake: openWakeWord's models are reported missing (the package is installed here). A keyword
    whose tuned family is openWakeWord then runs on micro-wakeword with that family's tuned values,
    a verifier (it reads openWakeWord's embeddings) is left out with the family's settings for use
    without one, each with a warning; a family the config names itself is not replaced."""
    from structlog.testing import capture_logs

    import edged.analysis.kws.engine as engine_module
    from edged.analysis.kws.engine import plan_keywords

    monkeypatch.setattr(engine_module, "available", lambda backend, models_dir=None: [] if backend == OPEN else ["x"])
    with capture_logs() as logs:
        plans = plan_keywords(WakewordConfig(keywords=("okay_nabu", "alexa", "hey_mycroft")))
    assert [(p.spec.keyword, p.spec.backend, p.settings.cutoff, p.settings.window, p.confirms) for p in plans] == [
        ("okay_nabu", MICRO, 0.98, 3, False),
        ("alexa", MICRO, 0.99, 8, False),
        ("hey_mycroft", MICRO, 0.95, 5, False),  # its family already; the model's own settings
    ]
    assert [e["event"] for e in logs] == ["kws_family_fallback", "kws_family_fallback", "kws_verifier_dropped"]
    [own] = plan_keywords(WakewordConfig(keywords=(KeywordConfig("okay_nabu", backend=OPEN),)))
    assert own.spec.backend == OPEN  # (loading it would then fail with the install hint)
