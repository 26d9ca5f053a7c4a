"""OpenAI Chat Completions <-> Google Gemini ``generateContent`` (PROTOCOLS §3.2).

OneFlow works in the OpenAI format; these functions shape a Gemini request
from it and turn Gemini's answers, whole or streamed, back into it. Gemini
function calls carry no ids, so OneFlow mints ``call_…`` ids for them.

Everything here is a pure function of decoded JSON; no I/O.
"""

from __future__ import annotations

import json
import mimetypes
import re
import secrets
import time
from typing import Any

from oneflow.lib.errors import InvalidInput
from providers.tokens import openai_usage
from providers.translate import nests_deeper
from providers.translate.anthropic import UpstreamStreamError, append_turn, drop_none, tool_arguments

Json = dict[str, Any]

_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[^;,]*)*;base64,(?P<data>.*)", re.DOTALL)

# OpenAI history carries no thought signatures, and Gemini 3 rejects replayed function calls without
# one; Google documents this value for history the model did not produce itself.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_CONTENT_FILTER_REASONS = (
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "OTHER",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
)
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "MALFORMED_FUNCTION_CALL": "stop",
    **dict.fromkeys(_CONTENT_FILTER_REASONS, "content_filter"),
}
_STATUS_BY_GRPC = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def finish_reason_from_gemini(reason: str | None, *, has_tool_calls: bool = False) -> str:
    if has_tool_calls:
        return "tool_calls"
    return _FINISH.get(reason or "", "stop")


def _bad_message(index: int, problem: str) -> InvalidInput:
    return InvalidInput(f"messages[{index}]: {problem}", param="messages")


def _mint_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


# --- OpenAI request -> Gemini request --------------------------------------------------------


def openai_to_gemini_request(body: Json) -> Json:
    system, contents = _contents(body.get("messages"))
    request = {
        "contents": contents,
        "systemInstruction": {"parts": system} if system else None,
        "generationConfig": _generation_config(body) or None,
        "tools": _tools(body.get("tools")),
        "toolConfig": _tool_config(body.get("tool_choice")),
    }
    return drop_none(request)


