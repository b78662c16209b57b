"""The API's pure parts, table by table: OpenAI's and Ollama's JSON to edged's request and back, and the
images a request carries to the frame the model sees. Answers are checked against the real client
libraries' own response types (the `openai` and `ollama` packages), so a field they need cannot be
missing."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import ollama
import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from PIL import Image

from edged.api import ollama_wire, openai_wire
from edged.api.chat import MAX_DEPTH, ApiError, ChatRequest, Limits, parse_json
from edged.api.images import decode_base64, decode_image, tile

LIMITS = Limits(max_images=4, max_image_bytes=1024 * 1024, max_tokens=100)


def jpeg(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG")
    return base64.b64encode(buf.getvalue()).decode()


def image_part(data: str, mime: str = "image/jpeg") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def openai_body(*content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": list(content)}], **extra}


def refused(parse: Any, body: Any, limits: Limits = LIMITS) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse(body, limits)
    return info.value


# -- OpenAI requests -----------------------------------------------------------------------------------
def test_an_openai_request_as_frigate_sends_it() -> None:
    """Frigate's provider: one user message, text then image parts (`detail: low`), no max_tokens."""
    body = openai_body({"type": "text", "text": "Describe the person."},
                       {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg()}", "detail": "low"}})
    chat = openai_wire.parse_request(body, LIMITS)
    assert (chat.prompt, len(chat.images), chat.max_tokens, chat.stream) == ("Describe the person.", 1, 100, False)
    assert chat.images[0].where == "messages[0].content[1]"


def test_an_openai_request_as_llm_vision_sends_it() -> None:
    """LLM Vision: a system prompt, "Image 1:" labels before each image, temperature and top_p, a
    max_completion_tokens: the question is the user's text, the system prompt is not shown to the model."""
    body = {"model": "glm", "temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 50,
            "messages": [{"role": "system", "content": "You are a camera assistant."},
                         {"role": "user", "content": [{"type": "text", "text": "Image 1:"}, image_part(jpeg()),
                                                      {"type": "text", "text": "Is anyone there?"}]}]}
    chat = openai_wire.parse_request(body, LIMITS)
    assert chat.prompt == "Image 1:\nIs anyone there?"
    assert chat.max_tokens == 50


def test_a_follow_up_question_is_about_the_last_image() -> None:
    """The last user message is the question; without an image of its own it asks about the latest one."""
    first, second = jpeg(color=(1, 2, 3)), jpeg(color=(9, 9, 9))
    body = {"messages": [{"role": "user", "content": [image_part(first)]},
                         {"role": "user", "content": [image_part(second), {"type": "text", "text": "a"}]},
                         {"role": "assistant", "content": "A grey square."},
                         {"role": "user", "content": "What colour is it?"}]}
    chat = openai_wire.parse_request(body, LIMITS)
    assert chat.prompt == "What colour is it?"
    assert [i.base64 for i in chat.images] == [second]


@pytest.mark.parametrize(("extra", "max_tokens"), [({}, 100), ({"max_tokens": 10}, 10), ({"max_tokens": 5000}, 100),
                                                   ({"max_completion_tokens": 7, "max_tokens": 9}, 7)])
def test_the_answer_length_is_what_was_asked_at_most_the_limit(extra: dict[str, int], max_tokens: int) -> None:
    assert openai_wire.parse_request(openai_body(image_part(jpeg()), **extra), LIMITS).max_tokens == max_tokens


def test_stream_and_usage_options() -> None:
    chat = openai_wire.parse_request(openai_body(image_part(jpeg()), stream=True,
                                                 stream_options={"include_usage": True}), LIMITS)
    assert (chat.stream, chat.include_usage) == (True, True)


def test_a_request_without_an_image_parses_to_no_images() -> None:
    """LLM Vision's connection check sends "Hi" alone: it is not malformed; the server answers it without
    running the model (see NO_IMAGE_ANSWER)."""
    chat = openai_wire.parse_request({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
                                     LIMITS)
    assert (chat.prompt, chat.images) == ("Hi", ())


@pytest.mark.parametrize(("body", "status", "message"), [
    ([], 400, "the request body must be a JSON object (got a list)"),
    ({}, 400, "messages must be a list (got null)"),
    ({"messages": []}, 400, "messages is empty"),
    ({"messages": "hello"}, 400, "messages must be a list (got text)"),
    ({"messages": [{"role": "system", "content": "x"}]}, 400, "messages has no user message"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role must be one of"),
    ({"messages": [{"role": 7}]}, 400, "messages[0].role must be text (got the number 7)"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content must be a list (got the number 5)"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 400,
     "messages[0].content[0].type 'audio' is not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 3}}]}]}, 400,
     "messages[0].content[0].image_url.url must be text"),
    (openai_body({"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}), 400,
     "messages[0].content[0]: the data URL holds 'text/plain', not an image"),
    (openai_body({"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}), 400,
     "messages[0].content[0]: the data URL must be base64"),
    (openai_body({"type": "image_url", "image_url": {"url": "data:image/png;base64"}}), 400,
     "messages[0].content[0]: a data URL needs a comma"),
    (openai_body({"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}), 400,
     "messages[0].content[0]: image URLs are not fetched (api.allow_image_urls is off)"),
    (openai_body({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}), 400,
     "messages[0].content[0]: an image URL must be a data: URL or http(s) (got file:)"),
    (openai_body(*[image_part("AAAA")] * 5), 400, "the request has 5 images; the limit is 4"),
    (openai_body(image_part("AAAA"), n=2), 400, "n must be 1"),
    (openai_body(image_part("AAAA"), tools=[{"type": "function"}]), 400, "edged does not call tools"),
    (openai_body(image_part("AAAA"), response_format={"type": "json_schema"}), 400,
     "response_format 'json_schema' is not supported"),
    (openai_body(image_part("AAAA"), logprobs=True), 400, "logprobs are not supported"),
    (openai_body(image_part("AAAA"), temperature="hot"), 400, "temperature must be a number (got text)"),
    (openai_body(image_part("AAAA"), max_tokens=0), 400, "max_tokens must be at least 1"),
    (openai_body(image_part("AAAA"), max_tokens=2.5), 400, "max_tokens must be a whole number"),
    (openai_body(image_part("AAAA"), stream="yes"), 400, "stream must be true or false (got text)"),
    (openai_body({"type": "text", "text": "x" * 5000}, image_part("AAAA")), 400,
     "messages[0] has 5000 characters of text; the limit is 4000"),
])
def test_malformed_openai_requests_are_400s_naming_the_problem(body: Any, status: int, message: str) -> None:
    err = refused(openai_wire.parse_request, body)
    assert err.status == status
    assert err.message.startswith(message), err.message


# -- Ollama requests -----------------------------------------------------------------------------------
def test_an_ollama_chat_as_home_assistant_sends_it() -> None:
    """Home Assistant: a system prompt, the user's message with base64 images, stream on, keep_alive, options."""
    body = {"model": "glm-edge-v-2b:int4", "stream": True, "keep_alive": "300s", "think": None, "tools": None,
            "format": None, "options": {"num_ctx": 8192},
            "messages": [{"role": "system", "content": "You are a voice assistant."},
                         {"role": "user", "content": "Who is at the door?", "images": [jpeg()]}]}
    chat = ollama_wire.parse_chat(body, LIMITS)
    assert chat is not None
    assert (chat.prompt, len(chat.images), chat.stream, chat.max_tokens) == ("Who is at the door?", 1, True, 100)


def test_ollama_streams_unless_told_not_to_and_num_predict_caps_the_answer() -> None:
    body = {"messages": [{"role": "user", "content": "?", "images": [jpeg()]}], "stream": False,
            "options": {"num_predict": 12, "temperature": 0.5}}
    chat = ollama_wire.parse_chat(body, LIMITS)
    assert chat is not None and (chat.stream, chat.max_tokens) == (False, 12)
    unlimited = {**body, "options": {"num_predict": -1}}
    assert ollama_wire.parse_chat(unlimited, LIMITS).max_tokens == 100  # type: ignore[union-attr]


def test_ollama_generate_and_the_load_calls() -> None:
    """/api/generate takes prompt and images; a call with nothing to do (Ollama's "load the model") is None."""
    chat = ollama_wire.parse_generate({"model": "m", "prompt": "Describe.", "images": [jpeg()]}, LIMITS)
    assert chat is not None and chat.prompt == "Describe." and len(chat.images) == 1
    assert ollama_wire.parse_generate({"model": "m"}, LIMITS) is None
    assert ollama_wire.parse_chat({"model": "m", "messages": []}, LIMITS) is None


@pytest.mark.parametrize(("body", "message"), [
    ({"messages": [{"role": "user", "content": "?", "images": "abc"}]}, "messages[0].images must be a list"),
    ({"messages": [{"role": "user", "content": "?", "images": [5]}]}, "messages[0].images[0] must be text"),
    ({"messages": [{"role": "user", "content": "?", "images": ["data:text/html;base64,PGI+"]}]},
     "messages[0].images[0]: the data URL holds 'text/html', not an image"),
    ({"messages": [{"role": "user", "content": ["a"]}]}, "messages[0].content must be text (got a list)"),
    ({"messages": [{"role": "user", "content": "?"}], "format": "json"}, "structured output (format)"),
    ({"messages": [{"role": "user", "content": "?"}], "tools": [{}]}, "edged does not call tools"),
    ({"messages": [{"role": "user", "content": "?"}], "options": {"num_predict": "many"}},
     "num_predict must be a whole number"),
    ({"messages": [{"role": "user", "content": "?"}], "options": []}, "options must be a JSON object"),
    ({"messages": {"role": "user"}}, "messages must be a list"),
])
def test_malformed_ollama_requests_are_400s_naming_the_problem(body: Any, message: str) -> None:
    err = refused(ollama_wire.parse_chat, body)
    assert err.status == 400
    assert err.message.startswith(message), err.message


# -- bodies --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "message"), [
    (b"", "the request body is empty"),
    (b"[" * 10_000, f"the JSON nests 10000 levels deep; the limit is {MAX_DEPTH}"),
    (b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', None),  # brackets inside a string do not nest
    (b"\xff\xfe{}", "the request body is not UTF-8 text"),
    (b"{'single': 'quotes'}", "the request body is not valid JSON"),
    (b"NaN", None),
])
def test_bodies_are_parsed_without_deep_recursion(body: bytes, message: str | None) -> None:
    if message is None:
        parse_json(body)
        return
    with pytest.raises(ApiError) as info:
        parse_json(body)
    assert info.value.status == 400 and info.value.message.startswith(message), info.value.message


# -- images --------------------------------------------------------------------------------------------
def test_an_image_decodes_to_the_bgr_frame_the_model_takes() -> None:
    frame = decode_image(decode_base64(jpeg(color=(255, 0, 0)), "x", LIMITS), "x", LIMITS)
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert frame[24, 32, 2] > 200 and frame[24, 32, 0] < 50  # red, in BGR order


def test_base64_with_line_breaks_is_accepted() -> None:
    data = jpeg()
    wrapped = "\n".join(data[i:i + 76] for i in range(0, len(data), 76))
    assert decode_base64(wrapped, "x", LIMITS) == base64.b64decode(data)


@pytest.mark.parametrize(("data", "status", "message"), [
    ("not base64 at all!", 400, "x: the image is not valid base64"),
    ("QUJD", 400, "x: not an image edged can read"),  # "ABC"
    (base64.b64encode(b"%PDF-1.7 not an image").decode(), 400, "x: not an image edged can read"),
    ("", 400, "x: the image is empty"),
    ("ééé", 400, "x: the image is not valid base64"),
    ("A" * (2 * 1024 * 1024), 413, "x: the image is over 1 MB (api.max_image_mb)"),
])
def test_bad_images_are_refused_naming_where(data: str, status: int, message: str) -> None:
    with pytest.raises(ApiError) as info:
        decode_image(decode_base64(data, "x", LIMITS), "x", LIMITS)
    assert (info.value.status, info.value.message[:len(message)]) == (status, message)


@pytest.mark.parametrize(("side", "message"), [(8_000, "x: the image is 8000x8000 pixels; the limit is 40 megapixels"),
                                              (20_000, "x: the image has too many pixels (over 40 megapixels)")])
def test_a_decompression_bomb_is_refused_before_it_is_unpacked(side: int, message: str) -> None:
    """A PNG of one colour is a few hundred KB at most; its pixels would be 0.2-1.2 GB."""
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, "PNG")
    assert len(buf.getvalue()) < 1024 * 1024
    with pytest.raises(ApiError) as info:
        decode_image(buf.getvalue(), "x", LIMITS)
    assert (info.value.status, info.value.message) == (413, message)


def test_a_truncated_image_is_a_400() -> None:
    raw = base64.b64decode(jpeg(640, 480))
    with pytest.raises(ApiError) as info:
        decode_image(raw[: len(raw) // 2], "x", LIMITS)
    assert info.value.status == 400


def test_several_images_are_tiled_in_order_and_one_is_left_alone() -> None:
    red, green, blue = (np.full((30, 60, 3), c, np.uint8) for c in ((0, 0, 255), (0, 255, 0), (255, 0, 0)))
    assert tile([red]) is red
    grid = tile([red, green, blue])
    assert grid.shape == (1344, 1344, 3)  # 2 x 2 cells of 672 px
    cell = 672
    assert tuple(grid[cell // 2, cell // 2]) == (0, 0, 255)  # first: top left
    assert tuple(grid[cell // 2, cell + cell // 2]) == (0, 255, 0)  # second: top right
    assert tuple(grid[cell + cell // 2, cell // 2]) == (255, 0, 0)  # third: bottom left
    assert grid[cell + cell // 2, cell + cell // 2].sum() == 0  # the empty cell stays black


# -- answers, checked by the client libraries' own types -----------------------------------------------
def test_openai_answers_parse_as_the_openai_client_reads_them() -> None:
    usage = openai_wire.usage(600, 12)
    whole = ChatCompletion.model_validate(openai_wire.completion("chatcmpl-1", 1, "glm", "A cat.", "stop", usage))
    assert whole.choices[0].message.content == "A cat."
    assert whole.usage is not None and whole.usage.total_tokens == 612
    assert whole.system_fingerprint == "edged-0.1.0-greedy"
    piece = ChatCompletionChunk.model_validate(openai_wire.chunk("c", 1, "glm", {"content": "A"}))
    assert piece.choices[0].delta.content == "A"
    last = ChatCompletionChunk.model_validate(openai_wire.chunk("c", 1, "glm", {}, "length"))
    assert last.choices[0].finish_reason == "length"
    counted = ChatCompletionChunk.model_validate(openai_wire.chunk("c", 1, "glm", {}, usage=usage))
    assert counted.choices == [] and counted.usage is not None
    listed = openai_wire.models(["glm-edge-v-2b:int4"], 1)
    assert [Model.model_validate(m).id for m in listed["data"]] == ["glm-edge-v-2b:int4"]
    err = openai_wire.error(ApiError(429, "busy", "busy", retry_after=3))
    assert err == {"error": {"message": "busy", "type": "rate_limit_error", "param": None, "code": "busy"}}


def test_ollama_answers_parse_as_the_ollama_client_reads_them() -> None:
    stats = ollama_wire.timings(1500.0, 600, 12, {"vision_ms": 700.0, "prefill_ms": 500.0, "decode_ms": 300.0})
    done = ollama.ChatResponse.model_validate(ollama_wire.chat_line("glm", "", True, "stop", stats))
    assert (done.done, done.done_reason, done.eval_count) == (True, "stop", 12)
    assert done.prompt_eval_duration == 1_200_000_000
    piece = ollama.ChatResponse.model_validate(ollama_wire.chat_line("glm", "A"))
    assert piece.message.content == "A" and not piece.done
    generated = ollama.GenerateResponse.model_validate(ollama_wire.generate_line("glm", "A cat.", True))
    assert generated.response == "A cat."
    when = "2026-01-01T00:00:00Z"
    listed = ollama.ListResponse.model_validate(ollama_wire.tags(["glm-edge-v-2b:int4"], "glm-edge-v", when))
    assert [m.model for m in listed.models] == ["glm-edge-v-2b:int4"]
    assert listed.models[0].details is not None and listed.models[0].details.quantization_level == "int4"
    shown = ollama.ShowResponse.model_validate(ollama_wire.show("glm-edge-v-2b:int4", "glm-edge-v", when))
    assert shown.capabilities == ["completion", "vision"]
    assert ollama_wire.error(ApiError(400, "no")) == {"error": "no"}


def test_a_chat_request_is_frozen_data() -> None:
    """What the parsers return carries no image bytes yet: sources are decoded later, off the event loop."""
    chat = openai_wire.parse_request(openai_body(image_part(jpeg())), LIMITS)
    assert isinstance(chat, ChatRequest)
    assert chat.images[0].url == "" and chat.images[0].base64 == jpeg()
