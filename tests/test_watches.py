"""Watches: the debounce table, when a watch is due, the scheduling rules, the config's errors, and the
scheduler batching a caption and every due watch into one model pass.

The scheduler tests use a scripted Looker (`ScriptedLooker`): what they check is which questions reach
the model, on which frame, in how many passes, and what a given sequence of answers publishes, so the
probabilities must be chosen by the test. A random-weight model cannot be steered to say yes, then no;
the real model's answers are tested in test_glm_look.py and, through the real daemon, in
test_watches_live.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import ConfigError, parse_config
from edged.config.schema import WatchConfig
from edged.control.commands import CommandError
from edged.control.features import FeatureRegistry, FeatureStore
from edged.events import CameraEvent, Caption, TriggerKind, WatchAttributes, WatchSnapshot, WatchState
from edged.inference.protocol import Look, Looker, YesNo
from edged.memory.recorder import watch_change_moment
from edged.pipeline import Pipeline
from edged.scheduling.policy import (
    AGED_WATCH_PRIORITY,
    WATCH_AGE_S,
    admit,
    choose_next,
    dispatch_priority,
    should_preempt,
)
from edged.scheduling.triggers import Trigger
from edged.scheduling.watches import Debounce, Watch, confident_side, due
from tests.test_scheduler import Rig, ScriptedCaptioner

# -- the debounce ---------------------------------------------------------------------------------

Y, N, U = 0.9, 0.1, 0.55  # a confident yes, a confident no, an unsure answer (at min_confidence 0.7)


@pytest.mark.parametrize(("hold", "answers", "states"), [
    # the first decision takes `hold` confident answers in a row, like any change
    (1, [Y], [True]),
    (1, [N], [False]),
    (2, [Y, Y], [None, True]),
    (2, [N, N, Y, Y], [None, False, False, True]),
    # an answer against the run starts a new run; an unsure one breaks the run
    (2, [Y, N, Y, Y], [None, None, None, True]),
    (2, [Y, U, Y, Y], [None, None, None, True]),
    (3, [Y, Y, U, Y, Y, Y], [None, None, None, None, None, True]),
    # answers agreeing with the state do not count toward a change, and reset a run against it
    (2, [Y, Y, N, Y, N, N], [None, True, True, True, True, False]),
    # unsure answers never change anything
    (1, [U, U, U], [None, None, None]),
    (1, [Y, U, N], [True, True, False]),
])
def test_debounce_table(hold: int, answers: list[float], states: list[bool | None]) -> None:
    """`hold` confident answers in a row on the other side change the state; nothing else does."""
    d = Debounce()
    seen = []
    for p in answers:
        d = d.step(p, 0.7, hold)
        seen.append(d.state)
    assert seen == states


@pytest.mark.parametrize(("p_yes", "min_confidence", "side"), [
    (0.7, 0.7, True), (0.6999, 0.7, None), (0.3, 0.7, False), (0.3001, 0.7, None), (0.5, 0.51, None),
    (1.0, 0.99, True), (0.0, 0.99, False), (0.51, 0.51, True),
])
def test_confidence_is_per_side(p_yes: float, min_confidence: float, side: bool | None) -> None:
    """Yes counts at p_yes >= min_confidence, no at 1 - p_yes >= min_confidence."""
    assert confident_side(p_yes, min_confidence) is side


def watch(on: Sequence[str] = ("motion", "periodic"), interval: float | None = 60.0, **kw: Any) -> Watch:
    cfg = WatchConfig("package", "Is there a package?", on=tuple(TriggerKind(k) for k in on), interval=interval, **kw)
    return Watch.start(cfg, now=100.0)


def test_a_periodic_watch_is_due_at_start_and_every_interval_after_its_answer() -> None:
    """Due at once (its state is unknown), again one interval after each answer, with or without motion."""
    w = watch(on=("periodic",))
    w.tick(100.0)
    assert w.due_since == 100.0
    w.answered(0.9, now=101.0, wall=1.0)
    assert w.due_since is None
    w.tick(160.0)
    assert w.due_since is None  # 59 s after the answer
    w.tick(161.0)
    assert w.due_since == 161.0


def test_a_watch_is_due_on_the_triggers_it_lists_only() -> None:
    """Motion makes a motion watch due; a keyword does not; a switched-off watch is never due."""
    w = watch(on=("motion",), interval=None)
    w.triggered(TriggerKind.KEYWORD, 5.0)
    assert w.due_since is None
    w.triggered(TriggerKind.MOTION, 6.0)
    w.triggered(TriggerKind.MOTION, 7.0)
    assert w.due_since == 6.0  # the oldest reason counts (the wait is measured from it)
    w.set_enabled(False, 8.0)
    w.triggered(TriggerKind.MOTION, 9.0)
    w.tick(1e9)
    assert w.due_since is None and due([w]) == []
    w.set_enabled(True, 10.0)
    assert due([w]) == [w]  # switched on: asked right away
    assert due([w], busy=["package"]) == []


def test_an_edited_question_restarts_the_run_and_keeps_the_state() -> None:
    """Answers to the old question do not count toward a change under the new one."""
    w = watch(hold=2)
    for p in (0.9, 0.9, 0.1):
        w.answered(p, 1.0, 1.0)
    assert w.state is True and w.debounce.run == 1
    w.set_question("Is the gate open?", 2.0)
    assert (w.state, w.debounce.run, w.question, w.due_since) == (True, 0, "Is the gate open?", 2.0)
    assert w.answered(0.1, 3.0, 3.0) is False
    assert w.answered(0.1, 4.0, 4.0) is True and w.state is False and w.since == 4.0


def test_check_config_counts_watches_and_names_a_bad_one(tmp_path: Path) -> None:
    """`edged check-config`: a valid file says how many watches; a 10 kB question is one line naming it."""
    good = tmp_path / "good.yaml"
    good.write_text(f"cameras:\n  porch:\n    url: a.mp4\n    watches:\n      package: {{question: '{PACKAGE}'}}\n")
    ok = subprocess.run([sys.executable, "-m", "edged", "check-config", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "1 watches" in ok.stdout, ok
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace(PACKAGE, "x" * 10240))
    fail = subprocess.run([sys.executable, "-m", "edged", "check-config", str(bad)], capture_output=True, text=True)
    assert fail.returncode == 2
    assert fail.stderr.strip() == (f"{bad}:5 cameras.porch.watches.package.question: is 10240 characters; the limit "
                                   "is 255 (a Home Assistant text entity holds that many)")


# -- the question and switch at run time ------------------------------------------------------------

def test_a_question_set_at_run_time_is_checked_kept_and_restored(tmp_path: Path) -> None:
    """`question_<watch>/set` takes the config's rule (a clear error for an empty or 10 kB question),
    is saved, and comes back at the next start unless the config's question changed since."""
    def pipeline(question: str) -> tuple[FeatureRegistry, Pipeline]:
        cfg = parse_config(f"state_dir: {tmp_path}\ncameras:\n  porch:\n    url: a.mp4\n    watches:\n"
                           f"      package: {{question: '{question}', on: [motion]}}\n")
        registry = FeatureRegistry(FeatureStore(cfg.state_dir / "features.json"))
        pipe = Pipeline(cfg, lambda _e: None, lambda _c: None, registry)
        pipe._register_camera_features(cfg.cameras["porch"])
        return registry, pipe

    registry, pipe = pipeline(PACKAGE)
    for bad, why in (("x" * 10240, "must be 1 to 255 characters (got 10240)"),
                     ("Is it\tdark?", "holds control characters")):
        with pytest.raises(CommandError, match=re.escape(why)):
            registry.set("porch", "question_package", bad)
    state = registry.set("porch", "question_package", f"  {DOOR} ")
    assert state.to_payload() == DOOR
    assert pipe.scheduler.cameras["porch"].watches["package"].question == DOOR
    registry.set("porch", "watch_package", "OFF")
    registry, pipe = pipeline(PACKAGE)  # a restart with the same config
    assert registry.value("porch", "question_package") == DOOR
    watch = pipe.scheduler.cameras["porch"].watches["package"]
    assert (watch.question, watch.enabled) == (DOOR, False)
    registry, pipe = pipeline("Is the light on?")  # the config's question changed: it wins
    assert pipe.scheduler.cameras["porch"].watches["package"].question == "Is the light on?"


