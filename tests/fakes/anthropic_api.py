"""Anthropic Messages upstream: ``POST /v1/messages`` (+ ``/v1/messages/count_tokens``).

PROTOCOLS.md §2.2. Needs ``x-api-key`` or ``Authorization: Bearer`` (equal to the upstream's
``api_key`` when configured) and ``anthropic-version``; ``max_tokens`` is required. ``no_usage``
does not apply: Anthropic always reports usage.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.common import (
    Call,
    Frame,
    Reply,
    bearer,
    completion_tokens,
    count_words,
    endpoint,
    json_response,
    plan_reply,
    send_stream,
    sse,
)

# status -> (error type, default message) (docs.anthropic.com errors page)
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}


# --- what tests compute ---------------------------------------------------------------------


def _block_words(content: Any) -> int:
    if isinstance(content, str):
        return count_words(content)
    total = 0
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            total += count_words(str(block.get("text", "")))
        elif kind == "tool_use":
            total += count_words(str(block.get("name", ""))) + count_words(json.dumps(block.get("input", {})))
        elif kind == "tool_result":
            total += _block_words(block.get("content"))
    return total


def expected_prompt_tokens(request_json: dict[str, Any]) -> int:
    """Total prompt tokens (``input_tokens`` + cache reads): 3 per message and 3 for a ``system``,
    plus the words of their text (text blocks, tool_use names and JSON inputs, tool_result texts)."""
    system = request_json.get("system")
    total = 3 + _block_words(system) if system else 0
    for message in request_json.get("messages") or []:
        total += 3 + _block_words(message.get("content"))
    return total


def expected_completion_tokens(text: str, tool_call: dict[str, Any] | None = None) -> int:
    """``output_tokens``: one per stream piece (word) of the text, plus 1 + argument pieces for a tool call."""
    return completion_tokens(text, tool_call)


# --- helpers ----------------------------------------------------------------------------------


def _headers(call: Call, request_id: str) -> dict[str, str]:
    return {
        "request-id": request_id,
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3999",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:00Z",
        **call.behave.headers,
    }


def _error(call: Call, status: int, *, message: str | None = None, error_type: str | None = None) -> web.Response:
    default_type, default_message = ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", "Error.")
    )
    request_id = call.new_id("req_")
    body = {
        "type": "error",
        "error": {"type": error_type or default_type, "message": message or default_message},
        "request_id": request_id,
    }
    return json_response(body, status=status, headers=_headers(call, request_id))


def _bad_role(messages: list[Any]) -> int | None:
    # The API takes system-role turns mid-conversation, as Claude Code sends them (PROTOCOLS.md §2.3).
    roles = ("user", "assistant", "system")
    return next((i for i, m in enumerate(messages) if not isinstance(m, dict) or m.get("role") not in roles), None)


def _refusal(call: Call, *, needs_max_tokens: bool) -> web.Response | None:
    """Anthropic's answer to a request it rejects (auth, headers, body), else the scripted error, else None."""
    headers = call.request.headers
    key = headers.get("x-api-key") or bearer(headers.get("authorization"))
    body = call.body if isinstance(call.body, dict) else {}
    messages = body.get("messages")
    max_tokens = body.get("max_tokens")
    problem: tuple[int, str] | None = None
    if not key:
        problem = (401, "x-api-key header is required")
    elif call.state.api_key is not None and key != call.state.api_key:
        problem = (401, "invalid x-api-key")
    elif not headers.get("anthropic-version"):
        problem = (400, "anthropic-version: header is required")
    elif not isinstance(call.body, dict):
        problem = (400, "There was an issue with the JSON body of your request.")
    elif not body.get("model"):
        problem = (400, "model: Field required")
    elif not isinstance(messages, list) or not messages:
        problem = (400, "messages: Field required")
    elif (index := _bad_role(messages)) is not None:
        problem = (400, f"messages.{index}.role: Input should be 'user', 'assistant' or 'system'")
    elif needs_max_tokens and max_tokens is None:
        problem = (400, "max_tokens: Field required")
    elif needs_max_tokens and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        problem = (400, "max_tokens: Input should be greater than or equal to 1")
    if problem is not None:
        return _error(call, problem[0], message=problem[1])
    behave = call.behave
    if behave.status is not None:
        return _error(call, behave.status, message=behave.message, error_type=behave.error_type)
    return None


# --- messages ---------------------------------------------------------------------------------


@endpoint
async def messages(call: Call) -> web.StreamResponse:
    refused = _refusal(call, needs_max_tokens=True)
    if refused is not None:
        return refused
    body: dict[str, Any] = call.body
    request_id = call.new_id("req_")
    streaming = body.get("stream") is True
    if call.behave.malformed:
        return await _malformed(call, request_id, streaming=streaming)
    context = _MessageContext(call, plan_reply(call.behave, max_tokens=body["max_tokens"]))
    if streaming:
        return await _stream(context, request_id)
    return json_response(context.message(), headers=_headers(call, request_id))


