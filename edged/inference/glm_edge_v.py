"""The `onnx` backend: GLM-Edge-V run by onnxruntime from an exported bundle.

One caption: preprocess -> vision encoder -> embeddings of the prompt with the image rows spliced in
-> prefill -> greedy decoding with the KV cache kept in onnxruntime memory. Cancellation and the
deadline are checked between stages and between tokens; every stage is timed.

One look (several prompts and yes/no questions about one image): one vision pass, one prefill of the
tokens every sequence shares (template, image rows, common text), then per question the cache is
rewound to that shared length and only the question's own tokens are prefilled; its P(yes) comes from
those logits (one step). Prompts are generated the same way, after the questions (cheap ones first, so
a deadline cuts a caption short rather than a watch).
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edged.config.schema import CaptionerConfig
from edged.inference.decoder import Decoder
from edged.inference.generate import GenerationParams, pick
from edged.inference.manifest import Manifest, files_of_variant, load_manifest, verify
from edged.inference.preprocess import pixel_values
from edged.inference.prompt import PromptIds, build_prompt, shared_prefix, splice
from edged.inference.protocol import CaptionResult, FinishReason, Look, ModelUnavailable, YesNo
from edged.inference.sessions import open_session
from edged.inference.yesno import AnswerTokens, BadQuestion, answer_tokens, p_yes, question_prompt, validate_question
from edged.logs import get_logger


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Stopped(Exception):
    def __init__(self, reason: FinishReason) -> None:
        self.reason = reason


@dataclass
class _Run:
    """State of one caption request."""

    deadline: float | None
    cancel: threading.Event | None
    timings: dict[str, float]

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise _Stopped("cancelled")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _Stopped("deadline")

    def timed(self, key: str, t0: float) -> float:
        now = time.perf_counter()
        self.timings[key] = self.timings.get(key, 0.0) + (now - t0) * 1000.0
        return now


class GlmEdgeVCaptioner:
    """Captions and answers questions about frames with a GLM-Edge-V bundle."""

    def __init__(self, config: CaptionerConfig, *, warmup: bool = True) -> None:
        try:
            import onnxruntime  # noqa: F401
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelUnavailable(f"the onnx captioner needs {exc.name}", "pip install edged") from None
        self.config = config
        if config.path is None:
            raise ModelUnavailable("models.captioner.path is not set", "point it at a bundle (edged models pull)")
        self.directory = Path(config.path)
        self.manifest: Manifest = load_manifest(self.directory)
        m = self.manifest
        self.variant_name = config.variant or m.default_variant
        variant = m.variant(self.variant_name)
        verify(self.directory, m, files_of_variant(m, variant), hashes=config.verify_hashes)
        self.name = f"{m.name}:{self.variant_name}"
        self.tokenizer = Tokenizer.from_file(str(self.directory / m.tokenizer))
        self.embeddings = np.load(self.directory / m.embeddings, mmap_mode="r")
        cache = self.directory / ".ort-cache" if config.optimized_cache else None
        self.vision = self._session(variant.vision, cache)
        self.decoder = Decoder(self._session(variant.decoder, cache), m.lm)
        self._lock = threading.Lock()
        self._answers: AnswerTokens | None = None
        if warmup:
            self._warmup()
        get_logger(component="captioner").info(
            "captioner_loaded", model=self.name, path=str(self.directory), threads=config.threads
        )

    def _session(self, name: str, cache: Path | None) -> Any:
        c = self.config
        return open_session(
            self.directory / name,
            self.manifest.files[name].sha256,
            threads=c.threads,
            providers=c.providers,
            level=c.graph_optimization,
            cache_dir=cache,
        )

    def _warmup(self) -> None:
        """One short caption of a grey frame so the first real one does not pay the one-time costs."""
        grey = np.full((64, 64, 3), 128, np.uint8)
        self.caption(grey, self.manifest.prompt.default_prompt, max_new_tokens=2)

    def params(self, max_new_tokens: int | None) -> GenerationParams:
        stops = frozenset(self.manifest.generation.stop_ids)
        return GenerationParams(
            max_new_tokens=max_new_tokens or self.config.max_new_tokens,
            repetition_penalty=self.config.repetition_penalty,
            stop_ids=stops,
        )

    def prompt_ids(self, prompt: str) -> PromptIds:
        return build_prompt(self.manifest, self.tokenizer, prompt or self.manifest.prompt.default_prompt)

    def embed(self, ids: tuple[int, ...] | list[int]) -> np.ndarray:
        """fp32 embeddings [1, L, H] gathered from the memory-mapped fp16 table."""
        return np.asarray(self.embeddings[np.asarray(ids, np.int64)], np.float32)[None]

    def image_rows(self, pixels: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        rows = self.vision.run(["image_features"], {"pixel_values": pixels})[0]
        self.decoder.ort_seconds += time.perf_counter() - t0
        return np.asarray(rows)

    def caption(
        self,
        image: np.ndarray,
        prompt: str,
        *,
        max_new_tokens: int | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> CaptionResult:
        """Caption a BGR frame, or answer `prompt` about it (see the `Captioner` protocol)."""
        with self._lock:
            run = _Run(deadline, cancel, {})
            tokens: list[int] = []
            t_start = time.perf_counter()
            self.decoder.ort_seconds = 0.0
            try:
                params = self.params(max_new_tokens)
                reason = self._generate(run, image, prompt, params, tokens=tokens, on_token=on_token)
            except _Stopped as stop:
                reason = stop.reason
            run.timed("total_ms", t_start)
            run.timings["ort_ms"] = self.decoder.ort_seconds * 1000.0
            text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            return CaptionResult(
                text=text,
                tokens=tuple(tokens),
                model=self.name,
                finish_reason=reason,
                timings=run.timings,
                peak_rss_mb=peak_rss_mb(),
            )

    def _generate(
        self,
        run: _Run,
        image: np.ndarray,
        prompt: str,
        params: GenerationParams,
        *,
        tokens: list[int],
        on_token: Callable[[str], None] | None,
    ) -> FinishReason:
        run.check()
        t = time.perf_counter()
        pixels = pixel_values(image, self.manifest.preprocessing)
        t = run.timed("preprocess_ms", t)
        rows = self.image_rows(pixels)
        t = run.timed("vision_ms", t)
        run.check()
        p = self.prompt_ids(prompt)
        embeds = splice(self.embed(p.ids), rows, p, self.manifest.image_token_id)
        cache = self.decoder.start(len(p.ids) + params.max_new_tokens)
        t = run.timed("embed_ms", t)
        ort_before = self.decoder.ort_seconds
        logits = self.decoder.step(cache, embeds)
        t = run.timed("prefill_ms", t)
        run.timings["prompt_tokens"] = float(len(p.ids))
        run.timings["ort_prefill_ms"] = (self.decoder.ort_seconds - ort_before) * 1000.0
        return self._decode(run, params, p, logits, cache=cache, tokens=tokens, on_token=on_token)

    def _decode(
        self,
        run: _Run,
        params: GenerationParams,
        p: PromptIds,
        logits: np.ndarray,
        *,
        cache: Any,
        tokens: list[int],
        on_token: Callable[[str], None] | None,
    ) -> FinishReason:
        seen = set(p.ids)
        ort_before, t0 = self.decoder.ort_seconds, time.perf_counter()
        emitted = ""
        reason: FinishReason = "length"
        try:
            while True:
                token = pick(logits, seen, params.repetition_penalty)
                tokens.append(token)
                seen.add(token)
                if on_token is not None:
                    emitted = self._stream(tokens, emitted, on_token)
                if token in params.stop_ids:
                    reason = "stop"
                    break
                if len(tokens) >= params.max_new_tokens:
                    break
                run.check()
                logits = self.decoder.step(cache, self.embed([token]))
        finally:
            run.timed("decode_ms", t0)
            steps = max(len(tokens) - 1, 0)  # the first token came from the prefill logits
            run.timings["new_tokens"] = float(len(tokens))
            run.timings["ort_decode_ms"] = (self.decoder.ort_seconds - ort_before) * 1000.0
            if steps and run.timings["decode_ms"] > 0:
                run.timings["decode_tok_s"] = steps / (run.timings["decode_ms"] / 1000.0)
        return reason

    def _stream(self, tokens: list[int], emitted: str, on_token: Callable[[str], None]) -> str:
        """Send the text the newest token added (decoding the whole run keeps multi-byte pieces whole)."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if len(text) > len(emitted) and text.startswith(emitted) and not text.endswith("\ufffd"):
            on_token(text[len(emitted) :])
            return text
        return emitted

    def answer_tokens(self) -> AnswerTokens:
        """The yes and no token ids of this bundle's tokenizer (`ModelUnavailable` when it has none)."""
        if self._answers is None:
            unk = self.tokenizer.token_to_id("[UNK]")
            try:
                self._answers = answer_tokens(
                    lambda w: self.tokenizer.encode(w, add_special_tokens=False).ids, unk
                )
            except ValueError as exc:
                raise ModelUnavailable(f"{self.name} cannot answer yes/no questions: {exc}") from None
        return self._answers

    def check_questions(self, questions: Sequence[str]) -> list[str]:
        """Validated questions (`BadQuestion` names the first bad one), before any model work."""
        special = set(self.manifest.special_ids.values()) | {self.manifest.image_token_id}
        out = []
        for i, q in enumerate(questions):
            try:
                text = validate_question(q)
            except BadQuestion as exc:
                raise BadQuestion(f"question {i + 1}: {exc}") from None
            if special & set(self.tokenizer.encode(text, add_special_tokens=False).ids):
                raise BadQuestion(f"question {i + 1}: it holds a special token of the chat template")
            out.append(text)
        return out

    def look(
        self,
        image: np.ndarray,
        prompts: Sequence[str],
        questions: Sequence[str],
        *,
        max_new_tokens: int | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Look:
        """Generate for each prompt and score each question on one encode of `image` (see `Looker`)."""
        asked = self.check_questions(questions)
        tokens = self.answer_tokens() if asked else None
        params = self.params(max_new_tokens)
        with self._lock:
            self.decoder.ort_seconds = 0.0
            t_start = time.perf_counter()
            branches = [self.prompt_ids(question_prompt(q)) for q in asked] + [self.prompt_ids(p) for p in prompts]
            run = _Run(deadline, cancel, {"vision_passes": 0.0})
            answers: list[YesNo] = []
            texts: list[CaptionResult] = []
            try:
                if branches:
                    self._look(run, image, branches, asked, tokens, params, answers, texts)
            except _Stopped:
                pass  # what is complete is kept; the rest is absent
            run.timed("total_ms", t_start)
            run.timings["ort_ms"] = self.decoder.ort_seconds * 1000.0
            return Look(texts=tuple(texts), answers=tuple(answers), timings=run.timings)

    def _look(
        self,
        run: _Run,
        image: np.ndarray,
        branches: list[PromptIds],
        asked: list[str],
        tokens: AnswerTokens | None,
        params: GenerationParams,
        answers: list[YesNo],
        texts: list[CaptionResult],
    ) -> None:
        run.check()
        t = time.perf_counter()
        pixels = pixel_values(image, self.manifest.preprocessing)
        t = run.timed("preprocess_ms", t)
        rows = self.image_rows(pixels)
        run.timings["vision_passes"] += 1
        t = run.timed("vision_ms", t)
        run.check()
        image_id = self.manifest.image_token_id
        embeds = [splice(self.embed(b.ids), rows, b, image_id) for b in branches]
        shared = shared_prefix([b.ids for b in branches])
        extra = [params.max_new_tokens if i >= len(asked) else 0 for i in range(len(branches))]
        cache = self.decoder.start(max(len(b.ids) + n for b, n in zip(branches, extra, strict=True)))
        t = run.timed("embed_ms", t)
        if shared:
            self.decoder.step(cache, embeds[0][:, :shared])
        run.timings["shared_tokens"] = float(shared)
        run.timed("shared_prefill_ms", t)
        for i, (branch, emb) in enumerate(zip(branches, embeds, strict=True)):
            run.check()
            t = time.perf_counter()
            self.decoder.rewind(cache, shared)
            logits = self.decoder.step(cache, emb[:, shared:])
            if i < len(asked):
                assert tokens is not None
                answers.append(YesNo(question=asked[i], p_yes=p_yes(logits, tokens)))
                run.timed("questions_ms", t)
            else:
                texts.append(self._branch_text(run, params, branch, logits, cache, t))
                if texts[-1].finish_reason in ("cancelled", "deadline"):
                    raise _Stopped(texts[-1].finish_reason)

    def _branch_text(
        self, look: _Run, params: GenerationParams, p: PromptIds, logits: np.ndarray, cache: Any, t0: float
    ) -> CaptionResult:
        """Greedy generation for one prompt whose own tokens were just prefilled (from `t0`)."""
        run = _Run(look.deadline, look.cancel, {})
        run.timed("prefill_ms", t0)
        run.timings["prompt_tokens"] = float(len(p.ids))
        generated: list[int] = []
        try:
            reason = self._decode(run, params, p, logits, cache=cache, tokens=generated, on_token=None)
        except _Stopped as stop:
            reason = stop.reason
        run.timed("total_ms", t0)
        look.timings["prompts_ms"] = look.timings.get("prompts_ms", 0.0) + run.timings["total_ms"]
        return CaptionResult(
            text=self.tokenizer.decode(generated, skip_special_tokens=True).strip(),
            tokens=tuple(generated),
            model=self.name,
            finish_reason=reason,
            timings=run.timings,
            peak_rss_mb=peak_rss_mb(),
        )

    def close(self) -> None:
        self.vision = None
        self.decoder = None  # type: ignore[assignment]