# -- the scheduling rules -------------------------------------------------------------------------

def trig(kind: str, camera: str = "a", ts: float = 0.0, deadline: float = 100.0) -> Trigger:
    return Trigger(TriggerKind(kind), camera, ts, deadline)


def test_a_caption_takes_a_pending_watch_triggers_place() -> None:
    """A motion or keyword caption carries the due watches: the watch trigger gives way to it."""
    w = trig("watch", ts=1)
    for kind in ("motion", "keyword", "request"):
        new = trig(kind, ts=2)
        assert admit([w], new) == ([new], [w])


def test_a_watch_trigger_is_not_added_beside_a_caption_that_carries_it() -> None:
    """A pending motion caption (or another watch trigger) will carry the watches: no second trigger."""
    for kind in ("motion", "keyword", "watch"):
        pending = [trig(kind, ts=1)]
        new = trig("watch", ts=2)
        assert admit(pending, new) == (pending, [new])


def test_a_periodic_caption_and_a_watch_trigger_wait_side_by_side() -> None:
    """Neither drops the other: the watch job takes the periodic caption along."""
    periodic, w = trig("periodic", ts=1), trig("watch", ts=2)
    assert admit([periodic], w) == ([periodic, w], [])
    assert admit([w], periodic) == ([w, periodic], [])


