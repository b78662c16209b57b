"""Both backends on real shipped models and real TTS audio."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest

from edged.analysis.kws import AudioFormatError, KeywordEngine, UnknownKeywordError, spot_file
from edged.config.schema import KeywordConfig, WakewordConfig
from edged.sources.audio.chunk import AudioChunk
from edged.sources.audio.files import iter_chunks
from tests.kws_support import fixture_audio, spoken


def _scores(
    engine: KeywordEngine, samples: np.ndarray, chunk: int = 160
) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    engine.set_score_sink(lambda _b, k, t, s: out.setdefault(k, []).append((round(t, 6), s)))
    list(spot_file(engine, samples, 10) if chunk == 160 else _feed(engine, samples, chunk))
    engine.set_score_sink(None)
    return out


def _feed(engine: KeywordEngine, samples: np.ndarray, chunk: int) -> list[object]:
    engine.reset()
    return [d for c in iter_chunks(samples, chunk) for d in engine.process(c)]


def test_micro_wakeword_scores_equal_pymicro_wakeword() -> None:
    """edged's microWakeWord runner gives exactly the package's own probabilities (same model, same audio)."""
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

    audio = fixture_audio("positive_hey_jarvis.flac")
    engine = KeywordEngine.from_config(WakewordConfig(defaults="model", keywords=("hey_jarvis", "alexa")))
    ours = _scores(engine, audio)
    for keyword in ("hey_jarvis", "alexa"):
        features, model = MicroWakeWordFeatures(), MicroWakeWord.from_builtin(Model(keyword))
        reference = [model.process_streaming_prob(f) for f in features.process_streaming(audio.tobytes())]
        assert [s for _, s in ours[keyword]] == pytest.approx(
            reference[2::3], abs=1e-6
        )  # one score per stride
    engine.close()


@pytest.mark.parametrize("backend", ["micro-wakeword", "openwakeword"])
def test_chunk_size_and_reset_do_not_change_results(backend: str) -> None:
    """10 ms, 25 ms or 64 ms chunks give the same scores at the same stream times; a reset replays exactly."""
    audio = fixture_audio("positive_alexa.flac")
    engine = KeywordEngine.from_config(WakewordConfig(defaults="model", backend=backend, keywords=("alexa",)))  # type: ignore[arg-type]
    base = _scores(engine, audio)
    assert base == _scores(engine, audio)
    for chunk in (400, 1024):
        other = _scores(engine, audio, chunk)
        assert [t for t, _ in other["alexa"]] == pytest.approx([t for t, _ in base["alexa"]])
        assert [s for _, s in other["alexa"]] == pytest.approx([s for _, s in base["alexa"]], abs=1e-5)
    engine.close()


def test_openwakeword_detects_its_keywords() -> None:
    """The openWakeWord pipeline (mel, embedding, classifier) hears hey_jarvis and hey_rhasspy."""
    engine = KeywordEngine.from_config(
        WakewordConfig(defaults="model", backend="openwakeword", keywords=("hey_jarvis", "hey_rhasspy"))
    )
    hits = list(spot_file(engine, fixture_audio("positive_hey_jarvis.flac")))
    assert [h.keyword for h in hits].count("hey_jarvis") >= 3
    assert all(h.backend == "openwakeword" and h.trace and h.trace_step == 0.08 for h in hits)
    assert [h.keyword for h in spot_file(engine, fixture_audio("positive_hey_rhasspy.flac"))].count(
        "hey_rhasspy"
    ) >= 3
    engine.close()


def test_detection_carries_a_score_trace() -> None:
    """Each detection has the smoothed score history before it, ending at the detection's score."""
    engine = KeywordEngine.from_config(WakewordConfig(defaults="model", keywords=("alexa",)))
    hit = next(iter(spot_file(engine, spoken("alexa"))))
    assert hit.keyword == "alexa"
    assert hit.score > hit.cutoff == 0.9
    assert hit.trace[-1] == hit.score
    assert len(hit.trace) == 50
    assert hit.trace_step == pytest.approx(0.03)
    assert min(hit.trace) < 0.5  # it rose from low scores
    engine.close()


def test_disable_enable_and_cutoff_at_run_time() -> None:
    """A disabled keyword never fires; enabling it again starts it fresh; the cutoff takes effect at once."""
    audio = spoken("alexa")
    engine = KeywordEngine.from_config(WakewordConfig(defaults="model", keywords=("alexa", "okay_nabu")))
    engine.set_enabled("alexa", False)
    assert list(spot_file(engine, audio)) == []
    engine.set_enabled("alexa", True)
    assert [h.keyword for h in spot_file(engine, audio)] == ["alexa"]
    engine.set_cutoff("alexa", 0.9999)
    assert list(spot_file(engine, audio)) == []
    assert engine.settings("alexa").cutoff == 0.9999
    with pytest.raises(UnknownKeywordError, match="configured: alexa, okay_nabu"):
        engine.set_cutoff("hey_jarvis", 0.5)
    with pytest.raises(ValueError, match="cutoff"):
        engine.set_cutoff("alexa", 1.5)
    engine.close()


