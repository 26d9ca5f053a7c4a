"""OpenAI-compatible upstream: chat completions, responses, embeddings, models (plus the Azure
deployment routes).

PROTOCOLS.md §1.2-1.6 and §2.3 (the Responses API and its typed stream events). Auth:
``Authorization: Bearer`` (Azure: ``api-key`` or Bearer); the key must equal the upstream's
``api_key`` when one is configured.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.common import (
    Behave,
    Call,
    Frame,
    Reply,
    bearer,
    completion_tokens,
    count_words,
    endpoint,
    json_response,
    malformed_response,
    plan_reply,
    send_stream,
    sse,
    tool_arguments,
)

CREATED = 1_700_000_000
DEFAULT_DIMENSIONS = 8

# status -> (type, code, message) of OpenAI's error bodies (PROTOCOLS.md §1.4)
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    402: ("insufficient_quota", "insufficient_quota", "You exceeded your current quota."),
    403: ("permission_error", None, "You are not allowed to sample from this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", "server_is_overloaded", "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}


# --- what tests compute ---------------------------------------------------------------------


def _content_words(content: Any) -> int:
    if isinstance(content, str):
        return count_words(content)
    if isinstance(content, list):
        return sum(
            count_words(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return 0


def expected_prompt_tokens(request_json: dict[str, Any]) -> int:
    """3 per message + the words of its text (string content, text parts, tool-call names and arguments)."""
    total = 0
    for message in request_json.get("messages") or []:
        total += 3 + _content_words(message.get("content"))
        for tool_call in message.get("tool_calls") or []:
            function = tool_call.get("function") or {}
            total += count_words(str(function.get("name", ""))) + count_words(str(function.get("arguments", "")))
    return total


def expected_completion_tokens(text: str, tool_call: dict[str, Any] | None = None) -> int:
    """Per choice: one per stream piece (word) of the text, plus 1 + argument pieces for a tool call."""
    return completion_tokens(text, tool_call)


def embedding_inputs(request_json: dict[str, Any]) -> list[str | list[int]] | None:
    """The inputs of an embeddings request, one per vector; None when ``input`` is invalid."""
    value = request_json.get("input")
    if isinstance(value, str):
        return [value] if value else None
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, str) and item for item in value):
        return list(value)
    if all(_is_int(item) for item in value):
        return [list(value)]
    if all(isinstance(item, list) and item and all(_is_int(token) for token in item) for item in value):
        return [list(item) for item in value]
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def expected_embedding(item: str | list[int], dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The unit vector served for one input, already rounded to float32 (so base64 and floats agree)."""
    seed = (item if isinstance(item, str) else ",".join(map(str, item))).encode()
    raw = [
        int.from_bytes(hashlib.sha256(seed + index.to_bytes(4, "little")).digest()[:4], "little") / 2**31 - 1
        for index in range(dimensions)
    ]
    norm = sum(value * value for value in raw) ** 0.5 or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(value / norm for value in raw))))


def expected_embedding_tokens(request_json: dict[str, Any]) -> int:
    """Words of each text input; number of tokens of each token-array input."""
    return sum(
        count_words(item) if isinstance(item, str) else len(item) for item in embedding_inputs(request_json) or []
    )


# --- helpers ----------------------------------------------------------------------------------


def _headers(call: Call) -> dict[str, str]:
    return {
        "x-request-id": call.new_id("req_"),
        "openai-version": "2020-10-01",
        "openai-processing-ms": "1",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "10000000",
        "x-ratelimit-remaining-tokens": "9999000",
        "x-ratelimit-reset-tokens": "6ms",
        **call.behave.headers,
    }


def _error(
    call: Call,
    status: int,
    *,
    message: str | None = None,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> web.Response:
    default_type, default_code, default_message = ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error.")
    )
    error = {
        "message": message or default_message,
        "type": error_type or default_type,
        "param": param,
        "code": code or default_code,
    }
    return json_response({"error": error}, status=status, headers=_headers(call))


