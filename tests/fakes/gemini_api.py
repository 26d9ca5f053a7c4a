"""Gemini upstream: ``POST /v1beta/models/{model}:generateContent`` / ``:streamGenerateContent`` / ``:countTokens``.

PROTOCOLS.md §3.2. The key comes in ``x-goog-api-key`` or the ``key`` query parameter. As Google
does, a missing key is 403 PERMISSION_DENIED and a wrong one (when the upstream has ``api_key``)
400 INVALID_ARGUMENT with reason API_KEY_INVALID. ``:streamGenerateContent?alt=sse`` sends
``data: {...}\\r\\n\\r\\n`` events; without ``alt=sse`` it streams one JSON array.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.common import (
    Call,
    Frame,
    Reply,
    completion_tokens,
    count_words,
    endpoint,
    json_response,
    malformed_response,
    plan_reply,
    send_stream,
    sse,
)

STATUSES: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    501: ("UNIMPLEMENTED", "Operation is not implemented."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
SEPARATOR = "\r\n\r\n"


# --- what tests compute ---------------------------------------------------------------------


def _parts_words(parts: Any) -> int:
    total = 0
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            total += count_words(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict):
            total += count_words(str(call.get("name", ""))) + count_words(json.dumps(call.get("args", {})))
    return total


def expected_prompt_tokens(request_json: dict[str, Any]) -> int:
    """``promptTokenCount``: 3 per content and 3 for a ``systemInstruction``, plus the words of their
    text parts and functionCall names and JSON args."""
    system = request_json.get("systemInstruction")
    total = 3 + _parts_words(system.get("parts")) if isinstance(system, dict) else 0
    for content in request_json.get("contents") or []:
        total += 3 + _parts_words(content.get("parts") if isinstance(content, dict) else None)
    return total


def expected_completion_tokens(text: str, tool_call: dict[str, Any] | None = None) -> int:
    """``candidatesTokenCount``: one per stream piece (word) of the text, plus 1 + argument pieces for a tool call."""
    return completion_tokens(text, tool_call)


# --- helpers ----------------------------------------------------------------------------------


def _headers(call: Call) -> dict[str, str]:
    return {"x-goog-request-id": call.new_id("req_"), **call.behave.headers}


def _error_body(status: int, *, message: str | None = None, status_name: str | None = None) -> dict[str, Any]:
    default_status, default_message = STATUSES.get(
        status, ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT", "Error.")
    )
    return {"error": {"code": status, "message": message or default_message, "status": status_name or default_status}}


def _error(call: Call, status: int, *, message: str | None = None, status_name: str | None = None) -> web.Response:
    return json_response(
        _error_body(status, message=message, status_name=status_name), status=status, headers=_headers(call)
    )


def _key_refusal(call: Call) -> web.Response | None:
    key = call.request.headers.get("x-goog-api-key") or call.request.query.get("key")
    if not key:
        message = (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        )
        return _error(call, 403, message=message)
    if call.state.api_key is not None and key != call.state.api_key:
        body = _error_body(400, message="API key not valid. Please pass a valid API key.")
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ]
        return json_response(body, status=400, headers=_headers(call))
    return None


def _body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    if not all(isinstance(content, dict) and content.get("role", "user") in ("user", "model") for content in contents):
        return "Please use a valid role: user, model."
    if not all(isinstance(content.get("parts"), list) and content["parts"] for content in contents):
        return "* GenerateContentRequest.contents.parts: contents.parts must not be empty.\n"
    return None


def _refusal(call: Call, action: str) -> web.Response | None:
    """Google's answer to an unknown method, a missing/wrong key or a bad body, else the scripted error."""
    if action not in ("generateContent", "streamGenerateContent", "countTokens"):
        return _error(call, 404, message=f"Method not found: {action or '(none)'}.")
    refused = _key_refusal(call)
    if refused is None and (problem := _body_problem(call.body)) is not None:
        refused = _error(call, 400, message=problem)
    behave = call.behave
    if refused is None and behave.status is not None:
        refused = _error(call, behave.status, message=behave.message, status_name=behave.error_type)
    return refused


# --- generateContent --------------------------------------------------------------------------


