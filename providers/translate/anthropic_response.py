"""Answers and streams between the Anthropic and OpenAI formats, both ways.

Upstream (PROTOCOLS §3.1): an Anthropic model's message or event stream becomes
an OpenAI completion or chunks. Client (PROTOCOLS §2.2): the internal OpenAI
answer goes back to a ``/v1/messages`` customer as an Anthropic message or event
stream.

Everything here is a pure function of decoded JSON; no I/O.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from providers.translate.anthropic_format import (
    _STOP_FROM_OPENAI,
    JSON_TOOL,
    Json,
    UpstreamStreamError,
    _openai_tool_call,
    finish_reason_from_anthropic,
    usage_from_anthropic,
)

# --- Upstream: Anthropic response -> OpenAI response -----------------------------------------


def anthropic_to_openai_response(resp: Json, *, model: str, json_mode: bool = False) -> Json:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[Json] = []
    json_answer: str | None = None
    for block in resp.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
        elif kind == "tool_use" and json_mode and block.get("name") == JSON_TOOL:
            json_answer = json.dumps(block.get("input") or {})
        elif kind == "tool_use":
            calls.append(_openai_tool_call(block))
    finish = finish_reason_from_anthropic(resp.get("stop_reason"))
    if finish == "tool_calls" and not calls:
        finish = "stop"  # the only tool called was the JSON tool, which the caller sees as content
    # A preamble before the JSON tool call would make the content unparseable, so the JSON wins alone.
    content = json_answer if json_answer is not None else ("".join(texts) if texts else None)
    message: Json = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return {
        "id": "chatcmpl-" + str(resp.get("id") or secrets.token_hex(12)).removeprefix("msg_"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_from_anthropic(resp.get("usage") or {}),
        "system_fingerprint": None,
    }


class AnthropicStreamToOpenAI:
    """Turns Anthropic stream events into OpenAI ``chat.completion.chunk`` dicts.

    Feed every event in order; each call returns the chunks to send now (maybe
    none). Usage chunks are the caller's: read ``usage`` once ``finished``. An
    ``error`` event raises ``UpstreamStreamError``.
    """

    def __init__(self, *, model: str, completion_id: str, created: int, json_mode: bool = False) -> None:
        self._frame = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._json_mode = json_mode
        self._tool_of_block: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._json_blocks: set[int] = set()
        self._raw_usage: Json = {}
        self._started = False
        self._finished = False

    @property
    def usage(self) -> Json | None:
        return usage_from_anthropic(self._raw_usage) if self._started else None

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, event: str, data: Json) -> list[Json]:
        handler = getattr(self, f"_on_{event or data.get('type')}", None)
        return handler(data) if handler else []  # new event kinds are skipped, as the SDKs do

    def _chunk(self, delta: Json, finish_reason: str | None = None) -> Json:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._frame, "choices": [choice]}

    def _record_usage(self, usage: Any) -> None:
        # Counts, and the cache_creation split (a dict); a null in message_delta keeps
        # what message_start reported.
        if isinstance(usage, dict):
            self._raw_usage |= {key: value for key, value in usage.items() if isinstance(value, int | dict)}

    def _on_message_start(self, data: Json) -> list[Json]:
        self._started = True
        self._record_usage((data.get("message") or {}).get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, data: Json) -> list[Json]:
        index, block = data.get("index", 0), data.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []
        if self._json_mode and block.get("name") == JSON_TOOL:
            self._json_blocks.add(index)
            return []
        tool_index = self._tool_of_block[index] = len(self._tool_of_block)
        call = {"index": tool_index, "id": block.get("id"), "type": "function"}
        call["function"] = {"name": block.get("name"), "arguments": ""}
        return [self._chunk({"tool_calls": [call]})]

    def _on_content_block_delta(self, data: Json) -> list[Json]:
        index, delta = data.get("index", 0), data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        fragment = delta.get("partial_json")
        if kind != "input_json_delta" or not fragment:
            return []
        if index in self._json_blocks:
            return [self._chunk({"content": fragment})]
        if index in self._tool_of_block:
            call = {"index": self._tool_of_block[index], "function": {"arguments": fragment}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _on_message_delta(self, data: Json) -> list[Json]:
        self._record_usage(data.get("usage"))
        finish = finish_reason_from_anthropic((data.get("delta") or {}).get("stop_reason"))
        if finish == "tool_calls" and not self._tool_of_block:
            finish = "stop"
        return [self._chunk({}, finish)]

    def _on_message_stop(self, data: Json) -> list[Json]:
        self._finished = True
        return []

    def _on_error(self, data: Json) -> list[Json]:
        error = data.get("error") or {}
        raise UpstreamStreamError(
            str(error.get("message") or "The upstream stream failed."),
            error_type=str(error.get("type") or "api_error"),
        )


# --- Client: OpenAI response -> Anthropic response -------------------------------------------


def openai_response_to_anthropic(resp: Json, *, model: str) -> Json:
    choice = (resp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[Json] = []
    text = _text_of(message.get("content")) or message.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    content += [_tool_use_block(call) for call in message.get("tool_calls") or []]
    return {
        "id": _message_id(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_FROM_OPENAI.get(choice.get("finish_reason") or "", "end_turn"),
        "stop_sequence": None,
        "usage": _anthropic_usage(resp.get("usage")),
    }


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _tool_use_block(call: Json) -> Json:
    function = call.get("function") or {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = {}  # the model produced broken JSON; an empty input keeps the message valid
    return {
        "type": "tool_use",
        "id": call.get("id") or f"toolu_{secrets.token_hex(12)}",
        "name": function.get("name") or "",
        "input": arguments if isinstance(arguments, dict) else {},
    }


def _message_id(completion_id: Any) -> str:
    suffix = str(completion_id).removeprefix("chatcmpl-") if completion_id else secrets.token_hex(12)
    return f"msg_{suffix}"


def _anthropic_usage(usage: Any) -> Json:
    """Internal usage as Anthropic reports it: ``input_tokens`` without cache reads and
    writes, which are counted apart (writes in total and split by lifetime)."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    reads = details.get("cached_tokens") or 0
    write_5m = details.get("cache_write_5m_tokens") or 0
    write_1h = details.get("cache_write_1h_tokens") or 0
    return {
        "input_tokens": max((usage.get("prompt_tokens") or 0) - reads - write_5m - write_1h, 0),
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": reads,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
    }


