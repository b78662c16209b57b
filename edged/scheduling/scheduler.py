"""`Scheduler`: spends the scarce model time on the frames that matter.

Triggers (motion, keyword, caption_now/ask requests, the adaptive periodic timer, images handed in
through the HTTP API) arrive from other threads; the scheduler thread admits them (latest wins per
camera), drops the ones that would miss their deadline, picks the next job (priority, then fairness
across cameras), chooses the frame, skips unchanged scenes, preempts a lower-priority caption
between tokens, and publishes captions as state and as `update`s of their events. Decisions are the
pure functions of `policy`; this class is the thread, the queues and the bookkeeping around them.

Other threads read the bookkeeping (stats for the stats topic and the `health` request) and change it
(privacy cancels a camera's work): the pending triggers, the running job and the counters are only
touched under `_lock`, held for a few statements and never while publishing or waiting. Privacy ON
(`set_privacy`) closes the camera's gate, refuses and cancels its work, and whatever still finishes is
checked at the gate again, while holding it, right before it would be published.

An image handed in (the HTTP API, `make_image_trigger`) is not a camera frame: it queues in its own lane
(IMAGE_LANE) beside the cameras, at `request` priority, and takes its turn by the same rules (priority,
then the lane served longest ago), with one more: after an image, waiting camera work goes next (and
is not preempted by images), so a stream of API requests gets at most every other turn while cameras
wait. It has no camera state, privacy gate or event, and its answer goes to its caller only. A caller
that gives up is `withdraw`n: dropped from the queue, or its job cancelled between tokens.

One image, many questions: a job for a camera takes along everything else pending for that camera
(with a model that can `look`): its questions (`ask`s, answered first: someone waits for them), its
caption, and its due watches (a camera's standing yes/no questions, `edged.scheduling.watches`, due on
motion, a keyword or their interval), all on one frame and one image encode. The job runs at the rank
of the trigger that was chosen (the highest pending), and each text is then handled as its own job's
would be (published, answered, back in line when preempted, stale). When nothing pending carries due
watches, a `watch` trigger fetches them; see `policy` for its rank. Each answer goes through the
watch's debounce; a change is published as the watch's state, snapshot and attributes, and opens (ON)
or ends (OFF) an event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edged.analysis.history import AnalysedFrame, FrameHistory, encode_jpeg
from edged.config.schema import CameraConfig, Config
from edged.events import Caption, CaptionUnchanged, Event, TriggerKind, WatchAttributes, WatchSnapshot, WatchState
from edged.inference.protocol import CaptionResult, FinishReason, YesNo
from edged.inference.worker import InferenceWorker, Job
from edged.logs import get_logger
from edged.metrics import Percentiles
from edged.queues import BoundedQueue, DropPolicy, QueueClosed
from edged.scheduling.captions import Rule, label_table, labels_of, matching_rules, similarity, title_of
from edged.scheduling.frame_choice import choose_frame
from edged.scheduling.lifecycle import EventTracker
from edged.scheduling.policy import AdaptiveInterval, admit, choose_next, should_preempt
from edged.scheduling.summaries import STRUCTURED_PROMPT, parse_summary
from edged.scheduling.triggers import IMAGE_LANE, Done, HandedImage, Trigger, TriggerError
from edged.scheduling.watches import Watch, due

TICK = 0.05
SceneDistance = Callable[[AnalysedFrame, AnalysedFrame], float]
Record = Callable[[Event, AnalysedFrame], None]  # the memory: a caption or answer with its frame (never blocks)


@dataclass
class CameraState:
    """What the scheduler remembers about one camera."""

    config: CameraConfig
    history: FrameHistory
    interval: AdaptiveInterval
    next_periodic: float
    captions_on: bool = True
    active_since_caption: bool = False
    last_text: str = ""
    last_id: str | None = None
    last_frame: AnalysedFrame | None = None
    unchanged_since: float | None = None
    watches: dict[str, Watch] = field(default_factory=dict)

    def forget(self) -> None:
        """Privacy ON: nothing seen before may shape what is published after (no scene or text heartbeat
        against a frame or caption from before)."""
        self.last_frame, self.last_text, self.last_id, self.unchanged_since = None, "", None, None
        self.active_since_caption = False


@dataclass
class Running:
    trigger: Trigger
    job: Job
    frame: AnalysedFrame | None  # None for a handed-in image
    started: float
    cameras_turn: bool = False  # a camera's job started on its turn after an image: images do not preempt it
    # Whose text the job writes, one per prompt in the job's order: the camera's questions (asks) first,
    # then its caption; `trigger` itself unless it is a watch trigger. Empty: it only asks watches.
    texts_for: tuple[Trigger, ...] = ()
    watches: tuple[tuple[str, str], ...] = ()  # (name, question) of each watch asked, in the job's order

    @property
    def watch_names(self) -> tuple[str, ...]:
        return tuple(name for name, _question in self.watches)


@dataclass
class Counters:
    captions: int = 0
    stale: int = 0
    coalesced: int = 0
    preempted: int = 0
    unchanged_scene: int = 0
    unchanged_text: int = 0
    failed: int = 0
    no_frame: int = 0
    privacy_cancelled: int = 0
    images: int = 0  # handed-in images answered
    withdrawn: int = 0  # callers that gave up
    watch_answers: int = 0
    watch_changes: int = 0
    watch_jobs: int = 0  # jobs that only asked watches (no caption to carry them)
    by_trigger: dict[str, int] = field(default_factory=dict)


class Scheduler:
    """The scheduling thread and its state (see module doc)."""

    def __init__(self, config: Config, histories: Mapping[str, FrameHistory], worker: InferenceWorker | None,
                 events: EventTracker, publish: Callable[[Event], None],
                 scene_distance: SceneDistance | None = None, clock: Callable[[], float] = time.monotonic,
                 record: Record | None = None) -> None:
        self.config = config
        self._record = record
        self.worker = worker
        self.events = events
        self._publish = publish
        self._scene_distance = scene_distance
        self._clock = clock
        self.log = get_logger(component="scheduler")
        now = clock()
        self.cameras = {cid: self._camera_state(config.cameras[cid], h, now) for cid, h in histories.items()}
        # Triggers, and None: a wake-up (a job finished), so its answer goes out now and not at the next tick.
        self._inbox: BoundedQueue[Trigger | None] = BoundedQueue("triggers", 1000, DropPolicy.DROP_NEWEST)
        self._lock = threading.Lock()  # guards what other threads read or change: see the module doc
        self._pending: dict[str, list[Trigger]] = {cid: [] for cid in self.cameras}
        self._pending[IMAGE_LANE] = []
        self._last_served: dict[str, float] = {}
        self._after_image = False  # the last job started was a handed-in image: cameras' turn next
        self._running: Running | None = None
        self._expected_s = 0.0  # moving average of caption time: what "would miss its deadline" is judged by
        self.counters = Counters()
        self.latency_ms: dict[str, Percentiles] = {}  # per trigger kind: trigger -> caption
        self.camera_latency_ms = {cid: Percentiles() for cid in self.cameras}
        self._labels = label_table(config.labels)
        self._rules = [Rule(r.name, r.cameras, r.labels, r.pattern, r.on) for r in config.rules]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    @staticmethod
    def _camera_state(cam: CameraConfig, history: FrameHistory, now: float) -> CameraState:
        interval = AdaptiveInterval.start(cam.captions.interval.min, cam.captions.interval.max)
        watches = {name: Watch.start(w, now) for name, w in cam.watches.items()}
        return CameraState(cam, history, interval, now + interval.current, captions_on=cam.captions.enabled,
                           watches=watches)

    # -- owner API ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self.worker is not None and not self.worker.can_look and any(s.watches for s in self.cameras.values()):
            self.log.warning("watches_unsupported", model=self.worker.name,
                             reason="the model backend cannot answer yes/no questions: watches are not asked")
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> bool:
        """`request_stop()` then `join(timeout)`."""
        self.request_stop()
        return self.join(timeout)

    def request_stop(self) -> None:
        """Ask the thread to end and cancel the running caption (the model stops at its next token); no wait."""
        self._stop.set()
        self._inbox.close()
        with self._lock:
            running = self._running
        if running is not None:
            running.job.cancel.set()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the thread; answer whoever still waits. True when the thread ended."""
        self._thread.join(timeout)
        with self._lock:
            waiting = [t for triggers in self._pending.values() for t in triggers]
            for triggers in self._pending.values():
                triggers.clear()
            running = self._running
        if running is not None:  # a job the thread left when it stopped: its callers still get an answer
            waiting.extend(running.texts_for)
        for t in waiting:
            t.finish(None, TriggerError("edged is stopping", "unavailable"))
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def expected_caption_s(self) -> float:
        """The moving average of how long a caption takes (0 before the first)."""
        with self._lock:
            return self._expected_s

    @property
    def model_name(self) -> str | None:
        return None if self.worker is None else self.worker.name

    def trigger(self, trigger: Trigger) -> None:
        """Hand in a trigger (any thread). A full inbox answers a waiting caller `busy`, a stopped one
        `unavailable`."""
        state = self.cameras.get(trigger.camera)
        if state is not None and trigger.kind in (TriggerKind.MOTION, TriggerKind.KEYWORD):
            self._watches_triggered(state, trigger.kind)  # when it happened (not again when a preempted one returns)
        try:
            accepted = self._inbox.put(trigger)
        except QueueClosed:
            trigger.finish(None, TriggerError("edged is stopping", "unavailable"))
            return
        if not accepted:
            with self._lock:
                self.counters.coalesced += 1
            trigger.finish(None, TriggerError("the scheduler is overloaded; try again", "busy"))

    def make_trigger(self, kind: TriggerKind, camera: str, *, ts: float | None = None, event_id: str | None = None,
                     question: str = "", keyword: str | None = None, transaction: object = None,
                     on_done: Done | None = None) -> Trigger:
        """A trigger of `kind` for `camera`, stamped now (or at `ts`), with the camera's deadline for its kind."""
        now = self._clock()
        deadline = now + self.cameras[camera].config.captions.deadlines.seconds(kind)
        return Trigger(kind, camera, now if ts is None else ts, deadline, event_id, question, keyword, transaction,
                       on_done)

    def make_image_trigger(self, image: HandedImage, deadline_s: float, on_done: Done) -> Trigger:
        """A `request`-priority trigger for an image handed in, due `deadline_s` from now."""
        now = self._clock()
        return Trigger(TriggerKind.REQUEST, IMAGE_LANE, now, now + deadline_s, on_done=on_done, image=image)

    def withdraw(self, trigger: Trigger) -> None:
        """The caller gave up (any thread): no answer is sent, a queued trigger is dropped and a running job
        is cancelled at its next token, so the model's time goes to whoever still waits."""
        trigger.withdraw()
        with self._lock:
            queued = trigger in self._pending.get(trigger.camera, [])
            self._remove(trigger)
            running = self._running if self._running is not None and self._running.trigger is trigger else None
            if queued or running is not None:
                self.counters.withdrawn += 1
        if running is not None:
            running.job.cancel.set()

    def note_activity(self, camera: str) -> None:
        """The analyser saw motion: the periodic interval should speed up after the next caption."""
        state = self.cameras.get(camera)
        if state is not None:
            state.active_since_caption = True

    def set_captions(self, camera: str, on: bool) -> None:
        self.cameras[camera].captions_on = on

    def set_watch(self, camera: str, name: str, *, enabled: bool | None = None, question: str | None = None) -> None:
        """A watch's switch or edited question (any thread); either way it is asked again right away."""
        now = self._clock()
        with self._lock:
            watch = self.cameras[camera].watches[name]
            if enabled is not None:
                watch.set_enabled(enabled, now)
            if question is not None and question != watch.question:
                watch.set_question(question, now)

    def watch_states(self, camera: str) -> dict[str, bool | None]:
        """Each watch's decided state (None: not decided yet)."""
        state = self.cameras.get(camera)
        with self._lock:
            return {} if state is None else {name: w.state for name, w in state.watches.items()}

    def set_privacy(self, camera: str, on: bool) -> None:
        """Privacy ON (any thread): close the camera's gate (nothing it captured before is published from now
        on), cancel its running caption between tokens and answer its queued ones with an error; new ones
        are refused. OFF: captions resume on what the camera captures next."""
        if not on:
            self.events.gate.open(camera)
            return
        self.events.gate.close(camera)
        with self._lock:
            cancelled = self._pending.get(camera, [])
            if camera in self._pending:
                self._pending[camera] = []
            running = self._running
            state = self.cameras.get(camera)
            if state is not None:
                state.forget()
        if running is not None and running.trigger.camera == camera:
            running.job.cancel.set()  # the scheduler thread answers it when the model has stopped
        for trigger in cancelled:
            self._cancel_for_privacy(trigger)

    # -- the loop -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # keep scheduling whatever one job did
                self.log.exception("scheduler_error", error=str(exc))
                self._stop.wait(0.5)

    def _step(self) -> None:
        try:
            first = self._inbox.get(timeout=TICK)
        except QueueClosed:
            return
        for trigger in [first, *self._inbox.drain()]:
            if trigger is not None:
                self._admit(trigger)
        now = self._clock()
        self._periodic(now)
        if self._running is not None:
            self._check_running(now)
        if self._running is None:
            self._dispatch(now)

    def _wake(self, _done: object) -> None:
        """A job finished (the worker's thread): the loop takes it now instead of at its next tick."""
        with contextlib.suppress(QueueClosed):
            self._inbox.put(None)

    def _admit(self, trigger: Trigger) -> None:
        if trigger.withdrawn:
            return
        if trigger.image is not None:
            self._admit_image(trigger)
            return
        state = self.cameras.get(trigger.camera)
        if state is None:
            trigger.finish(None, f"unknown camera {trigger.camera!r}")
            return
        if self.worker is None:
            self._no_model(trigger)
            return
        if trigger.kind is not TriggerKind.WATCH and trigger.kind.admitted_by not in state.config.captions.on:
            trigger.finish(None, f"camera {trigger.camera!r} takes no {trigger.kind.admitted_by} captions "
                                 f"(captions.on: {', '.join(state.config.captions.on) or 'none'})")
            self._close_event(trigger)
            return
        if not state.captions_on and not trigger.answers and trigger.kind is not TriggerKind.WATCH:
            self._close_event(trigger)
            return
        with self._lock:
            private = self.events.gate.is_closed(trigger.camera)  # checked with the lock set_privacy takes
            if not private:
                pending, displaced = admit(self._pending[trigger.camera], trigger)
                self._pending[trigger.camera] = pending
                self.counters.coalesced += len(displaced)
        if private:
            self._cancel_for_privacy(trigger)
            return
        for old in displaced:
            self._close_event(old)
            old.finish(None, "superseded by a newer request for the same camera")

    def _admit_image(self, trigger: Trigger) -> None:
        if self.worker is None:
            self._no_model(trigger)
            return
        with self._lock:
            self._pending[IMAGE_LANE], _ = admit(self._pending[IMAGE_LANE], trigger)

    def _no_model(self, trigger: Trigger) -> None:
        self._close_event(trigger)
        trigger.finish(None, TriggerError("no caption model is loaded (get one with: edged models pull glm-edge-v-2b)",
                                          "unavailable"))

    def _periodic(self, now: float) -> None:
        if self.worker is None:
            return
        for cid, state in self.cameras.items():
            periodic = state.captions_on and TriggerKind.PERIODIC in state.config.captions.on
            if not periodic or now < state.next_periodic:
                continue
            if self.events.gate.is_closed(cid):
                continue
            state.next_periodic = now + state.interval.current
            self._admit(self.make_trigger(TriggerKind.PERIODIC, cid))
        for cid, state in self.cameras.items():
            if state.watches:
                self._fetch_watches(cid, state, now)

    # -- watches --------------------------------------------------------------------------------------
    def _watches_triggered(self, state: CameraState, kind: TriggerKind) -> None:
        now = self._clock()
        with self._lock:
            for watch in state.watches.values():
                watch.triggered(kind, now)

    def _fetch_watches(self, cid: str, state: CameraState, now: float) -> None:
        """Due watches with no pending caption of their camera to carry them: a watch trigger fetches them."""
        assert self.worker is not None
        if not self.worker.can_look or self.events.gate.is_closed(cid) or state.history.latest() is None:
            return  # (no frame yet: a camera still connecting would be tried on every tick)
        with self._lock:
            for watch in state.watches.values():
                watch.tick(now)
            running = self._running
            busy = running.watch_names if running is not None and running.trigger.camera == cid else ()
            ready = due(state.watches.values(), busy)
            covered = any(t.kind is TriggerKind.WATCH or (t.kind is not TriggerKind.ASK and t.priority >=
                                                          TriggerKind.WATCH.priority) for t in self._pending[cid])
        if ready and not covered:
            self._admit(self.make_trigger(TriggerKind.WATCH, cid, ts=min(w.due_since or now for w in ready)))

    def _take_due_watches(self, camera: str) -> tuple[tuple[str, str], ...]:
        """The camera's due watches for the job starting now; a pending watch trigger is no longer needed."""
        state = self.cameras[camera]
        with self._lock:
            for t in [t for t in self._pending[camera] if t.kind is TriggerKind.WATCH]:
                self._pending[camera].remove(t)
            if self.worker is None or not self.worker.can_look:
                return ()
            return tuple((w.name, w.question) for w in due(state.watches.values()))

    def _take_riders(self, camera: str) -> list[Trigger]:
        """Everything else pending for `camera` (its questions and caption; not a watch trigger, whose
        watches the job takes anyway), taken out to ride along on the same frame. Only a model that can
        `look` runs several prompts on one image encode; otherwise each waits for its own job."""
        if self.worker is None or not self.worker.can_look:
            return []
        with self._lock:
            riders = [t for t in self._pending[camera] if t.kind is not TriggerKind.WATCH and not t.withdrawn]
            for t in riders:
                self._pending[camera].remove(t)
        return riders

    def _watches_failed(self, running: Running) -> None:
        """The model raised: the job's watches skip this round (not retried on every tick while it fails)."""
        now = self._clock()
        with self._lock:
            for name in running.watch_names:
                watch = self.cameras[running.trigger.camera].watches.get(name)
                if watch is not None:
                    watch.skipped(now)

    def _answer_watches(self, running: Running, model: str) -> None:
        """Every answer the job got, whatever became of its caption, goes through its watch's debounce."""
        answers = running.job.answers
        frame = running.frame
        if not answers or frame is None:
            return
        camera = running.trigger.camera
        with self.events.gate.passing(camera, frame.ts) as allowed:
            if not allowed:  # captured before privacy went on: nothing about it is published
                return
            for (name, question), answer in zip(running.watches, answers, strict=False):
                self._watch_answered(camera, name, question, answer, frame, model)

    def _watch_answered(self, camera: str, name: str, question: str, answer: YesNo, frame: AnalysedFrame,
                        model: str) -> None:
        state = self.cameras[camera]
        with self._lock:
            watch = state.watches.get(name)
            if watch is None or watch.question != question:  # edited meanwhile: an answer to the old question
                return
            changed = watch.answered(answer.p_yes, self._clock(), time.time())
            self.counters.watch_answers += 1
            self.counters.watch_changes += int(changed)
            decided, since, run = watch.state, watch.since, watch.debounce.run
        snapshot = WatchSnapshot(camera, name, b"").topic(self.config.base_topic)
        self.log.debug("watch_answered", camera=camera, watch=name, p_yes=round(answer.p_yes, 4), changed=changed)
        if changed:
            self._watch_changed(state, watch, frame, answer, bool(decided), question)
        attributes = WatchAttributes(camera, name, decided, question, answer.p_yes, frame.wall_ts, since, model,
                                     run, snapshot if since is not None else "")
        self._publish(attributes)
        if changed:
            self._remember(attributes, frame)  # a change is a moment of the board's memory; an answer alone is not

    def _watch_changed(self, state: CameraState, watch: Watch, frame: AnalysedFrame, answer: YesNo, on: bool,
                       question: str) -> None:
        """A new decided state: the deciding frame, the state, and an event open while it is ON."""
        camera, cfg = state.config.id, state.config.snapshot
        self.log.info("watch_changed", camera=camera, watch=watch.name, state="ON" if on else "OFF",
                      p_yes=round(answer.p_yes, 4))
        self._publish(WatchSnapshot(camera, watch.name, encode_jpeg(frame.image, cfg.height, cfg.quality)))
        self._publish(WatchState(camera, watch.name, on))
        if on and watch.event_id is None:
            event_id = self.events.open(camera, TriggerKind.WATCH, frame, frame.ts, watch=watch.name,
                                        title=question)
            with self._lock:
                watch.event_id = event_id
        elif not on and watch.event_id is not None:
            with self._lock:
                event_id, watch.event_id = watch.event_id, None
            self.events.close(event_id)

    # -- running job --------------------------------------------------------------------------------
    def _check_running(self, now: float) -> None:
        running = self._running
        assert running is not None
        if running.job.future.done():
            with self._lock:
                self._running = None
            self._finished(running, now)
            return
        with self._lock:
            waiting = [t for ts in self._pending.values() for t in ts]
        ranked = max([running.trigger, *running.texts_for], key=lambda t: t.priority)  # a job's highest rider
        better = should_preempt(ranked, waiting, running.cameras_turn)
        if better is not None and not running.job.cancel.is_set():
            self.log.info("caption_preempted", camera=running.trigger.camera, running=ranked.kind,
                          by=better.kind, by_camera=better.camera)
            running.job.cancel.set()

    def _finished(self, running: Running, now: float) -> None:
        try:
            result = running.job.future.result()
        except Exception as exc:
            self._watches_failed(running)
            with self._lock:
                self.counters.failed += 1
            for trigger in running.texts_for:
                self._close_event(trigger)
                trigger.finish(None, TriggerError(f"the model failed: {exc}", "failed"))
            return
        self._answer_watches(running, result.model)
        texts = running.job.texts
        cut: FinishReason = "cancelled" if running.job.cancel.is_set() else "deadline"  # what an absent text missed
        outcomes = [texts[i] if i < len(texts) else CaptionResult("", (), result.model, cut)
                    for i in range(len(running.texts_for))]
        preempted = self._was_preempted(running, [*outcomes, result])
        with self._lock:
            self.counters.preempted += int(preempted)
            if running.texts_for and outcomes[0].finish_reason != "cancelled":
                took = now - running.started
                self._expected_s = 0.7 * self._expected_s + 0.3 * took if self._expected_s else took
        for trigger, text in zip(running.texts_for, outcomes, strict=True):
            self._finished_text(trigger, running.frame, text, now)

    def _was_preempted(self, running: Running, outcomes: list[CaptionResult]) -> bool:
        """Cancelled neither for privacy nor for stopping: something of higher rank took the model."""
        if not any(t.finish_reason == "cancelled" for t in outcomes) or self._stop.is_set():
            return False
        if running.texts_for and all(t.withdrawn for t in running.texts_for):
            return False  # its callers gave up
        return running.frame is None or self.events.gate.allows(running.trigger.camera, running.frame.ts)

    def _finished_text(self, trigger: Trigger, frame: AnalysedFrame | None, text: CaptionResult, now: float) -> None:
        """One text of a finished job: published or answered, back in line when cut short, or stale."""
        if text.finish_reason == "cancelled":
            self._cancelled(trigger, frame, now)
        elif text.finish_reason == "deadline":
            self._stale(trigger, "the caption did not finish before its deadline")
        elif frame is None:
            self._answer_image(trigger, text)
        else:
            self._publish_caption(trigger, frame, text)

    def _cancelled(self, trigger: Trigger, frame: AnalysedFrame | None, now: float) -> None:
        """A cancelled job's trigger: privacy, stopping, or preempted (then back in line while it can still
        make it)."""
        if trigger.withdrawn:
            return
        if frame is not None and not self.events.gate.allows(trigger.camera, frame.ts):
            self._cancel_for_privacy(trigger)
            return
        if self._stop.is_set():
            trigger.finish(None, TriggerError("edged is stopping", "unavailable"))
            return
        if now < trigger.deadline:
            self._admit(trigger)  # back in line, unless something newer took its place
        else:
            self._stale(trigger, "it was preempted and then missed its deadline")

    # -- dispatch -----------------------------------------------------------------------------------
    def _dispatch(self, now: float) -> None:
        while True:
            with self._lock:
                decision = choose_next(self._pending, now, self._expected_s, self._last_served, self._after_image)
                for t in [*decision.stale, *([decision.run] if decision.run is not None else [])]:
                    self._remove(t)
            for t in decision.stale:
                self._stale(t, "it would miss its deadline")
            trigger = decision.run
            if trigger is None:
                return
            try:
                if self._start(trigger, now):
                    return
            except Exception as exc:  # whoever waits on it gets an answer, and the next trigger its turn
                self.log.exception("caption_start_failed", camera=trigger.camera, trigger=trigger.kind,
                                   error=str(exc))
                with self._lock:
                    self.counters.failed += 1
                self._close_event(trigger)
                trigger.finish(None, TriggerError(f"the caption could not start: {exc}", "failed"))

    def _start(self, trigger: Trigger, now: float) -> bool:
        """Start the job for `trigger`; False when it needed no model run (no frame, unchanged scene)."""
        assert self.worker is not None
        if trigger.image is not None:
            return self._start_image(trigger, trigger.image, now)
        state = self.cameras[trigger.camera]
        if self.events.gate.is_closed(trigger.camera):
            self._cancel_for_privacy(trigger)
            return False
        frame = self._frame_for(trigger, state)
        if frame is None:
            with self._lock:
                self.counters.no_frame += 1
            self.log.warning("caption_without_frame", camera=trigger.camera, trigger=trigger.kind)
            self._close_event(trigger)
            trigger.finish(None, f"camera {trigger.camera!r} has no frame yet")
            return False
        texts_for = self._texts_for(trigger, state, frame)
        watches = self._take_due_watches(trigger.camera)
        if not texts_for and not watches:
            return False
        prompts = [self._prompt(t, state.config) for t in texts_for]
        deadline = max(t.deadline for t in [trigger, *texts_for])
        max_tokens = max((self._max_tokens(t, state.config) for t in texts_for),
                         default=self.config.models.captioner.max_new_tokens)
        job = Job(frame.image, prompts[0] if prompts else "", deadline, max_tokens,
                  questions=tuple(question for _name, question in watches), more_prompts=tuple(prompts[1:]))
        with self._lock:  # set_privacy either sees this job running (and cancels it) or is seen here
            private = self.events.gate.is_closed(trigger.camera)
            if not private:
                job.future = self.worker.submit(job)
                job.future.add_done_callback(self._wake)
                self._running = Running(trigger, job, frame, now, self._after_image, texts_for, watches)
                self._last_served[trigger.camera] = now
                self._after_image = False
                self.counters.watch_jobs += int(not texts_for)
        if private:
            for t in texts_for:
                self._cancel_for_privacy(t)
            return False
        return True

    def _texts_for(self, trigger: Trigger, state: CameraState, frame: AnalysedFrame) -> tuple[Trigger, ...]:
        """Whose text this job writes: the trigger (unless a watch trigger) and whatever else is pending for
        the camera, questions first; a periodic caption of an unchanged scene is a heartbeat instead."""
        texts = [*([] if trigger.kind is TriggerKind.WATCH else [trigger]), *self._take_riders(trigger.camera)]
        periodic = next((t for t in texts if t.kind is TriggerKind.PERIODIC), None)
        if periodic is not None and self._scene_unchanged(state, frame):
            self._heartbeat(state, "scene")
            texts.remove(periodic)
        return tuple(sorted(texts, key=lambda t: t.kind is not TriggerKind.ASK))  # stable: asks in order

    def _start_image(self, trigger: Trigger, image: HandedImage, now: float) -> bool:
        assert self.worker is not None
        if image.stream is not None:
            image.stream.restart()  # a preempted job runs again from its first token
        job = Job(image.pixels, image.prompt, trigger.deadline, image.max_new_tokens, on_token=image.stream)
        with self._lock:  # withdraw either sees this job running (and cancels it) or is seen here
            if trigger.withdrawn:
                return False
            job.future = self.worker.submit(job)
            job.future.add_done_callback(self._wake)
            self._running = Running(trigger, job, None, now, texts_for=(trigger,))
            self._last_served[IMAGE_LANE] = now
            self._after_image = True
        return True

    def _frame_for(self, trigger: Trigger, state: CameraState) -> AnalysedFrame | None:
        """The frame to caption: the best since the trigger, else the latest; never one from before privacy."""
        gate = self.events.gate
        candidates = [f for f in state.history.since(trigger.ts - 0.5) if gate.allows(trigger.camera, f.ts)]
        latest = state.history.latest()
        fallback = latest if latest is not None and gate.allows(trigger.camera, latest.ts) else None
        return choose_frame(candidates, prefer_motion=trigger.kind is TriggerKind.MOTION) or fallback

    def _scene_unchanged(self, state: CameraState, frame: AnalysedFrame) -> bool:
        last = state.last_frame  # read once: privacy may forget it meanwhile
        if self._scene_distance is None or last is None or state.active_since_caption:
            return False
        return self._scene_distance(last, frame) < state.config.captions.scene_change

    @staticmethod
    def _structured(trigger: Trigger, cam: CameraConfig) -> bool:
        """A caption written as title, summary and threat level (an answer to a question never is)."""
        return cam.captions.summary == "structured" and trigger.kind is not TriggerKind.ASK

    def _max_tokens(self, trigger: Trigger, cam: CameraConfig) -> int:
        if self._structured(trigger, cam):
            return cam.captions.summary_max_tokens
        return self.config.models.captioner.max_new_tokens

    def _prompt(self, trigger: Trigger, cam: CameraConfig) -> str:
        default = cam.captions.prompt or self.config.models.captioner.prompt
        if self._structured(trigger, cam):
            default = cam.captions.summary_prompt or STRUCTURED_PROMPT
        base = trigger.question if trigger.kind is TriggerKind.ASK else default
        parts = [cam.captions.context] if cam.captions.context else []
        if trigger.kind is TriggerKind.KEYWORD and trigger.keyword:
            parts.append(f"Someone nearby just said \"{trigger.keyword.replace('_', ' ')}\".")
        return " ".join([*parts, base])

    def _remove(self, trigger: Trigger) -> None:
        """Take `trigger` out of the pending ones (call under the lock)."""
        pending = self._pending.get(trigger.camera, [])
        if trigger in pending:
            pending.remove(trigger)

    # -- outcomes -----------------------------------------------------------------------------------
    def _stale(self, trigger: Trigger, why: str) -> None:
        with self._lock:
            self.counters.stale += 1
        self.log.info("caption_dropped_stale", camera=trigger.camera, trigger=trigger.kind, reason=why)
        self._close_event(trigger)
        trigger.finish(None, TriggerError(f"dropped: {why}", "stale"))

    def _cancel_for_privacy(self, trigger: Trigger) -> None:
        with self._lock:
            self.counters.privacy_cancelled += 1
        self.log.info("caption_cancelled_privacy", camera=trigger.camera, trigger=trigger.kind)
        self._close_event(trigger)  # an `end` carries nothing captured
        trigger.finish(None, f"cancelled: camera {trigger.camera!r} went into privacy mode")

    def _close_event(self, trigger: Trigger) -> None:
        if trigger.event_id is not None and trigger.kind is not TriggerKind.MOTION:  # those end when motion does
            self.events.close(trigger.event_id)

    def _heartbeat(self, state: CameraState, reason: str) -> None:
        now_wall = time.time()
        if state.unchanged_since is None:
            state.unchanged_since = now_wall
        with self._lock:
            if reason == "scene":
                self.counters.unchanged_scene += 1
            else:
                self.counters.unchanged_text += 1
        if reason == "scene":
            state.interval = state.interval.after(busy=False)
            state.next_periodic = self._clock() + state.interval.current
        if state.last_id is not None:
            self._publish(CaptionUnchanged(state.config.id, state.last_id, state.unchanged_since, now_wall,
                                           reason))  # type: ignore[arg-type]

    def _answer_image(self, trigger: Trigger, result: CaptionResult) -> None:
        """A handed-in image's answer goes to its caller only: nothing is published or remembered."""
        latency = (self._clock() - trigger.ts) * 1000
        with self._lock:
            self.counters.images += 1
            by_lane = self.latency_ms.setdefault(IMAGE_LANE, Percentiles())
        by_lane.add(latency)
        trigger.finish(result)

    def _publish_caption(self, trigger: Trigger, frame: AnalysedFrame, result: CaptionResult) -> None:
        """Publish (and answer) the caption, holding the camera's gate: privacy cannot go on half-way."""
        with self.events.gate.passing(trigger.camera, frame.ts) as allowed:
            if allowed:
                self._publish_allowed_caption(trigger, frame, result)
            else:  # finished just as privacy went on: it describes a frame from before
                self._cancel_for_privacy(trigger)

    def _caption_of(self, trigger: Trigger, frame: AnalysedFrame, result: CaptionResult, latency: float) -> Caption:
        """The caption event of a finished job: plain text, or title/summary/threat read from a structured one."""
        text = result.text.strip()
        title, summary, threat = title_of(text), "", None
        if self._structured(trigger, self.cameras[trigger.camera].config):
            parsed = parse_summary(text)
            title, text, threat = parsed.title, parsed.summary, parsed.threat_level
            summary = parsed.summary
            if not parsed.followed:
                self.log.info("summary_format_not_followed", camera=trigger.camera, text=text[:120])
        labels = labels_of(f"{title}. {text}" if summary else text, self._labels)
        return Caption(trigger.event_id or f"cap-{frame.camera}-{frame.seq}", trigger.camera, title, text,
                       trigger.kind, frame.wall_ts, time.time(), latency, result.model, labels,
                       trigger.question, len(result.tokens), summary, threat)

    def _publish_allowed_caption(self, trigger: Trigger, frame: AnalysedFrame, result: CaptionResult) -> None:
        state = self.cameras[trigger.camera]
        latency = (self._clock() - trigger.ts) * 1000
        caption = self._caption_of(trigger, frame, result, latency)
        labels = caption.labels
        rules = tuple(matching_rules(self._rules, trigger.camera, trigger.kind, caption.caption, labels))
        with self._lock:
            self.counters.captions += 1
            self.counters.by_trigger[trigger.kind] = self.counters.by_trigger.get(trigger.kind, 0) + 1
            by_kind = self.latency_ms.setdefault(trigger.kind, Percentiles())
        by_kind.add(latency)
        self.camera_latency_ms[trigger.camera].add(latency)
        trigger.finish(result)
        if trigger.kind is TriggerKind.ASK:
            self._remember(caption, frame)  # the asker's answer, and the board's memory of it
            return  # an answer goes to the asker only; it is not the camera's caption
        self._update_state(state, trigger, frame, caption, rules)

    def _update_state(self, state: CameraState, trigger: Trigger, frame: AnalysedFrame, caption: Caption,
                      rules: tuple[str, ...]) -> None:
        duplicate = state.last_text and similarity(caption.caption, state.last_text) >= (
            state.config.captions.text_similarity)
        busy = state.active_since_caption or trigger.kind is not TriggerKind.PERIODIC
        state.interval = state.interval.after(busy=busy)
        state.next_periodic = self._clock() + state.interval.current
        state.active_since_caption = False
        state.last_frame = frame
        if trigger.event_id is not None:
            self.events.update(trigger.event_id, title=caption.title, caption=caption.caption, labels=caption.labels,
                               rules=rules, has_snapshot=True)
            self._close_event(trigger)
        if duplicate and trigger.kind is TriggerKind.PERIODIC:
            self._heartbeat(state, "text")
            return
        state.last_text, state.last_id, state.unchanged_since = caption.caption, caption.id, None
        self.events.snapshot(trigger.camera, frame)
        self._publish(caption)
        self._remember(caption, frame)

    def _remember(self, event: Event, frame: AnalysedFrame) -> None:
        """Hand a caption, an answer (or any event the memory keeps) with its frame to the memory: queued
        for its own thread, never blocking; a failure here is logged only."""
        if self._record is None:
            return
        try:
            self._record(event, frame)
        except Exception as exc:
            self.log.exception("history_record_failed", camera=frame.camera, event_type=type(event).__name__,
                               error=str(exc))

    def stats(self) -> dict[str, Any]:
        """The scheduler's figures (any thread): one consistent copy taken under the lock, summarised after."""
        with self._lock:
            c = dataclasses.replace(self.counters, by_trigger=dict(self.counters.by_trigger))
            pending = sum(len(v) for v in self._pending.values())
            images_pending = len(self._pending[IMAGE_LANE])
            running = self._running is not None
            expected_s = self._expected_s
            latency = dict(self.latency_ms)
        return {
            "model": self.model_name, "captions": c.captions, "by_trigger": c.by_trigger,
            "stale_dropped": c.stale, "coalesced": c.coalesced, "preemptions": c.preempted,
            "unchanged_scene": c.unchanged_scene, "unchanged_text": c.unchanged_text, "failed": c.failed,
            "no_frame": c.no_frame, "privacy_cancelled": c.privacy_cancelled,
            "images": c.images, "images_pending": images_pending, "withdrawn": c.withdrawn,
            "watches": {"answers": c.watch_answers, "changes": c.watch_changes, "jobs": c.watch_jobs},
            "pending": pending, "running": running, "expected_caption_s": round(expected_s, 2),
            "latency_ms": {k: v.summary() for k, v in latency.items()},
            "event_new_latency_ms": self.events.new_latency_ms.summary(),
        }

    def camera_stats(self, camera: str) -> dict[str, Any]:
        state = self.cameras.get(camera)
        if state is None:
            return {}
        out: dict[str, Any] = {"caption_interval_s": round(state.interval.current, 1),
                               "caption_latency_ms": self.camera_latency_ms[camera].summary()}
        if state.watches:
            out["watches"] = {name: None if on is None else ("ON" if on else "OFF")
                              for name, on in self.watch_states(camera).items()}
        return out