def test_a_watch_ranks_with_motion_then_ages_ahead_of_everything() -> None:
    """Below keyword and requests while fresh; after WATCH_AGE_S it goes first, but preempts nothing."""
    w = trig("watch", ts=0.0)
    assert dispatch_priority(w, 1.0) == TriggerKind.MOTION.priority
    assert dispatch_priority(w, WATCH_AGE_S) == AGED_WATCH_PRIORITY
    keyword = trig("keyword", camera="b", ts=0.5)
    assert choose_next({"a": [w], "b": [keyword]}, 1.0, 0.0, {}).run is keyword
    assert choose_next({"a": [w], "b": [keyword]}, WATCH_AGE_S + 1, 0.0, {}).run is w
    request = trig("request", camera="b", ts=0.5)
    assert choose_next({"a": [w], "b": [request]}, WATCH_AGE_S + 1, 0.0, {"a": 5.0, "b": 1.0}).run is request
    assert should_preempt(trig("periodic", camera="b"), [w]) is None


def test_motion_captions_and_watches_of_different_cameras_take_turns() -> None:
    """Equal rank: the camera served longest ago goes first, so neither starves the other."""
    w, motion = trig("watch", camera="a", ts=1.0), trig("motion", camera="b", ts=0.0)
    assert choose_next({"a": [w], "b": [motion]}, 2.0, 0.0, {"a": 1.0, "b": 0.5}).run is motion
    assert choose_next({"a": [w], "b": [motion]}, 2.0, 0.0, {"a": 0.5, "b": 1.0}).run is w


# -- the config ------------------------------------------------------------------------------------

def problems(watches: str, defaults: str = "") -> list[str]:
    text = f"{defaults}cameras:\n  porch:\n    url: a.mp4\n    watches:\n{watches}"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "edged.yaml")
    return [str(p) for p in err.value.problems]