def _scripted_error(call: Call) -> web.Response:
    behave = call.behave
    assert behave.status is not None
    return _error(call, behave.status, message=behave.message, error_type=behave.error_type, code=behave.code)


def _mask(key: str) -> str:
    return f"{key[:3]}{'*' * 8}{key[-4:]}" if len(key) > 8 else "*" * len(key)


def _auth_error(call: Call, *, azure: bool) -> web.Response | None:
    headers = call.request.headers
    key = bearer(headers.get("authorization"))
    if azure:
        key = headers.get("api-key") or key
        if not key or (call.state.api_key is not None and key != call.state.api_key):
            message = (
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
                "a valid key for an active subscription and use a correct regional API endpoint for your resource."
            )
            return json_response({"error": {"code": "401", "message": message}}, status=401, headers=_headers(call))
        return None
    if not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return _error(call, 401, message=message, code="missing_api_key")
    if call.state.api_key is not None and key != call.state.api_key:
        message = f"Incorrect API key provided: {_mask(key)}. You can find your API key at https://platform.openai.com/account/api-keys."
        return _error(call, 401, message=message, code="invalid_api_key")
    return None


def _prelude(call: Call, *, azure: bool) -> web.Response | None:
    """Auth, then the body must be a JSON object."""
    denied = _auth_error(call, azure=azure)
    if denied is not None:
        return denied
    if not isinstance(call.body, dict):
        return _error(call, 400, message="We could not parse the JSON body of your request.")
    return None


# --- chat completions -----------------------------------------------------------------------


def _chat_problem(body: dict[str, Any], *, needs_model: bool) -> tuple[str, str | None] | None:
    """(message, param) of the first thing OpenAI would reject, or None."""
    messages = body.get("messages")
    n = body.get("n", 1)
    checks: list[tuple[bool, str, str | None]] = [
        (needs_model and not body.get("model"), "you must provide a model parameter", None),
        (not isinstance(messages, list) or not messages, "'messages' must be a non-empty array.", "messages"),
        (
            isinstance(messages, list) and not all(isinstance(m, dict) and "role" in m for m in messages),
            "Each message must be an object with a 'role'.",
            "messages",
        ),
        (
            body.get("stream_options") is not None and body.get("stream") is not True,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        ),
        *(
            (
                body.get(name) is not None and (not _is_int(body[name]) or body[name] < 1),
                f"Invalid '{name}': integer below minimum value.",
                name,
            )
            for name in ("max_tokens", "max_completion_tokens")
        ),
        (n is not None and (not _is_int(n) or not 1 <= n <= 128), "Invalid 'n': must be between 1 and 128.", "n"),
    ]
    return next(((message, param) for failed, message, param in checks if failed), None)


def _chat_refusal(call: Call, *, deployment: str | None) -> web.Response | None:
    refused = _prelude(call, azure=deployment is not None)
    if refused is None:
        problem = _chat_problem(call.body, needs_model=deployment is None)
        if problem is not None:
            refused = _error(call, 400, message=problem[0], param=problem[1])
        elif call.behave.status is not None:
            refused = _scripted_error(call)
    return refused


@endpoint
async def chat_completions(call: Call) -> web.StreamResponse:
    return await _chat(call, deployment=None)


@endpoint
async def azure_chat_completions(call: Call) -> web.StreamResponse:
    if "api-version" not in call.request.query:
        return json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
    return await _chat(call, deployment=call.request.match_info["deployment"])


async def _malformed(call: Call, *, streaming: bool) -> web.StreamResponse:
    if streaming:
        frames = [Frame(b'data: {"id": "chatcmpl-broken", "choices": [\n\n'), Frame(b"data: [DONE]\n\n")]
        return await send_stream(call, frames, headers=_headers(call))
    return malformed_response(_headers(call))


