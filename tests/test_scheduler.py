"""The scheduler thread end to end, with a scripted captioner standing in for the model.

The real model (the tiny GLM-Edge-V bundle) is tested in test_glm_*.py and runs in the replay tests;
here the model's duration and text must be exact and controllable, so a scripted captioner is used:
it "generates" one token every `token_s` seconds and honours cancel and deadline between tokens,
as the real one does.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edged.analysis.frame_analysis import FrameAnalysis
from edged.analysis.history import AnalysedFrame, FrameHistory
from edged.analysis.scene import FrameQuality, scene_signature
from edged.config import parse_config
from edged.events import CameraEvent, Caption, CaptionUnchanged, Event, Snapshot, TriggerKind
from edged.inference.protocol import CaptionResult
from edged.inference.worker import InferenceWorker, Job
from edged.scheduling.lifecycle import EventTracker
from edged.scheduling.scheduler import Scheduler
from edged.scheduling.triggers import IMAGE_LANE, HandedImage, StreamSink, Trigger, TriggerError


class ScriptedCaptioner:
    """A stand-in model: `texts` in turn, `tokens` tokens each, one every `token_s` seconds."""

    name = "scripted"

    def __init__(self, texts: list[str], tokens: int = 5, token_s: float = 0.02) -> None:
        self.texts = texts
        self.tokens = tokens
        self.token_s = token_s
        self.prompts: list[str] = []
        self.calls = 0

    def caption(self, image: np.ndarray, prompt: str, *, max_new_tokens: int | None = None,
                deadline: float | None = None, cancel: threading.Event | None = None,
                on_token: Callable[[str], None] | None = None) -> CaptionResult:
        self.prompts.append(prompt)
        text = self.texts[min(self.calls, len(self.texts) - 1)]
        self.calls += 1
        for i in range(self.tokens):
            if cancel is not None and cancel.is_set():
                return CaptionResult(text, tuple(range(i)), self.name, "cancelled")
            if deadline is not None and time.monotonic() > deadline:
                return CaptionResult(text, tuple(range(i)), self.name, "deadline")
            time.sleep(self.token_s)
            if on_token is not None:  # the text in `tokens` pieces, as a real model streams it
                on_token(text[i * len(text) // self.tokens:(i + 1) * len(text) // self.tokens])
        return CaptionResult(text, tuple(range(self.tokens)), self.name, "stop")

    def close(self) -> None:
        pass


def scene(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (72, 128, 3), dtype=np.uint8)


def frame(camera: str, seq: int, image: np.ndarray, ts: float | None = None, area: float = 0.0) -> AnalysedFrame:
    image.flags.writeable = False
    return AnalysedFrame(camera, seq, ts or time.monotonic(), time.time(), seq / 5, image,
                         quality=FrameQuality(100.0, 0.1), motion_area=area, motion=area > 0,
                         signature=scene_signature(image))


class Rig:
    """A scheduler over real histories, a real worker and a recording publisher."""

    def __init__(self, captioner: ScriptedCaptioner | None, cameras: str = "porch", extra: str = "") -> None:
        cams = "".join(f"  {c}: {{url: {c}.mp4{extra}}}\n" for c in cameras.split(","))
        self.config = parse_config(f"cameras:\n{cams}")
        self.published: list[Event] = []
        self.lock = threading.Lock()
        self.histories = {c: FrameHistory(20) for c in self.config.cameras}
        self.worker = InferenceWorker(captioner) if captioner is not None else None
        self.events = EventTracker(self.publish, {})
        self.scheduler = Scheduler(self.config, self.histories, self.worker, self.events, self.publish,
                                   FrameAnalysis.scene_distance)
        for i, cam in enumerate(self.config.cameras):
            self.histories[cam].add(frame(cam, 1, scene(i)))
        if self.worker is not None:
            self.worker.start()
        self.scheduler.start()

    def publish(self, event: Event) -> None:
        with self.lock:
            self.published.append(event)

    def of(self, kind: type) -> list[Any]:
        with self.lock:
            return [e for e in self.published if isinstance(e, kind)]

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; published: {self.published}"
            time.sleep(0.01)

    def stop(self) -> None:
        self.scheduler.stop()
        if self.worker is not None:
            self.worker.stop()


@pytest.fixture
def rigs() -> Any:
    made: list[Rig] = []

    def make(*args: Any, **kwargs: Any) -> Rig:
        rig = Rig(*args, **kwargs)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.stop()


def test_motion_event_gets_its_caption_as_an_update(rigs: Any) -> None:
    """new (immediately) -> caption -> update on the same id, with labels from the text."""
    rig = rigs(ScriptedCaptioner(["A man carries a parcel to the door."]))
    event_id = rig.events.motion_started("porch", rig.histories["porch"].latest(), 0.2)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.MOTION, "porch",
                                                     ts=time.monotonic() - 0.1, event_id=event_id))
    rig.wait(lambda: bool(rig.of(Caption)))
    caption = rig.of(Caption)[0]
    assert (caption.id, caption.trigger, caption.labels) == (event_id, "motion", ("person", "package"))
    updates = [e for e in rig.of(CameraEvent) if e.type == "update"]
    assert updates[0].id == event_id
    assert updates[0].caption == "A man carries a parcel to the door."


def test_a_keyword_preempts_a_running_periodic_caption(rigs: Any) -> None:
    """Higher priority cancels the running job between tokens; the keyword is captioned first."""
    model = ScriptedCaptioner(["quiet garden", "someone at the door", "quiet garden"], tokens=100, token_s=0.01)
    rig = rigs(model)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.PERIODIC, "porch"))
    rig.wait(lambda: model.calls == 1)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.KEYWORD, "porch", keyword="okay_nabu"))
    rig.wait(lambda: len(rig.of(Caption)) >= 1, timeout=20)
    first = rig.of(Caption)[0]
    assert first.trigger == "keyword"
    assert rig.scheduler.counters.preempted == 1
    assert 'just said "okay nabu"' in model.prompts[1]


def test_a_caption_that_would_miss_its_deadline_is_dropped_as_stale(rigs: Any) -> None:
    """Once captions are known to take ~0.5 s, a trigger with 0.2 s left is dropped, not run."""
    model = ScriptedCaptioner(["a car"], tokens=5, token_s=0.1)
    rig = rigs(model)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.REQUEST, "porch"))
    rig.wait(lambda: len(rig.of(Caption)) == 1)
    answers: list[str | None] = []
    late = Trigger(TriggerKind.REQUEST, "porch", time.monotonic(), time.monotonic() + 0.2,
                   on_done=lambda t, r, e: answers.append(e))
    rig.scheduler.trigger(late)
    rig.wait(lambda: bool(answers))
    assert answers[0] is not None
    assert "would miss its deadline" in answers[0]
    assert rig.scheduler.counters.stale == 1
    assert model.calls == 1


def test_latest_wins_while_the_model_is_busy(rigs: Any) -> None:
    """Motion triggers that pile up behind a running caption collapse to the newest one."""
    model = ScriptedCaptioner(["one", "two", "three"], tokens=20, token_s=0.02)
    rig = rigs(model)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.KEYWORD, "porch"))
    rig.wait(lambda: model.calls == 1)
    ids = []
    for _ in range(5):
        event_id = rig.events.open("porch", TriggerKind.MOTION, None, time.monotonic())
        ids.append(event_id)
        rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.MOTION, "porch", event_id=event_id))
    rig.wait(lambda: len(rig.of(Caption)) == 2)
    time.sleep(0.3)
    assert model.calls == 2
    assert rig.of(Caption)[1].id == ids[-1]
    assert rig.scheduler.counters.coalesced == 4


def test_cameras_take_turns(rigs: Any) -> None:
    """Equal-priority work on two cameras alternates instead of one camera starving the other."""
    model = ScriptedCaptioner(["x"], tokens=3, token_s=0.01)
    rig = rigs(model, cameras="a,b")
    for _ in range(3):
        for cam in ("a", "b"):
            rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.REQUEST, cam))
        done = len(rig.of(Caption))
        rig.wait(lambda done=done: len(rig.of(Caption)) >= done + 2)
    cams = [c.camera for c in rig.of(Caption)]
    assert sorted(cams) == ["a", "a", "a", "b", "b", "b"]
    assert all(cams[i] != cams[i + 1] for i in range(0, len(cams), 2))


def test_an_unchanged_scene_is_not_captioned_again(rigs: Any) -> None:
    """A periodic trigger on the same scene sends a heartbeat, not a model run; a changed scene is captioned."""
    model = ScriptedCaptioner(["an empty porch", "a cat on the porch"])
    rig = rigs(model)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.PERIODIC, "porch"))
    rig.wait(lambda: len(rig.of(Caption)) == 1)
    rig.histories["porch"].add(frame("porch", 2, scene(0).copy()))
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.PERIODIC, "porch"))
    rig.wait(lambda: bool(rig.of(CaptionUnchanged)))
    assert model.calls == 1
    assert rig.of(CaptionUnchanged)[0].reason == "scene"
    rig.histories["porch"].add(frame("porch", 3, scene(99)))
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.PERIODIC, "porch"))
    rig.wait(lambda: len(rig.of(Caption)) == 2)
    assert model.calls == 2


def test_the_same_words_again_are_a_heartbeat(rigs: Any) -> None:
    """A periodic caption that says what the last one said is not republished."""
    model = ScriptedCaptioner(["A car is parked in the driveway.", "The image shows a car parked in the driveway."])
    rig = rigs(model)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.PERIODIC, "porch"))
    rig.wait(lambda: len(rig.of(Caption)) == 1)
    rig.histories["porch"].add(frame("porch", 2, scene(5)))
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.PERIODIC, "porch"))
    rig.wait(lambda: bool(rig.of(CaptionUnchanged)))
    assert rig.of(CaptionUnchanged)[0].reason == "text"
    assert len(rig.of(Caption)) == 1
    assert model.calls == 2


def test_ask_answers_the_caller_only(rigs: Any) -> None:
    """A question's answer goes back to the asker and is not the camera's caption."""
    model = ScriptedCaptioner(["Yes, the garage door is open."])
    rig = rigs(model)
    answers: list[CaptionResult | None] = []
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.ASK, "porch", question="Is the garage door open?",
                                                     on_done=lambda t, r, e: answers.append(r)))
    rig.wait(lambda: bool(answers))
    assert answers[0] is not None
    assert answers[0].text == "Yes, the garage door is open."
    assert model.prompts == ["Is the garage door open?"]
    assert rig.of(Caption) == []


def test_without_a_model_requests_are_told_how_to_get_one(rigs: Any) -> None:
    """No captioner: events still open and close; a request is answered with the command that fixes it."""
    rig = rigs(None)
    errors: list[str | None] = []
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.REQUEST, "porch",
                                                     on_done=lambda t, r, e: errors.append(e)))
    event_id = rig.events.open("porch", TriggerKind.KEYWORD, None, time.monotonic(), keyword="okay_nabu")
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.KEYWORD, "porch", event_id=event_id))
    rig.wait(lambda: bool(errors) and any(e.type == "end" for e in rig.of(CameraEvent)))
    assert errors[0] is not None
    assert "edged models pull glm-edge-v-2b" in errors[0]



def test_stats_read_from_another_thread_while_triggers_pour_in(rigs: Any) -> None:
    """`stats()` and `camera_stats()` are read by the daemon's main loop (stats topic, `health` request)
    while the scheduler thread admits triggers, runs jobs and records latencies. Every read must succeed
    and add up however the threads interleave. Each round, 120 cameras get their first trigger at once
    (a camera's first trigger is where its bookkeeping appears) while a second thread reads the stats in
    a tight loop. The interpreter's thread switch interval is made tiny for the test, so the threads
    interleave every few bytecodes instead of every 5 ms: a read that iterates shared state unguarded
    fails within a few rounds instead of once in a blue moon."""
    cams = [f"c{i}" for i in range(120)]
    model = ScriptedCaptioner(["a quiet street"], tokens=1, token_s=0.0)
    failures: list[BaseException] = []
    reads = 0
    switch = sys.getswitchinterval()

    def read(rig: Rig, done: threading.Event) -> None:
        nonlocal reads
        while not done.is_set():
            try:
                stats = rig.scheduler.stats()
                rig.scheduler.camera_stats(cams[reads % len(cams)])
            except BaseException as exc:  # the failure under test: kept for the main thread to report
                failures.append(exc)
                return
            assert stats["pending"] >= 0
            reads += 1

    def admitted(rig: Rig) -> bool:
        s = rig.scheduler.stats()
        return bool(s["pending"] + s["captions"] + int(s["running"]) == len(cams))

    for _ in range(8):
        rig = rigs(model, cameras=",".join(cams), extra=", captions: {on: [request]}")
        done = threading.Event()
        reader = threading.Thread(target=read, args=(rig, done), name="stats-reader")
        sys.setswitchinterval(1e-6)
        try:
            reader.start()
            for cam in cams:
                rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.REQUEST, cam))
            rig.wait(lambda rig=rig: bool(failures) or admitted(rig), timeout=60)
        finally:
            done.set()
            reader.join(10)
            sys.setswitchinterval(switch)
            rig.stop()
        assert not failures, "stats() failed while the scheduler ran: " + "".join(
            traceback.format_exception(failures[0]))
        final = rig.scheduler.stats()
        assert final["by_trigger"] in ({}, {"request": final["captions"]})
    assert reads > 0


def test_a_job_that_ends_at_once_leaves_the_worker_free() -> None:
    """A job can finish before `submit()` returns (a model that fails at once, a tiny scripted one): the
    worker must still take the next job. The switch interval is made tiny so the worker thread often runs
    the whole job between the submitting thread's statements (see the stats test above)."""
    worker = InferenceWorker(ScriptedCaptioner(["x"], tokens=0, token_s=0.0))
    worker.start()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(10000):
            job = Job(scene(0), "describe", None)
            worker.submit(job).result(timeout=5)  # the worker frees itself before it resolves the future
    finally:
        sys.setswitchinterval(switch)
        worker.stop()
    assert worker.completed == 10000


class LastTokenCaptioner(ScriptedCaptioner):
    """Writes its caption once `release` is set and does not stop when cancelled: as if the model had
    already decoded its last token (or a remote server had already sent it) when privacy went on. Then
    only the privacy check at publication stands between that caption and the broker."""

    def __init__(self, text: str) -> None:
        super().__init__([text])
        self.started = threading.Event()
        self.release = threading.Event()

    def caption(self, image: np.ndarray, prompt: str, *, max_new_tokens: int | None = None,
                deadline: float | None = None, cancel: threading.Event | None = None,
                on_token: Callable[[str], None] | None = None) -> CaptionResult:
        self.calls += 1
        self.started.set()
        assert self.release.wait(30)
        return CaptionResult(self.texts[0], (1, 2, 3), self.name, "stop")


def test_privacy_on_withholds_a_caption_that_finishes_anyway_and_refuses_new_work(rigs: Any) -> None:
    """Privacy ON while a keyword caption runs, with a periodic one queued: the caption that still comes
    back is not published (no caption, snapshot or `update`; the event gets its `end`), the queued one is
    dropped, a request made meanwhile is answered "privacy", and no periodic caption is even started.
    After privacy OFF, captions resume on frames captured from then on."""
    model = LastTokenCaptioner("A man at the door.")
    rig = rigs(model, extra=", captions: {interval: {min: 1s, max: 1s}}")
    event_id = rig.events.open("porch", TriggerKind.KEYWORD, rig.histories["porch"].latest(), time.monotonic())
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.KEYWORD, "porch", event_id=event_id))
    assert model.started.wait(10)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.PERIODIC, "porch"))
    rig.wait(lambda: rig.scheduler.stats()["pending"] == 1)
    mark = len(rig.published)
    rig.scheduler.set_privacy("porch", True)
    errors: list[str | None] = []
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.REQUEST, "porch",
                                                     on_done=lambda t, r, e: errors.append(e)))
    model.release.set()
    rig.wait(lambda: bool(errors) and rig.scheduler.stats()["privacy_cancelled"] == 3 and not rig.scheduler.stats()[
        "running"])
    time.sleep(1.5)  # a periodic trigger would have come due
    assert errors == ["cancelled: camera 'porch' went into privacy mode"]
    after = rig.published[mark:]
    assert [e for e in after if isinstance(e, Caption | Snapshot | CaptionUnchanged)] == []
    assert [(e.type, e.id) for e in after if isinstance(e, CameraEvent)] == [("end", event_id)]
    assert model.calls == 1

    rig.scheduler.set_privacy("porch", False)
    answers: list[CaptionResult | None] = []
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.REQUEST, "porch",
                                                     on_done=lambda t, r, e: answers.append(r)))
    rig.wait(lambda: bool(answers))
    assert answers == [None]  # the only frame is from before privacy: nothing to caption yet
    back = frame("porch", 2, scene(3))
    rig.histories["porch"].add(back)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.REQUEST, "porch",
                                                     on_done=lambda t, r, e: answers.append(r)))
    rig.wait(lambda: len(rig.of(Caption)) == 1)
    assert rig.of(Caption)[0].frame_ts == back.wall_ts