@pytest.mark.parametrize(("watches", "expected"), [
    ('      package: {question: ""}\n',
     "edged.yaml:5 cameras.porch.watches.package.question: is required: a yes/no question"),
    ('      package: {on: [motion]}\n',
     "edged.yaml:5 cameras.porch.watches.package.question: is required"),
    (f'      package: {{question: "{"x" * 10240}"}}\n',
     "edged.yaml:5 cameras.porch.watches.package.question: is 10240 characters; the limit is 255"),
    ('      package: {question: "Is it <|user|> dark?"}\n',
     "edged.yaml:5 cameras.porch.watches.package.question: holds '<|'"),
    ('      package: {question: "a?", device_class: garage}\n',
     "edged.yaml:5 cameras.porch.watches.package.device_class: must be one of battery"),
    ('      package: {question: "Is it\\ndark?"}\n',
     "edged.yaml:5 cameras.porch.watches.package.question: holds control characters"),
    ('      package:\n        question: Is it dark?\n        on: [motion]\n        interval: 5m\n',
     "edged.yaml:8 cameras.porch.watches.package.interval: is only used with periodic in on"),
    ('      package: {question: "Is it dark?", min_confidence: 0.5}\n',
     "edged.yaml:5 cameras.porch.watches.package.min_confidence: must be > 0.5 (got 0.5)"),
    ('      package: {question: "Is it dark?", min_confidence: 1.2}\n',
     "edged.yaml:5 cameras.porch.watches.package.min_confidence: must be < 1 (got 1.2)"),
    ('      package: {question: "Is it dark?", hold: 0}\n',
     "edged.yaml:5 cameras.porch.watches.package.hold: must be >= 1 (got 0)"),
    ('      package: {question: "Is it dark?", on: [request]}\n',
     "edged.yaml:5 cameras.porch.watches.package.on: a watch is asked on motion, keyword, periodic (got request)"),
    ('      package: {question: "Is it dark?", on: []}\n',
     "edged.yaml:5 cameras.porch.watches.package.on: a watch needs at least one of motion, keyword, periodic"),
    ('      package: {question: "Is it dark?", interval: 1s}\n',
     "edged.yaml:5 cameras.porch.watches.package.interval: must be >= 5s (got '1s')"),
    ('      "door open": {question: "Is the door open?"}\n',
     "edged.yaml:5 cameras.porch.watches.door open: names may use only letters, digits, '_' and '-'"),
    ('      front-door: {question: "a?"}\n      front_door: {question: "b?"}\n',
     "edged.yaml:6 cameras.porch.watches.front_door: watch 'front_door' and 'front-door' differ only in '-' and "
     "'_': Home Assistant would see one entity"),
    ('      set: {question: "a?"}\n',
     "edged.yaml:5 cameras.porch.watches.set: the name 'set' is reserved"),
    ('      package: {question: "a?", hold: 2, holds: 3}\n',
     "edged.yaml:5 cameras.porch.watches.package.holds: unknown key; did you mean 'hold'?"),
])
def test_bad_watches_are_refused_with_their_line(watches: str, expected: str) -> None:
    """Each rule names file, line, key path and what is wrong."""
    found = problems(watches)
    assert any(p.startswith(expected) for p in found), found


def test_watches_under_defaults_are_checked_there_and_merge_per_camera() -> None:
    """A watch under defaults: applies to every camera, a camera overrides a field of it by name."""
    bad = "defaults:\n  watches:\n    dark: {question: 'Is it dark?', on: [keyword], interval: 5m}\n"
    assert any(p.startswith("edged.yaml:3 defaults.watches.dark.interval") for p in problems(
        "      package: {question: 'a?'}\n", bad))
    cfg = parse_config("defaults:\n  watches:\n    dark: {question: 'Is it dark?', on: [periodic], interval: 10m}\n"
                       "cameras:\n  porch: {url: a.mp4, watches: {dark: {hold: 3}}}\n  yard: {url: b.mp4}\n")
    porch, yard = cfg.cameras["porch"].watches["dark"], cfg.cameras["yard"].watches["dark"]
    assert (porch.question, porch.period, porch.hold) == ("Is it dark?", 600.0, 3)
    assert (yard.period, yard.hold, yard.min_confidence) == (600.0, 2, 0.7)
    assert WatchConfig("x", "q?").period == 300.0  # periodic by default, every 5 minutes


# -- the scheduler: one job per frame with the caption and every due watch ------------------------

@dataclass
class LookCall:
    image: np.ndarray
    prompts: tuple[str, ...]
    questions: tuple[str, ...]


@dataclass
class ScriptedLooker(ScriptedCaptioner):
    """The scripted captioner plus `look`: prompts are "generated" token by token like `caption` (and
    cut by cancel or deadline the same way), each question's P(yes) is the next of its script in
    `answers` (0.5 when none is left); questions are answered first, as the real backends do."""

    answers: dict[str, list[float]] = field(default_factory=dict)
    looks: list[LookCall] = field(default_factory=list)
    question_s: float = 0.0

    def __init__(self, texts: list[str], answers: dict[str, list[float]], tokens: int = 5,
                 token_s: float = 0.02, question_s: float = 0.0) -> None:
        super().__init__(texts, tokens, token_s)
        self.answers = {q: list(ps) for q, ps in answers.items()}
        self.looks = []
        self.question_s = question_s

    def look(self, image: np.ndarray, prompts: Sequence[str], questions: Sequence[str], *,
             max_new_tokens: int | None = None, deadline: float | None = None,
             cancel: threading.Event | None = None) -> Look:
        self.looks.append(LookCall(image, tuple(prompts), tuple(questions)))
        answers = []
        for q in questions:
            if cancel is not None and cancel.is_set():
                return Look((), tuple(answers), {"vision_passes": 1})
            time.sleep(self.question_s)
            script = self.answers.get(q, [])
            answers.append(YesNo(q, script.pop(0) if script else 0.5))
        texts = []
        for p in prompts:
            result = self.caption(image, p, max_new_tokens=max_new_tokens, deadline=deadline, cancel=cancel)
            texts.append(result)
            if result.finish_reason != "stop":
                break
        return Look(tuple(texts), tuple(answers), {"vision_passes": 1})


