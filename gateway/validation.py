"""Checks of OpenAI-format request bodies, with OpenAI's messages and params.

Only what the gateway or a translator reads, or what an upstream would reject
after we had already reserved capacity for it; everything else passes
through. Each check names the field the way OpenAI does
(``messages[0].content[1].text``), so a client sees what to fix; a body that
passes is safe for the hold arithmetic, the simulator and every translator.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from gateway.errors import GatewayError, bad_request
from providers.translate import MAX_DEPTH, nests_deeper

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
RESPONSE_FORMATS = {"text", "json_object", "json_schema"}

# More than any model's output window; with n <= 128 the completion bound the
# hold is priced on stays below 2**27 tokens, far from overflowing anything.
MAX_OUTPUT_TOKENS = 1_000_000
MAX_CHOICES = 128
MAX_DIMENSIONS = 16_384  # several times the widest embedding model
MAX_TOKEN_ID = 2**31 - 1  # a signed 32-bit id: more than any vocabulary holds
INT64 = 2**63 - 1

_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def kind_of(value: Any) -> str:
    return _KINDS.get(type(value), "a value")


def invalid_type(param: str, expected: str, value: Any) -> GatewayError:
    return bad_request(
        f"Invalid type for '{param}': expected {expected}, but got {kind_of(value)} instead.",
        param=param,
        code="invalid_type",
    )


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_one_of(value: Any, choices: set[str]) -> bool:
    # A set lookup of a JSON array or object would raise: they are unhashable.
    return isinstance(value, str) and value in choices


def bounded_depth(value: Any) -> Any:
    """``value``, unless it nests deeper than MAX_DEPTH (a 400)."""
    if nests_deeper(value):
        raise bad_request(f"The request body nests deeper than {MAX_DEPTH} levels of arrays and objects.")
    return value


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if not is_int(value) or not low <= value <= high:
        raise bad_request(f"Invalid '{name}': expected an integer from {low} to {high}.", param=name)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not is_number(value) or not low <= value <= high:
        raise bad_request(f"Invalid '{name}': expected a number between {low:g} and {high:g}.", param=name)


def _optional(container: dict[str, Any], name: str, kind: type, param: str) -> Any:
    """``container[name]``, which may be absent or null, or else must be a ``kind``."""
    value = container.get(name)
    # Exact types: JSON gives no subclasses, and True must not pass for an integer.
    if value is not None and type(value) is not kind:
        raise invalid_type(param, _KINDS[kind], value)
    return value


def _messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array of message objects.", param="messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid_type(param, "an object", message)
        if not is_one_of(message.get("role"), ROLES):
            raise bad_request(
                f"Invalid '{param}': each message needs a 'role' of {', '.join(sorted(ROLES))}.",
                param=f"{param}.role",
            )
        _content(message.get("content"), f"{param}.content")
        _optional(message, "name", str, f"{param}.name")
        _optional(message, "tool_call_id", str, f"{param}.tool_call_id")
        _tool_calls(message.get("tool_calls"), f"{param}.tool_calls")


def _content(content: Any, param: str) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid_type(param, "a string or an array of content parts", content)
    for index, part in enumerate(content):
        _content_part(part, f"{param}[{index}]")


def _content_part(part: Any, param: str) -> None:
    if not isinstance(part, dict):
        raise invalid_type(param, "an object", part)
    kind = part.get("type")
    if not isinstance(kind, str):
        raise invalid_type(f"{param}.type", "a string", kind)
    if kind in {"text", "refusal"}:
        if not isinstance(part.get(kind), str):
            raise invalid_type(f"{param}.{kind}", "a string", part.get(kind))
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise invalid_type(f"{param}.image_url.url", "a string", url)
    elif kind in {"input_audio", "file"}:
        detail = _optional(part, kind, dict, f"{param}.{kind}") or {}
        for name in ("data", "format", "file_data", "file_id", "filename"):
            _optional(detail, name, str, f"{param}.{kind}.{name}")
    # Other part types pass: the upstream (or its translator) judges them.


def _tool_calls(calls: Any, param: str) -> None:
    if calls is None:
        return
    if not isinstance(calls, list):
        raise invalid_type(param, "an array", calls)
    for index, call in enumerate(calls):
        where = f"{param}[{index}]"
        if not isinstance(call, dict):
            raise invalid_type(where, "an object", call)
        _optional(call, "id", str, f"{where}.id")
        _optional(call, "type", str, f"{where}.type")
        function = call.get("function")
        if not isinstance(function, dict):
            raise invalid_type(f"{where}.function", "an object", function)
        if not isinstance(function.get("name"), str):
            raise invalid_type(f"{where}.function.name", "a string", function.get("name"))
        _optional(function, "arguments", str, f"{where}.function.arguments")


def metadata(value: Any) -> None:
    """OpenAI's ``metadata``: at most 16 string pairs (chat completions and responses alike)."""
    if value is None:
        return
    if not isinstance(value, dict) or len(value) > 16:
        raise bad_request("'metadata' must be an object of at most 16 string pairs.", param="metadata")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 64 or len(item) > 512:
            raise bad_request(
                "'metadata' keys must be at most 64 characters and values strings of at most 512.",
                param=f"metadata.{key}",
            )


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise invalid_type(param, "an object", tool)
        if _optional(tool, "type", str, f"{param}.type") not in (None, "function"):
            continue  # a newer kind of tool: the upstream (or its translator) judges it
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(f"Invalid '{param}': a function tool needs 'function.name'.", param=param)
        _optional(function, "description", str, f"{param}.function.description")
        _optional(function, "parameters", dict, f"{param}.function.parameters")