async def _chat(call: Call, *, deployment: str | None) -> web.StreamResponse:
    refused = _chat_refusal(call, deployment=deployment)
    if refused is not None:
        return refused
    body: dict[str, Any] = call.body
    behave = call.behave
    streaming = body.get("stream") is True
    if behave.malformed:
        return await _malformed(call, streaming=streaming)
    response_format = body.get("response_format") or {}
    reply = plan_reply(
        behave,
        json_mode=isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"),
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
    )
    context = _ChatContext(
        call=call,
        completion_id=call.new_id("chatcmpl-"),
        created=int(time.time()),
        model=str(body.get("model") or deployment),
        choices=body.get("n") or 1,
        reply=reply,
        tool_call_id=call.new_id("call_"),
    )
    if streaming:
        stream_options = body.get("stream_options") or {}
        return await _stream(context, include_usage=stream_options.get("include_usage") is True)
    return json_response(context.completion(), headers=_headers(call))


@dataclass
class _ChatContext:
    call: Call
    completion_id: str
    created: int
    model: str
    choices: int
    reply: Reply
    tool_call_id: str

    @property
    def behave(self) -> Behave:
        return self.call.behave

    def finish_reason(self) -> str:
        if self.behave.finish_reason is not None:
            return self.behave.finish_reason
        if self.reply.tool_call is not None:
            return "tool_calls"
        return "length" if self.reply.truncated else "stop"

    def usage(self) -> dict[str, Any]:
        prompt = expected_prompt_tokens(self.call.body)
        completion = self.reply.tokens * self.choices + self.behave.reasoning_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": min(self.behave.cached_tokens, prompt), "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.behave.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.reply.text if self.reply.pieces or self.reply.tool_call is None else None,
            "refusal": None,
        }
        if self.reply.tool_call is not None:
            message["tool_calls"] = [
                {
                    "id": self.tool_call_id,
                    "type": "function",
                    "function": {
                        "name": self.reply.tool_call["name"],
                        "arguments": tool_arguments(self.reply.tool_call),
                    },
                }
            ]
        choices = [
            {"index": index, "message": message, "logprobs": None, "finish_reason": self.finish_reason()}
            for index in range(self.choices)
        ]
        payload: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
            "system_fingerprint": "fp_fake",
        }
        if self.behave.no_usage:
            del payload["usage"]
        return payload

    def chunk(self, choices: list[dict[str, Any]], *, include_usage: bool, usage: Any = None) -> bytes:
        payload: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if include_usage:
            payload["usage"] = usage
        return sse(payload)


def _delta(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


async def _stream(context: _ChatContext, *, include_usage: bool) -> web.StreamResponse:
    reply = context.reply
    indices = range(context.choices)

    def frame(choices: list[dict[str, Any]], *, content: bool = False) -> Frame:
        return Frame(context.chunk(choices, include_usage=include_usage), content=content)

    first = {"role": "assistant", "content": "" if reply.pieces or reply.tool_call is None else None, "refusal": None}
    frames = [frame([_delta(index, first) for index in indices])]
    frames += [frame([_delta(index, {"content": piece})], content=True) for piece in reply.pieces for index in indices]
    if reply.tool_call is not None:
        header = {
            "index": 0,
            "id": context.tool_call_id,
            "type": "function",
            "function": {"name": reply.tool_call["name"], "arguments": ""},
        }
        frames += [frame([_delta(index, {"tool_calls": [header]})]) for index in indices]
        frames += [
            frame([_delta(index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})], content=True)
            for piece in reply.argument_pieces
            for index in indices
        ]
    frames.append(frame([_delta(index, {}, context.finish_reason()) for index in indices]))
    if include_usage and not context.behave.no_usage:
        frames.append(Frame(context.chunk([], include_usage=True, usage=context.usage())))
    frames.append(Frame(b"data: [DONE]\n\n"))
    behave = context.behave
    error = {
        "message": behave.message or "The server had an error while processing your request. Sorry about that!",
        "type": behave.error_type or "server_error",
        "param": None,
        "code": behave.code,
    }
    return await send_stream(context.call, frames, headers=_headers(context.call), error_frame=sse({"error": error}))