class OpenAIStreamToAnthropic:
    """Turns OpenAI ``chat.completion.chunk`` dicts into Anthropic ``(event, data)`` pairs.

    ``feed`` each chunk (including the final usage chunk), then call ``finish``
    once to close the message. Only choice 0 is translated: Anthropic has no n.
    """

    def __init__(self, *, model: str, message_id: str) -> None:
        self._model = model
        self._message_id = message_id
        self._started = False
        self._done = False
        self._open: int | None = None  # index of the content block still open
        self._open_is_text = False
        self._blocks = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool_calls index -> Anthropic block index
        self._tool_ids: dict[int, str] = {}
        self._stop_reason: str | None = None
        self._usage: Json | None = None

    def feed(self, chunk: Json) -> list[tuple[str, Json]]:
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        events = self._start()
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if text := delta.get("content") or delta.get("refusal"):
                events += self._text(text)
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._stop_reason = _STOP_FROM_OPENAI.get(choice["finish_reason"], "end_turn")
        return events

    def finish(self) -> list[tuple[str, Json]]:
        if self._done:
            return []
        self._done = True
        usage = _anthropic_usage(self._usage)
        final_usage = {"output_tokens": usage.pop("output_tokens")} | (usage if self._usage else {})
        delta = {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None}
        return [
            *self._start(),
            *self._close(),
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage}),
            ("message_stop", {"type": "message_stop"}),
        ]

    def _start(self) -> list[tuple[str, Json]]:
        if self._started:
            return []
        self._started = True
        message: Json = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _anthropic_usage(self._usage),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _open_block(self, block: Json, *, is_text: bool) -> list[tuple[str, Json]]:
        events = self._close()
        self._open, self._open_is_text = self._blocks, is_text
        self._blocks += 1
        return [
            *events,
            ("content_block_start", {"type": "content_block_start", "index": self._open, "content_block": block}),
        ]

    def _close(self) -> list[tuple[str, Json]]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _delta(self, index: int, delta: Json) -> tuple[str, Json]:
        return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _text(self, text: str) -> list[tuple[str, Json]]:
        events: list[tuple[str, Json]] = []
        if self._open is None or not self._open_is_text:
            events = self._open_block({"type": "text", "text": ""}, is_text=True)
        # An open text block is always the newest one.
        return [*events, self._delta(self._blocks - 1, {"type": "text_delta", "text": text})]

    def _tool_call(self, call: Json) -> list[tuple[str, Json]]:
        position, call_id = call.get("index", 0), call.get("id")
        function = call.get("function") or {}
        events: list[tuple[str, Json]] = []
        # Some OpenAI-compatible upstreams reuse index 0 for every call; a new id means a new call.
        if position not in self._tool_blocks or (call_id and call_id != self._tool_ids.get(position)):
            call_id = call_id or f"toolu_{secrets.token_hex(12)}"
            block: Json = {"type": "tool_use", "id": call_id, "name": function.get("name") or "", "input": {}}
            events = self._open_block(block, is_text=False)
            self._tool_blocks[position], self._tool_ids[position] = self._blocks - 1, call_id
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            events.append(self._delta(self._tool_blocks[position], delta))
        return events