@endpoint
async def model_action(call: Call) -> web.StreamResponse:
    model, _, action = call.request.match_info["name"].partition(":")
    refused = _refusal(call, action)
    if refused is not None:
        return refused
    if action == "countTokens":
        return json_response({"totalTokens": expected_prompt_tokens(call.body)}, headers=_headers(call))
    sse_mode = call.request.query.get("alt") == "sse"
    streaming = action == "streamGenerateContent"
    if call.behave.malformed:
        return await _malformed(call, streaming=streaming, sse_mode=sse_mode)
    config = call.body.get("generationConfig") or {}
    reply = plan_reply(
        call.behave,
        json_mode=config.get("responseMimeType") == "application/json",
        max_tokens=config.get("maxOutputTokens"),
    )
    context = _Context(call, reply, model)
    if streaming:
        return await _stream(context, sse_mode=sse_mode)
    return json_response(context.response(context.parts(), final=True), headers=_headers(call))


async def _malformed(call: Call, *, streaming: bool, sse_mode: bool) -> web.StreamResponse:
    if not streaming:
        return malformed_response(_headers(call))
    data = f'data: {{"candidates": [{SEPARATOR}' if sse_mode else '[{"candidates": ['
    return await send_stream(call, [Frame(data.encode())], headers=_headers(call), content_type=_stream_type(sse_mode))


def _stream_type(sse_mode: bool) -> str:
    return "text/event-stream" if sse_mode else "application/json; charset=UTF-8"


class _Context:
    def __init__(self, call: Call, reply: Reply, model: str) -> None:
        self.call = call
        self.reply = reply
        self.model = model
        self.response_id = call.new_id("resp")

    def function_call(self) -> dict[str, Any]:
        assert self.reply.tool_call is not None
        arguments = self.reply.tool_call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                arguments = {}
        return {"functionCall": {"name": self.reply.tool_call["name"], "args": arguments}}

    def parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if self.reply.pieces or self.reply.tool_call is None:
            parts.append({"text": self.reply.text})
        if self.reply.tool_call is not None:
            parts.append(self.function_call())
        return parts

    def usage(self) -> dict[str, Any]:
        behave = self.call.behave
        prompt = expected_prompt_tokens(self.call.body)
        candidates = self.reply.tokens
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates + behave.reasoning_tokens,
        }
        if behave.reasoning_tokens:
            usage["thoughtsTokenCount"] = behave.reasoning_tokens
        if behave.cached_tokens:
            usage["cachedContentTokenCount"] = min(behave.cached_tokens, prompt)
        return usage

    def finish_reason(self) -> str:
        if self.call.behave.finish_reason is not None:
            return self.call.behave.finish_reason
        return "MAX_TOKENS" if self.reply.truncated else "STOP"

    def response(self, parts: list[dict[str, Any]], *, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if final:
            candidate["finishReason"] = self.finish_reason()
        candidate["index"] = 0
        payload: dict[str, Any] = {"candidates": [candidate]}
        if final and not self.call.behave.no_usage:
            payload["usageMetadata"] = self.usage()
        payload["modelVersion"] = self.model
        payload["responseId"] = self.response_id
        return payload


async def _stream(context: _Context, *, sse_mode: bool) -> web.StreamResponse:
    events = [(context.response([{"text": piece}], final=False), True) for piece in context.reply.pieces]
    if context.reply.tool_call is not None:
        events.append((context.response([context.function_call()], final=False), True))
    events.append((context.response([{"text": ""}], final=True), False))
    error = _error_body(503, message=context.call.behave.message, status_name=context.call.behave.error_type)
    if sse_mode:
        frames = [Frame(sse(payload, separator=SEPARATOR), content) for payload, content in events]
        error_frame = sse(error, separator=SEPARATOR)
    else:
        frames = [
            Frame((("[" if index == 0 else ",\r\n") + json.dumps(payload)).encode(), content)
            for index, (payload, content) in enumerate(events)
        ]
        frames.append(Frame(b"]"))
        error_frame = (",\r\n" + json.dumps(error) + "]").encode()
    return await send_stream(
        context.call,
        frames,
        headers=_headers(context.call),
        content_type=_stream_type(sse_mode),
        error_frame=error_frame,
    )


ROUTES = [
    web.post("/v1beta/models/{name}", model_action),
    web.post("/v1/models/{name}", model_action),
]