def test_captions_on_is_the_one_gate_for_every_trigger_kind(rigs: Any) -> None:
    """`captions.on: [motion]`: a caption_now is answered with why it is refused, a keyword event is closed
    without a caption, and motion is captioned (the scheduler checks every kind in one place)."""
    rig = rigs(ScriptedCaptioner(["A cat on the mat."]), extra=", captions: {on: [motion]}")
    errors: list[str | None] = []
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.REQUEST, "porch",
                                                     on_done=lambda t, r, e: errors.append(e)))
    heard = rig.events.open("porch", TriggerKind.KEYWORD, None, time.monotonic(), keyword="okay_nabu")
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.KEYWORD, "porch", event_id=heard))
    moved = rig.events.motion_started("porch", rig.histories["porch"].latest(), 0.2)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.MOTION, "porch", event_id=moved))
    rig.wait(lambda: bool(rig.of(Caption)) and bool(errors))
    assert errors == ["camera 'porch' takes no request captions (captions.on: motion)"]
    assert [(c.id, c.trigger) for c in rig.of(Caption)] == [(moved, TriggerKind.MOTION)]
    assert [e.type for e in rig.of(CameraEvent) if e.id == heard] == ["new", "end"]


class Answers:
    """What the callers of handed-in images were told, in order (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[str, CaptionResult | None, TriggerError | None]] = []

    def done(self, name: str) -> Callable[[Trigger, CaptionResult | None, TriggerError | None], None]:
        def record(_t: Trigger, result: CaptionResult | None, error: TriggerError | None) -> None:
            with self.lock:
                self.got.append((name, result, error))
        return record

    def names(self) -> list[str]:
        with self.lock:
            return [name for name, _r, _e in self.got]


def handed(rig: Rig, prompt: str, answers: Answers, name: str, deadline_s: float = 30.0,
           stream: StreamSink | None = None) -> Trigger:
    trigger = rig.scheduler.make_image_trigger(HandedImage(scene(7), prompt, 12, stream), deadline_s,
                                               answers.done(name))
    rig.scheduler.trigger(trigger)
    return trigger


def test_a_handed_image_is_answered_to_its_caller_and_nothing_is_published(rigs: Any) -> None:
    """An image from the HTTP API: its prompt goes to the model as given, its text streams to the caller
    and comes back as the answer; no caption, event or snapshot is published, no camera state changes."""
    model = ScriptedCaptioner(["Two cats on a sofa."], tokens=4)
    rig = rigs(model)
    answers, pieces = Answers(), []
    handed(rig, "What animals are there?", answers, "one", stream=StreamSink(pieces.append))
    rig.wait(lambda: bool(answers.names()))
    (_, result, error) = answers.got[0]
    assert error is None and result is not None
    assert result.text == "Two cats on a sofa."
    assert "".join(pieces) == "Two cats on a sofa." and len(pieces) == 4
    assert model.prompts == ["What animals are there?"]
    assert rig.published == []
    assert rig.scheduler.cameras["porch"].last_text == ""
    stats = rig.scheduler.stats()
    assert (stats["images"], stats["captions"], stats["images_pending"]) == (1, 0, 0)
    assert stats["latency_ms"][IMAGE_LANE]["n"] == 1


def test_a_handed_image_preempts_a_motion_caption_which_then_runs_again(rigs: Any) -> None:
    """Request priority: a waiting image stops a running motion caption between tokens, is answered
    first, and the motion caption runs again afterwards and is published."""
    model = ScriptedCaptioner(["A man at the door.", "A parcel on a table.", "A man at the door."],
                              tokens=50, token_s=0.01)
    rig = rigs(model)
    event_id = rig.events.motion_started("porch", rig.histories["porch"].latest(), 0.2)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.MOTION, "porch", event_id=event_id))
    rig.wait(lambda: model.calls == 1)
    answers = Answers()
    handed(rig, "What is on the table?", answers, "image")
    rig.wait(lambda: bool(rig.of(Caption)), timeout=20)
    assert answers.names() == ["image"]
    assert answers.got[0][1] is not None and answers.got[0][1].text == "A parcel on a table."
    assert rig.of(Caption)[0].id == event_id
    assert rig.scheduler.counters.preempted == 1


def test_handed_images_take_turns_with_a_cameras_requests(rigs: Any) -> None:
    """Equal priority, two lanes: while images keep coming, questions about a camera are not kept waiting
    behind all of them (the lane served longest ago goes first)."""
    model = ScriptedCaptioner(["x"], tokens=5, token_s=0.02)
    rig = rigs(model)
    answers = Answers()
    order: list[str] = []
    lock = threading.Lock()

    def note(name: str) -> Callable[[Trigger, CaptionResult | None, TriggerError | None], None]:
        def record(_t: Trigger, _r: CaptionResult | None, _e: TriggerError | None) -> None:
            with lock:
                order.append(name)
        return record

    handed(rig, "first", answers, "img0")
    rig.wait(lambda: model.calls == 1)  # the model is busy: everything below waits together
    for i in range(1, 4):
        rig.scheduler.trigger(rig.scheduler.make_image_trigger(HandedImage(scene(i), "?", 12), 30, note(f"img{i}")))
    for i in range(2):
        rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.ASK, "porch", question=f"q{i}",
                                                         on_done=note(f"cam{i}")))
    rig.wait(lambda: len(order) == 5)
    assert order[:4] == ["cam0", "img1", "cam1", "img2"]


def test_a_caller_that_gives_up_costs_no_more_model_time(rigs: Any) -> None:
    """Withdrawn while queued: never run. Withdrawn while running: cancelled at its next token. Neither
    is answered; the next caller is served at once."""
    model = ScriptedCaptioner(["slow answer", "queued answer", "next answer"], tokens=200, token_s=0.01)
    rig = rigs(model)
    answers = Answers()
    running = handed(rig, "one", answers, "running")
    rig.wait(lambda: model.calls == 1)
    queued = handed(rig, "two", answers, "queued")
    rig.wait(lambda: rig.scheduler.stats()["images_pending"] == 1)
    rig.scheduler.withdraw(queued)
    started = time.monotonic()
    rig.scheduler.withdraw(running)
    model.tokens = 3
    handed(rig, "three", answers, "next")
    rig.wait(lambda: bool(answers.names()))
    assert time.monotonic() - started < 1.5  # not the 2 s the first job would have run
    assert answers.names() == ["next"]
    assert model.prompts == ["one", "three"]
    assert rig.scheduler.stats()["withdrawn"] == 2


def test_refusals_say_what_a_caller_should_do(rigs: Any) -> None:
    """Errors carry a kind an HTTP client can act on: no model is `unavailable` (503), a full inbox
    `busy` (429), a deadline that cannot be met `stale`."""
    rig = rigs(None)
    answers = Answers()
    handed(rig, "?", answers, "no model")
    rig.wait(lambda: bool(answers.names()))
    error = answers.got[0][2]
    assert error is not None and error.kind == "unavailable" and "edged models pull" in error
    rig.stop()

    config = parse_config("cameras:\n  porch: {url: porch.mp4}\n")
    idle = Scheduler(config, {"porch": FrameHistory(2)}, None, EventTracker(lambda _e: None, {}), lambda _e: None)
    full = Answers()  # its thread never runs: the inbox (1,000 triggers) fills up
    for i in range(1001):
        idle.trigger(idle.make_image_trigger(HandedImage(scene(0), "?"), 30, full.done(str(i))))
    idle.request_stop()
    idle.trigger(idle.make_image_trigger(HandedImage(scene(0), "?"), 30, full.done("after stop")))
    assert [(n, e.kind if e else None) for n, _r, e in full.got] == [("1000", "busy"), ("after stop", "unavailable")]

    model = ScriptedCaptioner(["x"], tokens=20, token_s=0.05)
    slow = rigs(model)
    late = Answers()
    handed(slow, "?", late, "late", deadline_s=0.3)
    slow.wait(lambda: bool(late.names()))
    assert late.got[0][2] is not None and late.got[0][2].kind == "stale"


def test_a_stream_of_images_cannot_keep_a_motion_caption_from_finishing(rigs: Any) -> None:
    """Two API requests always waiting (each answered one is replaced at once), and a motion caption:
    the motion caption is published while the stream goes on (images and the camera take turns, and an
    image does not preempt the caption on its turn), and images keep being answered meanwhile."""
    model = ScriptedCaptioner(["A van in the drive."], tokens=20, token_s=0.01)
    rig = rigs(model)
    answered = threading.Semaphore(0)
    stop = threading.Event()

    def again(_t: Trigger, _r: CaptionResult | None, _e: TriggerError | None) -> None:
        answered.release()
        if not stop.is_set():
            rig.scheduler.trigger(rig.scheduler.make_image_trigger(HandedImage(scene(3), "?", 20), 30, again))

    for _ in range(2):
        rig.scheduler.trigger(rig.scheduler.make_image_trigger(HandedImage(scene(3), "?", 20), 30, again))
    rig.wait(lambda: model.calls >= 3)
    event_id = rig.events.motion_started("porch", rig.histories["porch"].latest(), 0.2)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.MOTION, "porch", event_id=event_id))
    try:
        rig.wait(lambda: bool(rig.of(Caption)), timeout=20)
    finally:
        stop.set()
    assert rig.of(Caption)[0].id == event_id
    assert rig.scheduler.stats()["images"] >= 3