# --- embeddings and models ------------------------------------------------------------------


@endpoint
async def embeddings(call: Call) -> web.StreamResponse:
    return await _embeddings(call, deployment=None)


@endpoint
async def azure_embeddings(call: Call) -> web.StreamResponse:
    if "api-version" not in call.request.query:
        return json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
    return await _embeddings(call, deployment=call.request.match_info["deployment"])


def _embeddings_refusal(call: Call, *, deployment: str | None) -> web.Response | None:
    refused = _prelude(call, azure=deployment is not None)
    if refused is not None:
        return refused
    body: dict[str, Any] = call.body
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    problem: tuple[str, str | None] | None = None
    if deployment is None and not body.get("model"):
        problem = ("you must provide a model parameter", None)
    elif embedding_inputs(body) is None:
        url = "https://platform.openai.com/docs/api-reference"
        problem = (f"'$.input' is invalid. Please check the API reference: {url}.", "input")
    elif not _is_int(dimensions) or dimensions < 1:
        problem = ("Invalid 'dimensions': must be a positive integer.", "dimensions")
    elif body.get("encoding_format") not in (None, "float", "base64"):
        problem = ("Invalid 'encoding_format'.", "encoding_format")
    if problem is not None:
        return _error(call, 400, message=problem[0], param=problem[1])
    return _scripted_error(call) if call.behave.status is not None else None


async def _embeddings(call: Call, *, deployment: str | None) -> web.StreamResponse:
    refused = _embeddings_refusal(call, deployment=deployment)
    if refused is not None:
        return refused
    if call.behave.malformed:
        return malformed_response(_headers(call))
    body: dict[str, Any] = call.body
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    data = []
    for index, item in enumerate(embedding_inputs(body) or []):
        vector = expected_embedding(item, dimensions)
        packed = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        encoded = packed if body.get("encoding_format") == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = expected_embedding_tokens(body)
    payload: dict[str, Any] = {
        "object": "list",
        "data": data,
        "model": str(body.get("model") or deployment),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    if call.behave.no_usage:
        del payload["usage"]
    return json_response(payload, headers=_headers(call))


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "system"}


@endpoint
async def list_models(call: Call) -> web.StreamResponse:
    denied = _auth_error(call, azure=False)
    if denied is not None:
        return denied
    if call.behave.status is not None:
        return _scripted_error(call)
    return json_response(
        {"object": "list", "data": [_model(name) for name in call.state.models]}, headers=_headers(call)
    )


@endpoint
async def retrieve_model(call: Call) -> web.StreamResponse:
    denied = _auth_error(call, azure=False)
    if denied is not None:
        return denied
    if call.behave.status is not None:
        return _scripted_error(call)
    model_id = call.request.match_info["model"]
    if model_id not in call.state.models:
        message = f"The model `{model_id}` does not exist or you do not have access to it."
        return _error(call, 404, message=message, code="model_not_found")
    return json_response(_model(model_id), headers=_headers(call))


# --- responses (PROTOCOLS.md §1.6, §2.3) ---------------------------------------------------


def _item_words(item: Any) -> int:
    if not isinstance(item, dict):
        return 0
    content = item.get("content")
    words = count_words(content) if isinstance(content, str) else 0
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            words += count_words(part["text"])
    for name in ("name", "arguments", "input"):
        if isinstance(item.get(name), str):
            words += count_words(item[name])
    if isinstance(item.get("output"), str):
        words += count_words(item["output"])
    return words


def expected_responses_input_tokens(request_json: dict[str, Any]) -> int:
    """3 per input item (and for the instructions) + the words of their text, names and arguments."""
    instructions = request_json.get("instructions")
    total = 3 + count_words(instructions) if isinstance(instructions, str) and instructions else 0
    items = request_json.get("input")
    if isinstance(items, str):
        return total + 3 + count_words(items)
    return total + sum(3 + _item_words(item) for item in items or [])