def _tool_choice(choice: Any) -> None:
    if choice is None or isinstance(choice, str):
        return
    if not isinstance(choice, dict):
        raise invalid_type("tool_choice", "a string or an object", choice)
    _optional(choice, "type", str, "tool_choice.type")
    function = _optional(choice, "function", dict, "tool_choice.function") or {}
    _optional(function, "name", str, "tool_choice.function.name")


def _response_format(response_format: Any) -> None:
    if response_format is None:
        return
    if not isinstance(response_format, dict) or not is_one_of(response_format.get("type"), RESPONSE_FORMATS):
        raise bad_request(
            "Invalid 'response_format': type must be text, json_object or json_schema.", param="response_format"
        )
    schema = _optional(response_format, "json_schema", dict, "response_format.json_schema") or {}
    _optional(schema, "name", str, "response_format.json_schema.name")
    _optional(schema, "schema", dict, "response_format.json_schema.schema")


def _stream(body: dict[str, Any]) -> None:
    stream = _optional(body, "stream", bool, "stream")
    options = body.get("stream_options")
    if options is None:
        return
    if not stream:
        raise bad_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    if not isinstance(options, dict):
        raise invalid_type("stream_options", "an object", options)
    _optional(options, "include_usage", bool, "stream_options.include_usage")


def _stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise invalid_type("stop", "a string or an array of strings", stop)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def chat_request(body: Any) -> dict[str, Any]:
    body = _object(body)
    _messages(body.get("messages"))
    _stream(body)
    _integer(body, "max_tokens", 1, MAX_OUTPUT_TOKENS)
    _integer(body, "max_completion_tokens", 1, MAX_OUTPUT_TOKENS)
    _integer(body, "n", 1, MAX_CHOICES)
    _integer(body, "seed", -INT64 - 1, INT64)
    _integer(body, "top_k", 0, MAX_OUTPUT_TOKENS)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "frequency_penalty", -2, 2)
    _number(body, "presence_penalty", -2, 2)
    _stop(body.get("stop"))
    for name in ("user", "prompt_cache_key"):
        _optional(body, name, str, name)
    _optional(body, "parallel_tool_calls", bool, "parallel_tool_calls")
    metadata(body.get("metadata"))
    _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    _response_format(body.get("response_format"))
    return body


def _embedding_input(value: Any) -> bool:
    def tokens(items: Any) -> bool:
        return isinstance(items, list) and bool(items) and all(is_int(i) and 0 <= i <= MAX_TOKEN_ID for i in items)

    if isinstance(value, str):
        return value != ""
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(i, str) and i for i in value) or tokens(value) or all(tokens(i) for i in value)


def embeddings_request(body: Any) -> dict[str, Any]:
    body = _object(body)
    if not _embedding_input(body.get("input")):
        raise bad_request(
            "'input' must be a non-empty string, array of strings, or array of token arrays.", param="input"
        )
    if body.get("encoding_format") is not None and not is_one_of(body["encoding_format"], {"float", "base64"}):
        raise bad_request("Invalid 'encoding_format': expected 'float' or 'base64'.", param="encoding_format")
    _integer(body, "dimensions", 1, MAX_DIMENSIONS)
    _optional(body, "user", str, "user")
    return body
