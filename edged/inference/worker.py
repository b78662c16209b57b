"""`InferenceWorker`: the one thread that runs the caption model; jobs in, `Future`s out.

The scheduler submits one job at a time and never blocks on it: it polls the future and, to
preempt, sets the job's cancel event (the model checks it between tokens).

A job with `questions` (a camera's due watches) or `more_prompts` (questions and a caption of one
camera batched together) is one `look` at its image: every prompt and yes/no question share one image
encode. When the future resolves, `job.texts` holds each prompt's result (fewer when the job was cut
short) and `job.answers` each question's; the future's result is the first prompt's (an empty text
for a job that only asks yes/no questions).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from edged.inference.protocol import Captioner, CaptionResult, FinishReason, Looker, YesNo
from edged.logs import get_logger
from edged.queues import BoundedQueue, DropPolicy, QueueClosed


@dataclass(eq=False)
class Job:
    """One model run: an image, a prompt (empty: no caption), yes/no questions, a deadline, a way to cancel
    it, and who hears each token."""

    image: np.ndarray
    prompt: str
    deadline: float | None
    max_new_tokens: int | None = None
    on_token: Callable[[str], None] | None = None  # each new piece of text, on the model's thread
    questions: tuple[str, ...] = ()
    more_prompts: tuple[str, ...] = ()  # after `prompt`, on the same image encode
    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future[CaptionResult] = field(default_factory=Future)
    # The answers to `questions`, in order, written by the worker before the future resolves; fewer when
    # the job was cancelled or ran out of time first.
    answers: tuple[YesNo, ...] = ()
    texts: tuple[CaptionResult, ...] = ()  # each prompt's result, in order (likewise written by the worker)


class WorkerBusy(RuntimeError):
    """A job was submitted while another one runs."""


class InferenceWorker:
    """Runs jobs on a captioner, one at a time, on its own named thread."""

    def __init__(self, captioner: Captioner) -> None:
        self.captioner = captioner
        self.log = get_logger(component="inference", model=captioner.name)
        self._jobs: BoundedQueue[Job] = BoundedQueue("inference", 1, DropPolicy.DROP_NEWEST)
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.completed = 0
        self.failed = 0

    @property
    def name(self) -> str:
        return self.captioner.name

    @property
    def can_look(self) -> bool:
        """The model answers yes/no questions from its probabilities (watches need it)."""
        return isinstance(self.captioner, Looker)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._jobs.close()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.log.warning("inference_stop_timeout", timeout_s=timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def submit(self, job: Job) -> Future[CaptionResult]:
        if self._busy.is_set():
            raise WorkerBusy("the model is already running a job")
        self._busy.set()  # before the put: the worker may run the whole job before this thread runs again
        if not self._jobs.put(job):
            self._busy.clear()
            raise WorkerBusy("the model is already running a job")
        return job.future

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=0.5)
            except QueueClosed:
                return
            if job is None:
                continue
            try:
                result = self._run_job(job)
            except Exception as exc:  # stored on the future; the scheduler reports it
                self.failed += 1
                self.log.exception("caption_failed", error=str(exc))
                self._busy.clear()  # free before the future resolves, so the next submit never races
                job.future.set_exception(exc)
                continue
            self.completed += 1
            self._busy.clear()
            job.future.set_result(result)

    def _run_job(self, job: Job) -> CaptionResult:
        if not job.questions and not job.more_prompts:
            result = self.captioner.caption(job.image, job.prompt, max_new_tokens=job.max_new_tokens,
                                            deadline=job.deadline, cancel=job.cancel, on_token=job.on_token)
            job.texts = (result,)
            return result
        if not isinstance(self.captioner, Looker):
            raise TypeError(f"the {self.captioner.name} backend cannot look at one image for several prompts")
        prompts = [*([job.prompt] if job.prompt else []), *job.more_prompts]
        look = self.captioner.look(job.image, prompts, job.questions, max_new_tokens=job.max_new_tokens,
                                   deadline=job.deadline, cancel=job.cancel)
        job.answers, job.texts = tuple(look.answers), tuple(look.texts)
        if look.texts:
            return look.texts[0]
        complete = len(look.answers) == len(job.questions) and not prompts
        reason: FinishReason = "stop" if complete else "cancelled" if job.cancel.is_set() else "deadline"
        return CaptionResult("", (), self.captioner.name, reason, dict(look.timings))