@pytest.fixture
def make_rig() -> Iterator[Callable[..., Rig]]:
    """Rigs (a real scheduler and worker over a scripted model), each stopped after the test."""
    made: list[Rig] = []

    def make(*args: Any, **kwargs: Any) -> Rig:
        made.append(Rig(*args, **kwargs))
        return made[-1]

    yield make
    for rig in made:
        rig.stop()


PACKAGE, DOOR = "Is there a package on the doormat?", "Is the door open?"
TWO_MOTION_WATCHES = (f", watches: {{package: {{question: '{PACKAGE}', on: [motion], hold: 2}}, "
                      f"door: {{question: '{DOOR}', on: [motion], hold: 1}}}}")


def motion(rig: Rig, camera: str = "porch") -> str:
    event_id = rig.events.motion_started(camera, rig.histories[camera].latest(), 0.2)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.MOTION, camera, ts=time.monotonic() - 0.1,
                                                     event_id=event_id))
    return event_id


def test_the_scripted_looker_is_a_looker() -> None:
    assert isinstance(ScriptedLooker([], {}), Looker)


def test_motion_batches_the_caption_and_every_due_watch_into_one_look(make_rig: Any) -> None:
    """One look per motion: the caption prompt and both watches' questions, on the frame the caption
    describes; `hold` answers change each watch's state."""
    model = ScriptedLooker(["A parcel lies on the mat."], {PACKAGE: [0.9, 0.95], DOOR: [0.2, 0.1]})
    rig = make_rig(model, extra=TWO_MOTION_WATCHES)
    motion(rig)
    rig.wait(lambda: len(rig.of(Caption)) == 1 and len(rig.of(WatchAttributes)) == 2)
    assert len(model.looks) == 1 and model.calls == 1
    call = model.looks[0]
    assert call.questions == (DOOR, PACKAGE)  # due together: by name
    assert len(call.prompts) == 1 and call.prompts[0].endswith("Describe what is happening in one sentence.")
    assert call.image is rig.histories["porch"].latest().image  # the frame the caption describes
    assert [(s.watch, s.on) for s in rig.of(WatchState)] == [("door", False)]  # hold 1; package needs 2
    motion(rig)
    rig.wait(lambda: len(rig.of(Caption)) == 2 and len(rig.of(WatchAttributes)) == 4)
    assert len(model.looks) == 2
    assert [(s.watch, s.on) for s in rig.of(WatchState)] == [("door", False), ("package", True)]
    attrs = rig.of(WatchAttributes)[-1]
    assert (attrs.watch, attrs.state, attrs.p_yes, attrs.question) == ("package", True, 0.95, PACKAGE)
    assert attrs.snapshot == "edged/" + rig.config.device.id + "/porch/watch/package/snapshot"
    snapshots = rig.of(WatchSnapshot)
    assert [s.watch for s in snapshots] == ["door", "package"] and snapshots[1].jpeg.startswith(b"\xff\xd8")


def test_a_watch_turning_on_opens_an_event_and_turning_off_ends_it(make_rig: Any) -> None:
    """OFF -> ON: `new` with trigger watch, the question as title and the deciding frame as snapshot;
    ON -> OFF: `end` on the same id."""
    rig = make_rig(ScriptedLooker(["x"], {DOOR: [0.9, 0.1]}), extra=f", watches: {{door: {{question: '{DOOR}', "
                                                             "on: [motion], hold: 1}}")
    motion(rig)
    rig.wait(lambda: any(e.watch == "door" for e in rig.of(CameraEvent)))
    new = next(e for e in rig.of(CameraEvent) if e.watch == "door")
    assert (new.type, new.trigger, new.title, new.has_snapshot) == ("new", TriggerKind.WATCH, DOOR, True)
    motion(rig)
    rig.wait(lambda: any(e.watch == "door" and e.type == "end" for e in rig.of(CameraEvent)))
    end = next(e for e in rig.of(CameraEvent) if e.watch == "door" and e.type == "end")
    assert end.id == new.id
    assert [s.on for s in rig.of(WatchState)] == [True, False]