async def _malformed(call: Call, request_id: str, *, streaming: bool) -> web.StreamResponse:
    headers = _headers(call, request_id)
    if streaming:
        frame = Frame(b'event: message_start\ndata: {"type": "message_start", "message": {\n\n')
        return await send_stream(call, [frame], headers=headers)
    return web.Response(
        status=200, body=b'{"id": "msg_broken", "content": [', content_type="application/json", headers=headers
    )


@endpoint
async def count_tokens(call: Call) -> web.StreamResponse:
    refused = _refusal(call, needs_max_tokens=False)
    if refused is not None:
        return refused
    return json_response(
        {"input_tokens": expected_prompt_tokens(call.body)}, headers=_headers(call, call.new_id("req_"))
    )


class _MessageContext:
    def __init__(self, call: Call, reply: Reply) -> None:
        self.call = call
        self.reply = reply
        self.id = call.new_id("msg_")
        self.tool_use_id = call.new_id("toolu_")
        self.model = str(call.body["model"])

    def stop_reason(self) -> str:
        behave = self.call.behave
        if behave.finish_reason is not None:
            return behave.finish_reason
        if self.reply.tool_call is not None:
            return "tool_use"
        return "max_tokens" if self.reply.truncated else "end_turn"

    def input_tokens(self) -> tuple[int, int, int, int]:
        """(input_tokens, cache reads, 5-minute writes, 1-hour writes): the prompt's tokens,
        cut in that order; cache reads and writes are outside ``input_tokens``."""
        behave = self.call.behave
        left = expected_prompt_tokens(self.call.body)
        parts = []
        for asked in (behave.cached_tokens, behave.cache_write_5m_tokens, behave.cache_write_1h_tokens):
            parts.append(min(asked, left))
            left -= parts[-1]
        return left, parts[0], parts[1], parts[2]

    def output_tokens(self) -> int:
        return self.reply.tokens + self.call.behave.reasoning_tokens

    def usage(self, output_tokens: int) -> dict[str, Any]:
        input_tokens, cached, write_5m, write_1h = self.input_tokens()
        searches = self.call.behave.server_tool_requests
        tools = {"server_tool_use": {"web_search_requests": searches}} if searches else {}
        return tools | {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": write_5m + write_1h,
            "cache_read_input_tokens": cached,
            "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
        }

    def tool_input(self) -> Any:
        assert self.reply.tool_call is not None
        arguments = self.reply.tool_call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                return json.loads(arguments)
            except ValueError:
                return {}
        return arguments

    def message(self) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if self.reply.pieces or self.reply.tool_call is None:
            content.append({"type": "text", "text": self.reply.text})
        if self.reply.tool_call is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": self.tool_use_id,
                    "name": self.reply.tool_call["name"],
                    "input": self.tool_input(),
                }
            )
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason(),
            "stop_sequence": None,
            "usage": self.usage(self.output_tokens()),
        }


async def _stream(context: _MessageContext, request_id: str) -> web.StreamResponse:
    reply = context.reply
    start: dict[str, Any] = {
        "id": context.id,
        "type": "message",
        "role": "assistant",
        "model": context.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": context.usage(1),
    }
    frames = [Frame(sse({"type": "message_start", "message": start}, event="message_start"))]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if reply.pieces or reply.tool_call is None:
        text_deltas = [{"type": "text_delta", "text": piece} for piece in reply.pieces]
        blocks.append(({"type": "text", "text": ""}, text_deltas))
    if reply.tool_call is not None:
        tool_block = {"type": "tool_use", "id": context.tool_use_id, "name": reply.tool_call["name"], "input": {}}
        json_deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in reply.argument_pieces]
        blocks.append((tool_block, json_deltas))
    for index, (block, deltas) in enumerate(blocks):
        start_event = {"type": "content_block_start", "index": index, "content_block": block}
        frames.append(Frame(sse(start_event, event="content_block_start")))
        if index == 0:
            frames.append(Frame(sse({"type": "ping"}, event="ping")))
        frames += [
            Frame(
                sse({"type": "content_block_delta", "index": index, "delta": delta}, event="content_block_delta"), True
            )
            for delta in deltas
        ]
        frames.append(Frame(sse({"type": "content_block_stop", "index": index}, event="content_block_stop")))
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": context.stop_reason(), "stop_sequence": None},
        "usage": {"output_tokens": context.output_tokens()},
    }
    frames.append(Frame(sse(message_delta, event="message_delta")))
    frames.append(Frame(sse({"type": "message_stop"}, event="message_stop")))
    behave = context.call.behave
    error = {
        "type": "error",
        "error": {"type": behave.error_type or "overloaded_error", "message": behave.message or "Overloaded"},
    }
    return await send_stream(
        context.call, frames, headers=_headers(context.call, request_id), error_frame=sse(error, event="error")
    )


ROUTES = [
    web.post("/v1/messages", messages),
    web.post("/v1/messages/count_tokens", count_tokens),
]
