"""The learned keyword verifiers: the shipped files, the config switch, `edged check-config`, and the
real engine with the real shipped models rejecting a near miss the first stage takes for the keyword
while keeping the keyword."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edged.analysis.kws import KeywordEngine, spot_file
from edged.analysis.kws.errors import ModelError
from edged.analysis.kws.verifier import Verifier, load_verifier, shipped_path
from edged.config import ConfigError, parse_config
from edged.config.keywords import KEYWORD_DEFAULTS, OPEN, VERIFIED_KEYWORDS
from edged.config.schema import KeywordConfig, WakewordConfig
from tests.kws_support import fired, spoken


@pytest.mark.parametrize("keyword", VERIFIED_KEYWORDS)
def test_every_listed_verifier_ships_and_loads(keyword: str) -> None:
    path = shipped_path(keyword)
    assert path is not None
    v = load_verifier(path)
    assert v.keyword == keyword and 1 <= v.frames <= 16 and 0 < v.threshold < 1
    assert v.weights.shape == (v.frames * 96,) and np.all(v.scale > 0)


def test_verifier_probability_is_the_logistic_of_the_standardised_features(tmp_path: Path) -> None:
    """The runtime arithmetic on a hand-made model (numbers exact in binary): z = 2*1 - 1*0.5 + 0.5."""
    mean = np.zeros(192)
    scale = np.ones(192)
    weights = np.zeros(192)
    weights[96:98] = (2.0, -1.0)  # the newer of the two embeddings read
    v = Verifier("x", 2, mean, scale, weights, 0.5, 0.9)
    window = np.zeros((16, 96))
    window[-1, :2] = (1.0, 0.5)
    assert v.probability(window) == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert not v.accepts(window) and dataclasses.replace(v, threshold=0.8).accepts(window)
    loaded = load_verifier(v.save(tmp_path / "x.npz", {"made_by": "test"}))
    assert loaded.probability(window) == v.probability(window) and loaded.threshold == 0.9
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match=r"bad\.npz: not a keyword verifier"):
        load_verifier(tmp_path / "bad.npz")


# -- config -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("yaml_keywords", "extra", "expected"),
    [
        ("[{name: VERIFIED}]", "", True),  # naming the keyword gets it
        ("[{name: VERIFIED, verify: false}]", "", False),  # switched off
        ("[VERIFIED]", "    defaults: model\n", False),  # the models' own settings: none
        ("[{name: VERIFIED, verify: true}]", "    defaults: model\n    backend: openwakeword\n", True),
        ("[{name: VERIFIED, backend: micro-wakeword}]", "", False),  # not its tuned family: not by default
        ("[{name: VERIFIED, backend: micro-wakeword, verify: true}]", "", True),  # but it may be asked for
    ],
)
def test_naming_a_keyword_gets_its_verifier_unless_switched_off(yaml_keywords: str, extra: str,
                                                                expected: bool) -> None:
    name = "alexa"  # tuned on openwakeword, verified
    assert KEYWORD_DEFAULTS[name].backend == OPEN and KEYWORD_DEFAULTS[name].verify
    config = parse_config(f"models:\n  wakeword:\n    keywords: {yaml_keywords.replace('VERIFIED', name)}\n{extra}")
    [kw] = config.models.wakeword.keyword_settings
    assert kw.verify is expected
    again = dataclasses.replace(config.models.wakeword, keywords=(kw,))
    assert again.keyword_settings == (kw,)  # stable when resolved again


@pytest.mark.parametrize(
    ("yaml_keywords", "message"),
    [
        ("[{name: /x/mine.json, verify: true}]", r"keywords\[0\].verify: no verifier for '/x/mine.json'"),
        ("[{name: hey_rhasspy, backend: openwakeword, verify: true}]",
         r"keywords\[0\].verify: no verifier for 'hey_rhasspy': edged ships them for okay_nabu, "),
        ("[{name: alexa, verify: maybe}]", r"<config>:3 models.wakeword.keywords\[0\].verify: must be true or false"),
    ],
)
def test_bad_verify_settings_are_config_errors(yaml_keywords: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f"models:\n  wakeword:\n    keywords: {yaml_keywords}\n")


def test_check_config_says_which_keywords_are_verified(tmp_path: Path) -> None:
    name = next(k for k, d in KEYWORD_DEFAULTS.items() if d.verify)
    path = tmp_path / "c.yaml"
    path.write_text(f"models:\n  wakeword:\n    keywords: [{name}, {{name: {name}, verify: false, backend: "
                    f"{'micro-wakeword' if KEYWORD_DEFAULTS[name].backend == OPEN else 'openwakeword'}}}]\n"
                    "microphones:\n  kitchen: {device: default}\n")
    out = subprocess.run([sys.executable, "-m", "edged", "check-config", str(path)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    verified, plain = out.stdout.splitlines()[1:]
    assert verified.startswith(f"  keyword {name}: ") and verified.endswith("; each detection checked by its "
                                                                          "shipped verifier")
    assert plain.startswith(f"  keyword {name}: ") and "verifier" not in plain


# -- the real engine, real shipped models (scores noted are far from the cutoffs and thresholds, so no
# CPU's rounding can change an outcome) ---------------------------------------------------------------

def _first_stage_only(keyword: str) -> KeywordConfig:
    """The keyword's default first stage (family, cutoff, window) with the verifier off."""
    [kw] = WakewordConfig(keywords=(keyword,)).keyword_settings
    return KeywordConfig(keyword, kw.cutoff, kw.window, backend=kw.backend, verify=False)


