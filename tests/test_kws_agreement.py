"""The second stage (two model families must agree), as a pure rule and inside the engine.

The rule is `edged.analysis.kws.scoring.Agreement`; the benchmark that tunes the keyword defaults
replays it vectorised from recorded scores (`benchmarks.kws_heldout.agreed`), so that replay is
checked here against the rule itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.kws_heldout import agreed, refractory
from edged.analysis.kws.scoring import Agreement, Detection, Refractory

MICRO, OPEN = "micro-wakeword", "openwakeword"


def _d(backend: str, t: float, score: float = 0.9) -> Detection:
    return Detection("alexa", score, t, 0.5, backend, (score,), 0.03)


@pytest.mark.parametrize(
    ("events", "fired"),
    [
        ([(MICRO, 1.0)], []),  # one family alone never fires
        ([(OPEN, 1.0)], []),
        ([(MICRO, 1.0), (OPEN, 1.4)], [1.4]),  # the confirmation arrives 0.4 s later: fires then
        ([(OPEN, 1.0), (MICRO, 1.5)], [1.5]),  # the confirmation came first
        ([(MICRO, 1.0), (OPEN, 1.5)], [1.5]),  # exactly `within` apart still agrees
        ([(MICRO, 1.0), (OPEN, 1.51)], []),  # a little more does not
        ([(OPEN, 1.0), (MICRO, 1.6)], []),
        ([(MICRO, 1.0), (MICRO, 1.2), (OPEN, 1.6)], [1.6]),  # the latest primary crossing counts
        ([(MICRO, 1.0), (OPEN, 1.2), (OPEN, 1.3), (MICRO, 1.4)], [1.2, 1.3, 1.4]),  # refractory thins these
    ],
)
def test_agreement_table(events: list[tuple[str, float]], fired: list[float]) -> None:
    """Fires when both families crossed within `within` s (0.5 here), at the later crossing."""
    rule = Agreement(OPEN, 0.5)
    out = [d for d in (rule.push(_d(b, t)) for b, t in events) if d is not None]
    assert [d.stream_time for d in out] == fired


def test_agreement_reports_the_primary_detection_and_both_families() -> None:
    """What fires carries the primary family's score and trace, its time is the confirmation's."""
    rule = Agreement(OPEN, 1.0)
    assert rule.push(_d(MICRO, 2.0, score=0.77)) is None
    fired = rule.push(_d(OPEN, 2.3, score=0.99))
    assert fired is not None
    assert (fired.score, fired.trace, fired.stream_time, fired.backend) == (0.77, (0.77,), 2.3,
                                                                            "micro-wakeword+openwakeword")


def test_agreement_reset_forgets_both_sides() -> None:
    rule = Agreement(OPEN, 1.0)
    rule.push(_d(MICRO, 1.0))
    rule.reset()
    assert rule.push(_d(OPEN, 1.1)) is None
    with pytest.raises(ValueError, match="agreement window"):
        Agreement(OPEN, -1.0)


_times = st.lists(st.integers(0, 400), max_size=25).map(lambda xs: sorted({x * 0.01 for x in xs}))


@settings(max_examples=200, deadline=None)
@given(primary=_times, confirm=_times, within=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
       period=st.sampled_from([0.05, 0.2, 2.0]))
def test_vectorised_replay_equals_the_rule(primary: list[float], confirm: list[float], within: float,
                                           period: float) -> None:
    """The benchmark's replay fires exactly where Agreement + Refractory, fed event by event, fire
    (a refractory period above zero: two detections at one instant are one)."""
    events = sorted([(t, 0, MICRO) for t in primary] + [(t, 1, OPEN) for t in confirm])
    rule, gate = Agreement(OPEN, within), Refractory(period)
    expected = [d.stream_time for d in (rule.push(_d(b, t)) for t, _, b in events)
                if d is not None and gate.admit("alexa", d.stream_time)]
    p, c = np.array(primary), np.array(confirm)
    replayed = refractory(np.union1d(agreed(p, c, within), agreed(c, p, within)), period)
    assert replayed == pytest.approx(expected)


def test_engine_runs_the_second_family_as_a_confirmation_only() -> None:
    """A keyword with `confirm` loads both families; the confirming one is marked, keeps its own
    cutoff when the keyword's cutoff changes at run time, and is switched with the keyword."""
    from edged.analysis.kws import KeywordEngine, UnknownKeywordError
    from edged.config.schema import ConfirmConfig, KeywordConfig, WakewordConfig

    config = WakewordConfig(keywords=(KeywordConfig("alexa", cutoff=0.6, window=3, backend=MICRO,
                                                    confirm=ConfirmConfig(cutoff=0.2, window=2, within=0.7)),))
    engine = KeywordEngine.from_config(config)
    try:
        rows = {(r["backend"], r["role"], r["cutoff"], r["window"]) for r in engine.describe()}
        assert rows == {(MICRO, "detect, confirmed", 0.6, 3), (OPEN, "confirm within 0.7 s", 0.2, 2)}
        assert engine.keywords == ("alexa",)
        engine.set_cutoff("alexa", 0.8)
        assert engine.settings("alexa").cutoff == 0.8
        assert {r["backend"]: r["cutoff"] for r in engine.describe()} == {MICRO: 0.8, OPEN: 0.2}
        engine.set_enabled("alexa", False)
        assert not any(r["enabled"] for r in engine.describe())
    finally:
        engine.close()
    twice = WakewordConfig(keywords=(KeywordConfig("alexa", backend=MICRO, confirm=ConfirmConfig()),
                                     KeywordConfig("alexa", backend=OPEN)))
    with pytest.raises(UnknownKeywordError, match=r"keywords\[1\]: keyword 'alexa' is already configured at "
                                                  r"models.wakeword.keywords\[0\].confirm"):
        KeywordEngine.from_config(twice)
