"""Checks of OpenAI-format request bodies, with OpenAI's messages and params.

Only what the gateway relies on, or what an upstream would reject after we
had already reserved capacity for it; everything else passes through.
"""

from __future__ import annotations

from typing import Any

from routing.errors import bad_request

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
RESPONSE_FORMATS = {"text", "json_object", "json_schema"}


def _positive_int(body: dict[str, Any], name: str, *, maximum: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"Invalid '{name}': expected an integer greater than or equal to 1.", param=name)
    if maximum is not None and value > maximum:
        raise bad_request(f"Invalid '{name}': expected at most {maximum}.", param=name)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad_request(f"Invalid '{name}': expected a number between {low:g} and {high:g}.", param=name)


def _messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array of message objects.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad_request(
                f"Invalid 'messages[{index}]': each message needs a 'role' of {', '.join(sorted(ROLES))}.",
                param=f"messages[{index}].role",
            )


def _metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise bad_request("'metadata' must be an object of at most 16 string pairs.", param="metadata")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise bad_request(
                "'metadata' keys must be at most 64 characters and values strings of at most 512.",
                param=f"metadata.{key}",
            )


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise bad_request("'tools' must be an array.", param="tools")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(
                f"Invalid 'tools[{index}]': a function tool needs 'function.name'.", param=f"tools[{index}]"
            )


def chat_request(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    _messages(body.get("messages"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("Invalid 'stream': expected a boolean.", param="stream")
    if body.get("stream_options") is not None and not stream:
        raise bad_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
    _positive_int(body, "n", maximum=128)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _metadata(body.get("metadata"))
    _tools(body.get("tools"))
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type") not in RESPONSE_FORMATS
    ):
        raise bad_request(
            "Invalid 'response_format': type must be text, json_object or json_schema.", param="response_format"
        )
    return body


def embeddings_request(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    value = body.get("input")
    valid = (
        (isinstance(value, str) and value != "")
        or (isinstance(value, list) and value and all(isinstance(i, str) and i for i in value))
        or (isinstance(value, list) and value and all(isinstance(i, int) and not isinstance(i, bool) for i in value))
        or (isinstance(value, list) and value and all(isinstance(i, list) and i for i in value))
    )
    if not valid:
        raise bad_request(
            "'input' must be a non-empty string, array of strings, or array of token arrays.", param="input"
        )
    if body.get("encoding_format", "float") not in ("float", "base64"):
        raise bad_request("Invalid 'encoding_format': expected 'float' or 'base64'.", param="encoding_format")
    _positive_int(body, "dimensions")
    return body