def test_a_periodic_watch_is_asked_without_motion_and_without_a_caption(make_rig: Any) -> None:
    """No trigger at all: the periodic watch is asked on its own (a look with no prompt), every interval."""
    model = ScriptedLooker(["never"], {PACKAGE: [0.1, 0.1, 0.1]})
    rig = make_rig(model, extra=f", captions: {{on: [motion]}}, watches: {{package: {{question: '{PACKAGE}', "
                            "on: [periodic], interval: 5s, hold: 1}}")
    rig.wait(lambda: len(rig.of(WatchAttributes)) == 1)
    assert [(c.prompts, c.questions) for c in model.looks] == [((), (PACKAGE,))]
    assert model.calls == 0 and not rig.of(Caption)
    assert [s.on for s in rig.of(WatchState)] == [False]
    assert rig.scheduler.stats()["watches"] == {"answers": 1, "changes": 1, "jobs": 1}


def test_a_watch_job_takes_a_pending_periodic_caption_along(make_rig: Any) -> None:
    """A due watch and a pending periodic caption of one camera (both waiting while the model works for
    another camera): one look with both, the caption published as the periodic one."""
    model = ScriptedLooker(["A quiet porch."], {PACKAGE: [0.2]}, tokens=20, token_s=0.05)
    rig = make_rig(model, cameras="porch,yard",
               extra=f", watches: {{package: {{question: '{PACKAGE}', on: [motion], enabled: false}}}}")
    motion(rig, "yard")
    rig.wait(lambda: model.calls == 1)  # the yard's caption runs (its watch is off: no look)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.PERIODIC, "porch"))
    rig.scheduler.set_watch("porch", "package", enabled=True)  # due now
    rig.wait(lambda: len([c for c in rig.of(Caption) if c.camera == "porch"]) == 1)
    assert len(model.looks) == 1
    call = model.looks[0]
    assert call.questions == (PACKAGE,) and len(call.prompts) == 1
    assert call.image is rig.histories["porch"].latest().image
    caption = next(c for c in rig.of(Caption) if c.camera == "porch")
    assert caption.trigger is TriggerKind.PERIODIC
    assert rig.scheduler.stats()["watches"]["jobs"] == 0  # it rode along: no job of its own


def test_a_question_its_cameras_caption_and_due_watches_share_one_look(make_rig: Any) -> None:
    """An `ask`, a motion caption and a due watch of one camera, all waiting while the model works for
    another camera: one look on one frame, the question's prompt first; the asker gets its answer, the
    caption is published as the motion caption, the watch is answered."""
    model = ScriptedLooker(["The yard is empty.", "The door is closed.", "A man at the door."], {DOOR: [0.9]},
                           tokens=20, token_s=0.05)
    rig = make_rig(model, cameras="porch,yard",
                   extra=f", watches: {{door: {{question: '{DOOR}', on: [motion], hold: 1}}}}")
    rig.scheduler.set_watch("yard", "door", enabled=False)
    answers: list[tuple[str | None, str | None]] = []
    motion(rig, "yard")
    rig.wait(lambda: model.calls == 1)  # the yard's caption runs
    ask = rig.scheduler.make_trigger(TriggerKind.ASK, "porch", question="Is the door closed?",
                                     on_done=lambda _t, r, e: answers.append((r.text if r else None, e)))
    rig.scheduler.trigger(ask)
    event_id = motion(rig, "porch")
    rig.wait(lambda: bool(answers) and any(c.camera == "porch" for c in rig.of(Caption)) and bool(rig.of(WatchState)))
    porch = [c for c in model.looks if c.image is rig.histories["porch"].latest().image]
    assert len(porch) == 1, porch
    assert porch[0].questions == (DOOR,)
    assert porch[0].prompts[0].endswith("Is the door closed?") and len(porch[0].prompts) == 2
    assert answers == [("The door is closed.", None)]
    caption = next(c for c in rig.of(Caption) if c.camera == "porch")
    assert (caption.id, caption.trigger, caption.caption) == (event_id, TriggerKind.MOTION, "A man at the door.")
    assert [(s.camera, s.on) for s in rig.of(WatchState)] == [("porch", True)]