@pytest.mark.parametrize(
    ("keyword", "text", "engine", "voice"),
    [
        # first stage / its cutoff; verifier's highest probability / its threshold
        ("hey_mycroft", "hey my car", "espeak-ng", "en-us"),  # micro-wakeword ~1.0 / 0.05; ~0.03 / 0.9
        ("okay_nabu", "okay nabil", "espeak-ng", "en-us"),  # openwakeword ~0.10 / 0.02; ~0.24 / 0.9
        ("hey_jarvis", "hey travis", "espeak-ng", "en-gb"),  # openwakeword ~0.22 / 0.02; ~0.68 / 0.9
        ("alexa", "alexis", "espeak-ng", "en-gb"),  # openwakeword ~0.95 / 0.05; ~0.40 / 0.8
    ],
)
def test_verifier_rejects_a_near_miss_the_first_stage_takes_for_the_keyword(keyword: str, text: str, engine: str,
                                                                             voice: str) -> None:
    audio = spoken(text, engine, voice)
    assert fired(WakewordConfig(keywords=(_first_stage_only(keyword),)), audio) == [keyword]
    assert fired(WakewordConfig(keywords=(keyword,)), audio) == []


@pytest.mark.parametrize(
    ("keyword", "text", "engine", "voice"),
    [
        ("hey_mycroft", "hey mycroft", "espeak-ng", "en-gb"),  # verifier ~0.996 / 0.9
        ("okay_nabu", "okay nabu", "espeak-ng", "en-us"),  # ~0.99 / 0.9
        ("hey_jarvis", "hey jarvis", "espeak-ng", "en-gb"),  # ~1.0 / 0.9
        ("alexa", "alexa", "festival", "kal_diphone"),  # ~0.98 / 0.8
    ],
)
def test_verifier_keeps_the_keyword(keyword: str, text: str, engine: str, voice: str) -> None:
    audio = spoken(text, engine, voice)
    assert fired(WakewordConfig(keywords=(keyword,)), audio) == [keyword]


def test_a_verifier_behind_micro_wakeword_runs_the_openwakeword_features_alone() -> None:
    """hey_mycroft's first stage is micro-wakeword; its verifier reads openWakeWord's embeddings, so the
    engine runs that family's feature models with no keyword of its own, and counts the rejection."""
    engine = KeywordEngine.from_config(WakewordConfig(keywords=("hey_mycroft",)))
    try:
        assert sorted(b.name for b in engine.backends) == ["micro-wakeword", "openwakeword"]
        assert engine.keywords == ("hey_mycroft",)
        assert list(spot_file(engine, spoken("hey my car", "espeak-ng", "en-us"))) == []
        assert engine.rejected > 0
    finally:
        engine.close()