def _responses_problem(body: dict[str, Any]) -> tuple[str, str | None] | None:
    """(message, param) of the first thing OpenAI would reject, or None."""
    items = body.get("input")
    tokens = body.get("max_output_tokens")
    checks: list[tuple[bool, str, str | None]] = [
        (not body.get("model"), "Missing required parameter: 'model'.", "model"),
        (
            not isinstance(items, str | list)
            or (isinstance(items, list) and not all(isinstance(i, dict) for i in items)),
            "Invalid 'input': expected a string or an array of input items.",
            "input",
        ),
        (
            tokens is not None and (not _is_int(tokens) or tokens < 16),
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.",
            "max_output_tokens",
        ),
    ]
    return next(((message, param) for failed, message, param in checks if failed), None)


@endpoint
async def responses(call: Call) -> web.StreamResponse:
    refused = _prelude(call, azure=False)
    if refused is None and (problem := _responses_problem(call.body)) is not None:
        refused = _error(call, 400, message=problem[0], param=problem[1])
    if refused is None and call.behave.status is not None:
        refused = _scripted_error(call)
    if refused is not None:
        return refused
    body: dict[str, Any] = call.body
    streaming = body.get("stream") is True
    if call.behave.malformed:
        if streaming:
            return await send_stream(
                call, [Frame(b'event: response.created\ndata: {"type": "resp\n\n')], headers=_headers(call)
            )
        return malformed_response(_headers(call))
    text_format = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    json_mode = isinstance(text_format, dict) and text_format.get("type") in ("json_object", "json_schema")
    context = _ResponsesContext(
        call=call,
        response_id=call.new_id("resp_"),
        created=int(time.time()),
        model=str(body.get("model")),
        reply=plan_reply(call.behave, json_mode=json_mode, max_tokens=body.get("max_output_tokens")),
        call_id=call.new_id("call_"),
    )
    if streaming:
        return await _responses_stream(context)
    return json_response(context.response(), headers=_headers(call))


@dataclass
class _ResponsesContext:
    call: Call
    response_id: str
    created: int
    model: str
    reply: Reply
    call_id: str

    @property
    def behave(self) -> Behave:
        return self.call.behave

    def incomplete_reason(self) -> str | None:
        if self.behave.finish_reason in ("max_output_tokens", "content_filter"):
            return self.behave.finish_reason
        return "max_output_tokens" if self.reply.truncated else None

    def usage(self) -> dict[str, Any]:
        prompt = expected_responses_input_tokens(self.call.body)
        output = self.reply.tokens + self.behave.reasoning_tokens
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": min(self.behave.cached_tokens, prompt)},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": self.behave.reasoning_tokens},
            "total_tokens": prompt + output,
        }

    def items(self) -> list[dict[str, Any]]:
        """The output items, finished: reasoning (when it reasoned), the message, the function call."""
        items: list[dict[str, Any]] = []
        if self.behave.reasoning_tokens:
            items.append(self.reasoning())
        if self.reply.pieces:
            items.append(self.message(self.reply.text, done=True))
        if self.reply.tool_call is not None:
            items.append(self.function_call(tool_arguments(self.reply.tool_call), done=True))
        return items

    def reasoning(self) -> dict[str, Any]:
        # OpenAI's reasoning is opaque: an empty summary, and the encrypted state to send back.
        return {"id": "rs_fake", "type": "reasoning", "summary": [], "encrypted_content": "gAAAAfake-encrypted"}

    def message(self, text: str, *, done: bool) -> dict[str, Any]:
        status = ("incomplete" if self.incomplete_reason() else "completed") if done else "in_progress"
        content = [_output_text(text)] if done else []
        return {"id": "msg_fake", "type": "message", "status": status, "role": "assistant", "content": content}

    def function_call(self, arguments: str, *, done: bool) -> dict[str, Any]:
        assert self.reply.tool_call is not None
        item = {
            "id": "fc_fake",
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "arguments": arguments,
            "call_id": self.call_id,
            "name": self.reply.tool_call["name"],
        }
        if self.reply.tool_call.get("namespace"):
            item["namespace"] = self.reply.tool_call["namespace"]
        return item

    def response(self, status: str | None = None, *, done: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = self.call.body
        reason = self.incomplete_reason()
        if status is None:
            status = "incomplete" if reason else "completed"
        payload: dict[str, Any] = {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": reason} if reason and done else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": self.model,
            "output": self.items() if done else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None} | (body.get("reasoning") or {}),
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": self.usage() if done and not self.behave.no_usage else None,
            "metadata": body.get("metadata") or {},
        }
        return payload


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class _Events:
    """Typed Responses events as SSE frames, numbered in order."""

    def __init__(self) -> None:
        self.sequence = 0

    def frame(self, kind: str, *, content: bool = False, **fields: Any) -> Frame:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return Frame(sse(event, event=kind), content=content)