def test_a_watch_change_is_a_moment_of_the_history_and_an_answer_alone_is_not(make_rig: Any) -> None:
    """The scheduler hands each state change (not every answer) to the memory, which keeps it as a
    `watch` moment with the deciding frame."""
    model = ScriptedLooker(["x"], {DOOR: [0.9, 0.95, 0.1]})
    rig = make_rig(model, extra=f", watches: {{door: {{question: '{DOOR}', on: [motion], hold: 1}}}}")
    recorded: list[tuple[Any, Any]] = []
    rig.scheduler._record = lambda event, frame: recorded.append((event, frame))
    for n in (1, 2, 3):
        motion(rig)
        rig.wait(lambda n=n: len(rig.of(WatchAttributes)) == n)  # type: ignore[misc]
    changes = [e for e, _f in recorded if isinstance(e, WatchAttributes)]
    assert [(c.state, c.p_yes) for c in changes] == [(True, 0.9), (False, 0.1)]
    moments = [watch_change_moment(c) for c in changes]
    assert [(m.kind, m.title, m.text) for m in moments if m is not None] == [
        ("watch", "door: ON", f"{DOOR} yes (p_yes 0.90)"), ("watch", "door: OFF", f"{DOOR} no (p_yes 0.10)")]
    assert all(f is not None and f.camera == "porch" for _e, f in recorded)


class FailingLooker(ScriptedLooker):
    """A Looker whose look raises (a backend down, a question it refuses), counting its calls."""

    def look(self, image: np.ndarray, prompts: Sequence[str], questions: Sequence[str], *,
             max_new_tokens: int | None = None, deadline: float | None = None,
             cancel: threading.Event | None = None) -> Look:
        self.looks.append(LookCall(image, tuple(prompts), tuple(questions)))
        raise RuntimeError("the model server is down")


def test_a_look_that_fails_skips_the_round_instead_of_retrying_every_tick(make_rig: Any) -> None:
    """The model raises on a watch job: counted as failed, the watch waits for its next trigger (not
    asked again on every 50 ms tick), and the next motion asks it again."""
    model = FailingLooker(["x"], {})
    rig = make_rig(model, extra=f", captions: {{on: [keyword]}}, watches: {{door: {{question: '{DOOR}', "
                                "on: [motion]}}")
    motion(rig)
    rig.wait(lambda: rig.scheduler.stats()["failed"] == 1)
    time.sleep(0.5)  # ten ticks
    assert len(model.looks) == 1 and not rig.of(WatchAttributes)
    motion(rig)
    rig.wait(lambda: rig.scheduler.stats()["failed"] == 2)
    assert len(model.looks) == 2


def test_watches_are_asked_when_captions_are_off(make_rig: Any) -> None:
    """Motion with captions switched off: no caption, but the motion watch is asked."""
    model = ScriptedLooker(["never"], {DOOR: [0.9]})
    rig = make_rig(model, extra=f", watches: {{door: {{question: '{DOOR}', on: [motion], hold: 1}}}}")
    rig.scheduler.set_captions("porch", False)
    motion(rig)
    rig.wait(lambda: bool(rig.of(WatchState)))
    assert model.calls == 0 and [c.prompts for c in model.looks] == [()]


def test_an_edited_question_is_asked_at_once_and_old_answers_do_not_count(make_rig: Any) -> None:
    """`set_watch(question=...)` (what `/set` calls): asked right away with the new text."""
    model = ScriptedLooker(["x"], {PACKAGE: [0.9], DOOR: [0.9]})
    rig = make_rig(model, extra=f", watches: {{w: {{question: '{PACKAGE}', on: [motion], hold: 1}}}}")
    motion(rig)
    rig.wait(lambda: len(rig.of(WatchAttributes)) == 1)
    rig.scheduler.set_watch("porch", "w", question=DOOR)
    rig.wait(lambda: len(rig.of(WatchAttributes)) == 2)
    assert model.looks[-1].questions == (DOOR,) and model.looks[-1].prompts == ()
    assert rig.of(WatchAttributes)[-1].question == DOOR
    rig.scheduler.set_watch("porch", "w", enabled=False)
    motion(rig)
    rig.wait(lambda: len(rig.of(Caption)) == 2)
    assert len(model.looks) == 2 and model.calls == 2  # switched off: the caption ran without a look