# -- the training side (benchmarks/kws_verifier.py, which made the shipped files) ----------------------

def test_training_near_misses_share_no_phrase_with_the_evaluation_pools() -> None:
    from benchmarks.kws_verifier_data import VERIFIER_NEAR_MISSES, check_disjoint

    check_disjoint()  # raises on a phrase of near-miss pool 1 (either half)
    assert all(len(v) >= 25 for v in VERIFIER_NEAR_MISSES.values())
    with pytest.raises(ValueError, match="hey my cart"):  # one of ours, in a pool given as held out
        check_disjoint({"hey_mycroft": ("Hey, my cart!",)})


def test_training_separates_a_toy_problem_and_its_probabilities_are_the_runtime_ones() -> None:
    """Two clouds of 16x96 'embeddings' apart along one direction: the fitted verifier ranks them
    apart, and the benchmark's vectorised probabilities equal `Verifier.probability` row by row."""
    from benchmarks.kws_verifier import fit, probabilities

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16, 96)).astype(np.float32)
    y = np.repeat([0, 1], 100).astype(np.int8)
    x[y == 1, -1, 5] += 3.0
    v = fit(x, y, 8, 0.1, "toy")
    p = probabilities(v, x)
    assert p[y == 1].mean() > 0.8 and p[y == 0].mean() < 0.2
    assert np.allclose(p, [v.probability(w) for w in x], rtol=0, atol=1e-12)


def test_tuning_false_accepts_are_counted_in_the_held_out_mix(tmp_path: Path) -> None:
    """The tuning sets hold far more near misses per hour of speech than a held-out set; the rate the
    verifier's settings are chosen by weighs each kind's own rate by the held-out recipe's share."""
    from benchmarks.kws_heldout import Outcome
    from benchmarks.kws_verifier import Sets
    from benchmarks.synth.kws_eval import EvalFile, EvalSpec, Manifest

    files = (EvalFile("s.flac", "speech", 3600.0), EvalFile("n.flac", "near_miss", 1800.0),
             EvalFile("p.flac", "positive", 600.0, "alexa"))
    sets = Sets({"tune": Manifest(tmp_path, EvalSpec(), files, ())}, {})
    assert sets.near_share("tune") == pytest.approx(1 / 3)
    o = Outcome(positives=10, found=8, speech_fa=2, near_fa=6, negative_hours=1.5, latencies=())
    assert o.fa_per_hour == pytest.approx(8 / 1.5)  # the plain rate: near misses over-weighted
    assert sets.mixed_fa_rate(o, 0.25) == pytest.approx(2.0 * 0.75 + 12.0 * 0.25)
    assert sets.mixed_fa_rate(o, 1 / 3) == pytest.approx(o.fa_per_hour)


def test_the_benchmark_names_defaults_that_differ_from_its_choice() -> None:
    """The real-engine check runs KEYWORD_DEFAULTS: when the first stage chosen differs, the benchmark
    stops with the line to put in edged/config/keywords.py instead of measuring the old defaults."""
    from benchmarks.kws_heldout import Outcome
    from benchmarks.kws_verifier import Choice, FirstStage, stale_defaults

    o = Outcome(1, 1, 0, 0, 1.0, ())
    shipped = KEYWORD_DEFAULTS["alexa"]
    same = FirstStage(shipped.backend, shipped.window)
    results = {"keywords": {
        "alexa": {"first": same, "chosen": Choice(same, shipped.cutoff, 0.8, o, 0.0)},
        "hey_jarvis": {"first": FirstStage(OPEN, 1), "chosen": Choice(FirstStage(OPEN, 1), 0.7, 0.5, o, 0.0)},
        "okay_nabu": {},  # nothing within budget: nothing to set
    }}
    assert stale_defaults(results) == ['    "hey_jarvis": KeywordDefaults(\'openwakeword\', 0.7, 1, verify=True),']