def test_setters_are_safe_from_another_thread() -> None:
    """Flipping settings from another thread while audio streams never breaks processing."""
    audio = np.tile(spoken("okay nabu"), 4)
    engine = KeywordEngine.from_config(WakewordConfig(defaults="model", keywords=("okay_nabu", "alexa")))
    stop = threading.Event()
    errors: list[BaseException] = []

    def flip() -> None:
        i = 0
        while not stop.is_set():
            try:
                engine.set_enabled("alexa", i % 2 == 0)
                engine.set_cutoff("okay_nabu", 0.8 + (i % 10) / 100)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            i += 1

    thread = threading.Thread(target=flip, name="kws-test-setter")
    thread.start()
    try:
        hits = list(spot_file(engine, audio))
    finally:
        stop.set()
        thread.join(5)
    assert not errors
    assert all(h.keyword in ("okay_nabu", "alexa") for h in hits)
    engine.set_cutoff("okay_nabu", 0.85)
    assert engine.settings("okay_nabu").cutoff == 0.85
    engine.close()


@pytest.mark.parametrize(
    "samples", [np.zeros(160, np.float32), np.zeros((160, 2), np.int16), np.zeros(160, np.uint8)]
)
def test_wrong_chunk_format_is_refused(samples: np.ndarray) -> None:
    """Chunks that are not 1-D int16 are refused with a message naming the microphone and the format."""
    engine = KeywordEngine.from_config(WakewordConfig(defaults="model", keywords=("alexa",)))
    with pytest.raises(
        AudioFormatError, match=r"microphone kitchen: keyword spotting takes 16 kHz mono int16"
    ):
        engine.process(AudioChunk("kitchen", 0, samples, 0.01, 0.0, 0.0))
    engine.close()


def test_one_keyword_on_two_backends_fires_once() -> None:
    """A keyword spotted by both families is one event per utterance: the refractory period is shared."""
    config = WakewordConfig(defaults="model",
                            keywords=("hey_jarvis", KeywordConfig("hey_jarvis", backend="openwakeword")))
    engine = KeywordEngine.from_config(config)
    assert [b.name for b in engine.backends] == ["micro-wakeword", "openwakeword"]
    hits = list(spot_file(engine, fixture_audio("positive_hey_jarvis.flac")))
    times = [h.stream_time for h in hits]
    assert len(hits) >= 3
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(times))
    engine.close()


def _onnx_classifier(path: Path, weights: np.ndarray, bias: float) -> Path:
    """sigmoid(mean over the 16 embeddings . weights + bias), shaped like an openWakeWord classifier."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["zb"]),
        helper.make_node("Sigmoid", ["zb"], ["p"]),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("w", TensorProto.FLOAT, [96, 1], weights.astype(np.float32).ravel().tolist()),
        helper.make_tensor("b", TensorProto.FLOAT, [1], [bias]),
    ]
    graph = helper.make_graph(
        nodes,
        "clf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 96])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_openwakeword_onnx_classifier_runs_on_onnxruntime(tmp_path: Path) -> None:
    """A custom openWakeWord classifier given as .onnx runs on onnxruntime after the real feature models.

    The classifier is built here (openWakeWord's own .onnx files are not packaged anywhere a test can
    reach); one with zero weights must score exactly sigmoid(bias) at every 80 ms step.
    """
    flat = _onnx_classifier(tmp_path / "steady.onnx", np.zeros(96), 0.847298)  # sigmoid = 0.7
    audio = fixture_audio("positive_alexa.flac")
    engine = KeywordEngine.from_config(WakewordConfig(defaults="model", backend="openwakeword", keywords=(str(flat),)))
    scores = _scores(engine, audio)["steady"]
    assert len(scores) == len(audio) // 1280
    assert all(s == pytest.approx(0.7, abs=1e-4) for _, s in scores)
    hits = list(spot_file(engine, audio))
    assert [h.keyword for h in hits] == ["steady"] * len(hits)
    assert len(hits) == pytest.approx(len(audio) / 16000 / 2.0, abs=1.5)  # once per refractory period
    engine.close()
    rng = np.random.default_rng(5)
    varied = _onnx_classifier(tmp_path / "varied.onnx", rng.standard_normal(96) * 0.01, 0.0)
    engine = KeywordEngine.from_config(
        WakewordConfig(defaults="model", backend="openwakeword", keywords=(str(varied),)))
    values = [s for _, s in _scores(engine, audio)["varied"]]
    assert 0 < min(values) < max(values) < 1
    assert len(set(values)) > 10
    engine.close()


def test_recorded_scores_replay_to_the_engines_detections() -> None:
    """The evaluation's offline replay (one backend, or both on one keyword) reproduces what the
    engine fired, so threshold sweeps measure the daemon's behaviour."""
    from benchmarks.kws_evaluation import Series, fire_times, fire_times_union

    audio = fixture_audio("positive_hey_jarvis.flac")
    config = WakewordConfig(defaults="model",
                            keywords=("hey_jarvis", KeywordConfig("hey_jarvis", backend="openwakeword")))
    engine = KeywordEngine.from_config(config)
    series: dict[str, Series] = {}

    def sink(backend: str, _keyword: str, t: float, score: float) -> None:
        series.setdefault(backend, Series()).add(t, score)

    engine.set_score_sink(sink)
    fired = [d.stream_time for d in spot_file(engine, audio)]
    cutoffs = [
        engine.backends[0].settings("hey_jarvis").cutoff,
        engine.backends[1].settings("hey_jarvis").cutoff,
    ]
    replay = fire_times_union([series["micro-wakeword"], series["openwakeword"]], cutoffs, 2.0)
    assert fired == pytest.approx(replay)
    engine.close()
    single = KeywordEngine.from_config(
        WakewordConfig(defaults="model", backend="openwakeword", keywords=("hey_jarvis",)))
    alone = [d.stream_time for d in spot_file(single, audio)]
    assert alone == pytest.approx(fire_times(series["openwakeword"], 0.5, 2.0))
    single.close()