def _contents(messages: Any) -> tuple[list[Json], list[Json]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages must be a non-empty list.", param="messages")
    system: list[Json] = []
    contents: list[Json] = []
    tool_names: dict[str, str] = {}  # tool_call_id -> function name, for the functionResponse parts
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad_message(index, "each message must be an object.")
        role = message.get("role")
        if role in {"system", "developer"}:
            system += _parts(message.get("content"), index)
        elif role == "user":
            append_turn(contents, "user", _parts(message.get("content"), index), field="parts")
        elif role == "assistant":
            append_turn(contents, "model", _model_parts(message, index, tool_names), field="parts")
        elif role == "tool":
            append_turn(contents, "user", [_function_response(message, index, tool_names)], field="parts")
        else:
            raise _bad_message(index, f"role {role!r} is not supported for Gemini models.")
    if not contents:
        raise InvalidInput("messages must contain at least one user or assistant message.", param="messages")
    return system, contents


def _parts(content: Any, index: int) -> list[Json]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _bad_message(index, "content must be a string or a list of parts.")
    parts = [_part(part, index) for part in content]
    return [part for part in parts if part is not None]


def _part(part: Any, index: int) -> Json | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in {"text", "refusal"}:
        text = part.get(kind)
        return {"text": text} if text else None  # Gemini rejects empty parts
    if kind == "image_url":
        image = part.get("image_url")
        return _media_part(image.get("url") if isinstance(image, dict) else image, index)
    if kind == "input_audio" and (part.get("input_audio") or {}).get("data"):
        audio = part["input_audio"]
        return {"inlineData": {"mimeType": f"audio/{audio.get('format') or 'wav'}", "data": audio["data"]}}
    if kind == "file" and (part.get("file") or {}).get("file_data"):
        return _media_part(part["file"]["file_data"], index)
    raise _bad_message(index, f"content part type {kind!r} is not supported for Gemini models.")


def _media_part(url: Any, index: int) -> Json:
    if not isinstance(url, str):
        raise _bad_message(index, "the media URL must be a string.")
    if match := _DATA_URI.fullmatch(url):
        return {"inlineData": {"mimeType": match["mime"], "data": match["data"]}}
    if url.startswith(("https://", "http://", "gs://")):
        mime_type, _ = mimetypes.guess_type(url.split("?", 1)[0])
        return {"fileData": drop_none({"fileUri": url, "mimeType": mime_type})}
    raise _bad_message(index, "media must be an http(s) URL or a base64 data URI.")


def _model_parts(message: Json, index: int, tool_names: dict[str, str]) -> list[Json]:
    parts = _parts(message.get("content"), index)
    for position, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        if not function.get("name"):
            raise _bad_message(index, "each tool call needs function.name.")
        tool_names[call.get("id") or ""] = function["name"]
        part: Json = {
            "functionCall": {"name": function["name"], "args": tool_arguments(function.get("arguments"), index)}
        }
        if position == 0:  # Gemini signs only the first call of a parallel batch
            part["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(part)
    return parts


def _function_response(message: Json, index: int, tool_names: dict[str, str]) -> Json:
    name = tool_names.get(message.get("tool_call_id") or "") or message.get("name")
    if not name:
        raise _bad_message(index, "tool_call_id matches no earlier assistant tool call.")
    text = _text_of(message.get("content"))
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        parsed = None
    # Structured results reach the model as structure; anything else (too deep to send, too) stays the text it was.
    result = parsed if isinstance(parsed, dict | list) and not nests_deeper(parsed) else text
    return {"functionResponse": {"name": name, "response": {"content": result}}}


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _generation_config(body: Json) -> Json:
    stop = body.get("stop")
    max_tokens = body.get("max_completion_tokens")
    config = {
        "temperature": body.get("temperature"),
        "topP": body.get("top_p"),
        "topK": body.get("top_k"),
        "maxOutputTokens": max_tokens if max_tokens is not None else body.get("max_tokens"),
        "stopSequences": [stop] if isinstance(stop, str) else (list(stop) if stop else None),
        "candidateCount": body.get("n"),
        "seed": body.get("seed"),
    }
    return drop_none(config) | _response_format(body.get("response_format"))


def _response_format(response_format: Any) -> Json:
    kind = (response_format or {}).get("type")
    if kind in {None, "text"}:
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = dict((response_format.get("json_schema") or {}).get("schema") or {"type": "object"})
        schema.pop("strict", None)  # an OpenAI switch, not JSON Schema; Gemini would reject it
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    raise InvalidInput(f"response_format type {kind!r} is not supported.", param="response_format")


def _tools(tools: Any) -> list[Json] | None:
    if not tools:
        return None
    return [{"functionDeclarations": [_declaration(tool) for tool in tools]}]


def _declaration(tool: Any) -> Json:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise InvalidInput("Only function tools are supported for Gemini models.", param="tools")
    function = tool.get("function") or {}
    if not function.get("name"):
        raise InvalidInput("Each tool needs function.name.", param="tools")
    parameters = function.get("parameters") or {}
    # parametersJsonSchema takes JSON Schema as OpenAI clients write it (additionalProperties, $schema,
    # const...), which the OpenAPI-subset `parameters` field rejects. A schema without properties is
    # left out: Gemini refuses an OBJECT with none.
    return drop_none(
        {
            "name": function["name"],
            "description": function.get("description"),
            "parametersJsonSchema": parameters if parameters.get("properties") else None,
        }
    )


def _tool_config(choice: Any) -> Json | None:
    if choice is None:
        return None
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    if isinstance(choice, str) and choice in modes:
        return {"functionCallingConfig": {"mode": modes[choice]}}
    name = ((choice.get("function") or {}).get("name")) if isinstance(choice, dict) else None
    if not name:
        raise InvalidInput("tool_choice must be none, auto, required or a named function.", param="tool_choice")
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


# --- Gemini response -> OpenAI response ------------------------------------------------------


def gemini_to_openai_response(resp: Json, *, model: str) -> Json:
    candidates = resp.get("candidates") or []
    # No candidate at all means the prompt itself was blocked (promptFeedback.blockReason).
    choices = [_choice(candidate, position) for position, candidate in enumerate(candidates)] or [
        {"index": 0, "message": _message([], [], []), "logprobs": None, "finish_reason": "content_filter"}
    ]
    return {
        "id": f"chatcmpl-{resp.get('responseId') or secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(resp.get("usageMetadata") or {}),
        "system_fingerprint": None,
    }


def _choice(candidate: Json, position: int) -> Json:
    texts, thoughts, calls = _split_parts(candidate)
    finish = finish_reason_from_gemini(candidate.get("finishReason"), has_tool_calls=bool(calls))
    message = _message(texts, thoughts, calls)
    return {"index": candidate.get("index", position), "message": message, "logprobs": None, "finish_reason": finish}


def _split_parts(candidate: Json) -> tuple[list[str], list[str], list[Json]]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[Json] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "functionCall" in part:
            calls.append(_tool_call(part["functionCall"]))
        elif part.get("thought"):
            thoughts.append(part.get("text") or "")
        elif "text" in part:
            texts.append(part["text"])
    return texts, thoughts, calls


def _tool_call(call: Json) -> Json:
    arguments = json.dumps(call.get("args") or {})
    return {"id": _mint_call_id(), "type": "function", "function": {"name": call.get("name"), "arguments": arguments}}


def _message(texts: list[str], thoughts: list[str], calls: list[Json]) -> Json:
    message: Json = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    return message


def _usage(meta: Json) -> Json:
    # candidatesTokenCount leaves out thinking, which is billed as output all the same.
    thoughts = meta.get("thoughtsTokenCount") or 0
    return openai_usage(
        prompt=meta.get("promptTokenCount") or 0,
        completion=(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached=meta.get("cachedContentTokenCount") or 0,
        reasoning=thoughts,
    )


class GeminiStreamToOpenAI:
    """Turns streamed Gemini ``GenerateContentResponse`` dicts into OpenAI chunks.

    Feed each response in order; each call returns the chunks to send now.
    Gemini sends function calls whole, so each becomes one complete tool_calls
    delta. Usage chunks are the caller's: read ``usage`` once ``finished``.
    """

    def __init__(self, *, model: str, completion_id: str, created: int) -> None:
        self._frame = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._started: set[int] = set()
        self._ended: set[int] = set()
        self._tool_calls: dict[int, int] = {}  # choice index -> tool calls emitted so far
        self._usage_metadata: Json | None = None

    @property
    def usage(self) -> Json | None:
        return _usage(self._usage_metadata) if self._usage_metadata is not None else None

    @property
    def finished(self) -> bool:
        return bool(self._started) and self._started <= self._ended

    def feed(self, data: Json) -> list[Json]:
        if isinstance(data.get("error"), dict):
            status, message = gemini_error_to_status(data)
            raise UpstreamStreamError(message, error_type=str(data["error"].get("status") or status))
        if isinstance(data.get("usageMetadata"), dict):
            self._usage_metadata = data["usageMetadata"]  # cumulative: the last one is the total
        candidates = data.get("candidates") or []
        if not candidates and (data.get("promptFeedback") or {}).get("blockReason"):
            candidates = [{"index": 0, "finishReason": "PROHIBITED_CONTENT"}]
        chunks: list[Json] = []
        for position, candidate in enumerate(candidates):
            chunks += self._candidate(candidate.get("index", position), candidate)
        return chunks

    def _chunk(self, index: int, delta: Json, finish_reason: str | None = None) -> Json:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._frame, "choices": [choice]}

    def _candidate(self, index: int, candidate: Json) -> list[Json]:
        chunks: list[Json] = []
        if index not in self._started:
            self._started.add(index)
            chunks.append(self._chunk(index, {"role": "assistant", "content": ""}))
        texts, thoughts, calls = _split_parts(candidate)
        if thoughts:
            chunks.append(self._chunk(index, {"reasoning_content": "".join(thoughts)}))
        if "".join(texts):
            chunks.append(self._chunk(index, {"content": "".join(texts)}))
        for call in calls:
            position = self._tool_calls[index] = self._tool_calls.get(index, -1) + 1
            chunks.append(self._chunk(index, {"tool_calls": [{"index": position, **call}]}))
        if candidate.get("finishReason") and index not in self._ended:
            self._ended.add(index)
            finish = finish_reason_from_gemini(candidate["finishReason"], has_tool_calls=index in self._tool_calls)
            chunks.append(self._chunk(index, {}, finish))
        return chunks


def gemini_error_to_status(body: Json | list[Any]) -> tuple[int, str]:
    """The HTTP status and message of a Gemini error body ``{"error": {"code", "message", "status"}}``."""
    if isinstance(body, list):  # streamGenerateContent without alt=sse wraps everything in an array
        body = body[0] if body and isinstance(body[0], dict) else {}
    error = body.get("error")
    if not isinstance(error, dict):
        return 502, "The upstream returned an error without a description."
    message = str(error.get("message") or error.get("status") or "The upstream returned an error.")
    code = error.get("code")
    if isinstance(code, int) and 400 <= code <= 599:
        return code, message
    return _STATUS_BY_GRPC.get(str(error.get("status")), 502), message