def test_a_keyword_preempts_a_watch_job_and_carries_its_watches(make_rig: Any) -> None:
    """A keyword caption cancels a running watch-only job between questions; its own job asks the
    watches that went unanswered."""
    model = ScriptedLooker(["Someone waves."], {PACKAGE: [0.9], DOOR: [0.9]}, question_s=1.0)
    rig = make_rig(model, extra=f", captions: {{on: [keyword, motion]}}, watches: {{package: {{question: '{PACKAGE}', "
                            f"on: [periodic], hold: 1}}, door: {{question: '{DOOR}', on: [periodic], hold: 1}}}}")
    rig.wait(lambda: len(model.looks) == 1)
    time.sleep(0.2)  # inside the first question (1 s long)
    rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.KEYWORD, "porch"))
    rig.wait(lambda: bool(rig.of(Caption)))
    assert rig.of(Caption)[0].trigger is TriggerKind.KEYWORD
    assert rig.scheduler.stats()["preemptions"] == 1
    # the first job answered the question it was on when cancelled; the keyword's job asked the rest
    assert model.looks[0].questions == (DOOR, PACKAGE)
    assert model.looks[1].questions == (PACKAGE,) and len(model.looks[1].prompts) == 1
    assert sorted(s.watch for s in rig.of(WatchState)) == ["door", "package"]


def test_a_keyword_burst_on_another_camera_does_not_starve_a_watch(make_rig: Any, monkeypatch: Any) -> None:
    """Keyword captions keep coming for the yard; the porch's watch still gets its turn once it has
    waited WATCH_AGE_S (shortened here to keep the test short)."""
    monkeypatch.setattr("edged.scheduling.policy.WATCH_AGE_S", 0.5)
    model = ScriptedLooker(["Someone talks."], {DOOR: [0.9]}, tokens=5, token_s=0.02)
    rig = make_rig(model, cameras="porch,yard",
               extra=f", watches: {{door: {{question: '{DOOR}', on: [keyword], hold: 1}}}}")
    stop = threading.Event()

    def burst() -> None:  # always a keyword waiting for the yard
        while not stop.is_set():
            rig.scheduler.trigger(rig.scheduler.make_trigger(TriggerKind.KEYWORD, "yard"))
            time.sleep(0.01)

    thread = threading.Thread(target=burst, daemon=True)
    thread.start()
    try:
        rig.wait(lambda: len(rig.of(Caption)) >= 2)
        with rig.scheduler._lock:  # a due porch watch (made due as a keyword would, with its captions off)
            rig.scheduler.cameras["porch"].watches["door"].due_since = time.monotonic()
        rig.wait(lambda: any(a.camera == "porch" for a in rig.of(WatchAttributes)), timeout=10)
    finally:
        stop.set()
        thread.join(2)
    porch_looks = [c for c in model.looks if c.image is rig.histories["porch"].latest().image]
    assert porch_looks and porch_looks[0].prompts == ()  # a watch job of its own, between yard captions


def test_no_frame_from_before_privacy_answers_a_watch(make_rig: Any) -> None:
    """A watch job finishing after privacy went on publishes nothing about its frame."""
    model = ScriptedLooker(["x"], {DOOR: [0.9]}, question_s=0.5)
    rig = make_rig(model, extra=f", watches: {{door: {{question: '{DOOR}', on: [motion], hold: 1}}}}")
    motion(rig)
    rig.wait(lambda: len(model.looks) == 1)
    rig.scheduler.set_privacy("porch", True)
    rig.wait(lambda: not rig.scheduler.stats()["running"] and not rig.worker.busy)  # type: ignore[union-attr]
    time.sleep(0.2)  # the scheduler takes the finished job on its next tick
    assert model.looks[0].questions == (DOOR,)  # it was asked ...
    assert not rig.of(WatchState) and not rig.of(WatchAttributes)  # ... and nothing about that frame went out


def test_a_captioner_without_look_asks_no_watches(make_rig: Any) -> None:
    """A backend that cannot answer yes/no (no `look`) still captions; watches are never asked."""
    rig = make_rig(ScriptedCaptioner(["A porch."]), extra=f", watches: {{door: {{question: '{DOOR}', on: [motion]}}}}")
    motion(rig)
    rig.wait(lambda: bool(rig.of(Caption)))
    time.sleep(0.2)
    assert not rig.of(WatchAttributes)