async def _responses_stream(context: _ResponsesContext) -> web.StreamResponse:
    """OpenAI's order: created, in_progress; per item added, its parts and deltas, done; completed."""
    events, reply = _Events(), context.reply
    frames = [
        events.frame("response.created", response=context.response("in_progress", done=False)),
        events.frame("response.in_progress", response=context.response("in_progress", done=False)),
    ]
    index = 0
    where: dict[str, Any]
    if context.behave.reasoning_tokens:
        item = context.reasoning()
        frames.append(events.frame("response.output_item.added", output_index=index, item=item))
        frames.append(events.frame("response.output_item.done", output_index=index, item=item))
        index += 1
    if reply.pieces:
        where = {"item_id": "msg_fake", "output_index": index, "content_index": 0}
        frames.append(
            events.frame("response.output_item.added", output_index=index, item=context.message("", done=False))
        )
        frames.append(events.frame("response.content_part.added", **where, part=_output_text("")))
        frames += [
            events.frame("response.output_text.delta", content=True, **where, delta=piece, logprobs=[])
            for piece in reply.pieces
        ]
        frames.append(events.frame("response.output_text.done", **where, text=reply.text, logprobs=[]))
        frames.append(events.frame("response.content_part.done", **where, part=_output_text(reply.text)))
        frames.append(
            events.frame("response.output_item.done", output_index=index, item=context.message(reply.text, done=True))
        )
        index += 1
    if reply.tool_call is not None:
        where = {"item_id": "fc_fake", "output_index": index}
        frames.append(
            events.frame("response.output_item.added", output_index=index, item=context.function_call("", done=False))
        )
        frames += [
            events.frame("response.function_call_arguments.delta", content=True, **where, delta=piece)
            for piece in reply.argument_pieces
        ]
        arguments = tool_arguments(reply.tool_call)
        frames.append(events.frame("response.function_call_arguments.done", **where, arguments=arguments))
        item = context.function_call(arguments, done=True)
        frames.append(events.frame("response.output_item.done", output_index=index, item=item))
    final = context.response()
    frames.append(events.frame(f"response.{final['status']}", response=final))
    behave = context.behave
    message = behave.message or "The server had an error while processing your request. Sorry about that!"
    failed = {
        **context.response("failed", done=False),
        "error": {"code": behave.code or "server_error", "message": message},
    }
    error = {"type": "error", "code": behave.code or "server_error", "message": message, "param": None}
    error_frames = sse({**error, "sequence_number": 0}, event="error") + sse(
        {"type": "response.failed", "sequence_number": 1, "response": failed}, event="response.failed"
    )
    return await send_stream(context.call, frames, headers=_headers(context.call), error_frame=error_frames)


ROUTES = [
    web.post("/v1/chat/completions", chat_completions),
    web.post("/v1/responses", responses),
    web.post("/v1/embeddings", embeddings),
    web.get("/v1/models", list_models),
    web.get("/v1/models/{model}", retrieve_model),
    web.post("/openai/deployments/{deployment}/chat/completions", azure_chat_completions),
    web.post("/openai/deployments/{deployment}/embeddings", azure_embeddings),
]
