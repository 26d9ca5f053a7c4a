"""Checks of Anthropic Messages request bodies, as strict as the OpenAI ones.

What the translator to the internal OpenAI format reads must have the type
and range Anthropic documents; a mistake is a 400 naming the field the way
Anthropic does (``messages.0.content.1.source``). Unknown fields and blocks
the translator passes or drops (thinking, citations, cache_control) are not
this module's business.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError, bad_request
from gateway.validation import MAX_OUTPUT_TOKENS, is_int, is_number, is_one_of, kind_of

# Claude Code sends system-role messages in the middle of a conversation (PROTOCOLS.md §2.3).
ROLES = {"user", "assistant", "system"}
MAX_USER_ID = 256  # Anthropic's own limit on metadata.user_id


def _wrong(path: str, expected: str, value: Any) -> GatewayError:
    return bad_request(f"{path}: expected {expected}, got {kind_of(value)}.", param=path)


def _string(container: dict[str, Any], name: str, path: str, *, required: bool = False) -> None:
    value = container.get(name)
    if (value is not None or required) and not isinstance(value, str):
        raise _wrong(f"{path}.{name}", "a string", value)


def _object(container: dict[str, Any], name: str, path: str, *, required: bool = False) -> dict[str, Any]:
    value = container.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _wrong(f"{path}.{name}", "an object", value)
    return value


def _blocks(value: Any, path: str) -> list[dict[str, Any]]:
    """A list of content blocks, each an object with a string ``type``."""
    if not isinstance(value, list):
        raise _wrong(path, "a string or a list of content blocks", value)
    for index, block in enumerate(value):
        if not isinstance(block, dict):
            raise _wrong(f"{path}.{index}", "an object", block)
        _string(block, "type", f"{path}.{index}", required=True)
    return value


def _image(block: dict[str, Any], path: str) -> None:
    source = _object(block, "source", path, required=True)
    _string(source, "type", f"{path}.source", required=True)
    if source["type"] == "base64":
        _string(source, "media_type", f"{path}.source", required=True)
        _string(source, "data", f"{path}.source", required=True)
    elif source["type"] == "url":
        _string(source, "url", f"{path}.source", required=True)


def _tool_result(block: dict[str, Any], path: str) -> None:
    _string(block, "tool_use_id", path, required=True)
    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    for index, inner in enumerate(_blocks(content, f"{path}.content")):
        _block(inner, f"{path}.content.{index}")


def _block(block: dict[str, Any], path: str) -> None:
    kind = block["type"]
    if kind == "text":
        _string(block, "text", path, required=True)
    elif kind == "image":
        _image(block, path)
    elif kind == "tool_result":
        _tool_result(block, path)
    elif kind == "tool_use":
        _string(block, "id", path, required=True)
        _string(block, "name", path, required=True)
        _object(block, "input", path, required=True)
    # Other blocks are the translator's: it drops thinking and refuses what it cannot translate.


def _messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: at least one message is required.", param="messages")
    for index, message in enumerate(messages):
        path = f"messages.{index}"
        if not isinstance(message, dict):
            raise _wrong(path, "an object", message)
        if not is_one_of(message.get("role"), ROLES):
            raise bad_request(f"{path}.role: expected 'user', 'assistant' or 'system'.", param=f"{path}.role")
        content = message.get("content")
        if not content and (message["role"] != "assistant" or index + 1 < len(messages)):
            # Anthropic's rule: only a final assistant turn (a prefill) may be empty.
            raise bad_request(f"{path}.content: must not be empty.", param=f"{path}.content")
        if isinstance(content, str):
            continue
        for position, block in enumerate(_blocks(content, f"{path}.content")):
            _block(block, f"{path}.content.{position}")


def _system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    for index, block in enumerate(_blocks(system, "system")):
        if block["type"] != "text":
            raise bad_request(f"system.{index}.type: expected 'text'.", param=f"system.{index}.type")
        _string(block, "text", f"system.{index}", required=True)


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _wrong("tools", "a list", tools)
    for index, tool in enumerate(tools):
        path = f"tools.{index}"
        if not isinstance(tool, dict):
            raise _wrong(path, "an object", tool)
        _string(tool, "type", path)
        _string(tool, "name", path, required=True)
        if tool.get("type", "custom") == "custom":
            _string(tool, "description", path)
            _object(tool, "input_schema", path, required=True)


def _tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise _wrong("tool_choice", "an object", choice)
    _string(choice, "type", "tool_choice", required=True)
    _string(choice, "name", "tool_choice")
    flag = choice.get("disable_parallel_tool_use")
    if flag is not None and not isinstance(flag, bool):
        raise _wrong("tool_choice.disable_parallel_tool_use", "a boolean", flag)


def _metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise _wrong("metadata", "an object", metadata)
    user_id = metadata.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or len(user_id) > MAX_USER_ID):
        raise _wrong("metadata.user_id", f"a string of at most {MAX_USER_ID} characters", user_id)


def _sampling(body: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not is_number(value) or not 0 <= value <= 1):
            raise bad_request(f"{name}: expected a number from 0 to 1.", param=name)
    top_k = body.get("top_k")
    if top_k is not None and (not is_int(top_k) or not 0 <= top_k <= MAX_OUTPUT_TOKENS):
        raise bad_request(f"top_k: expected an integer from 0 to {MAX_OUTPUT_TOKENS}.", param="top_k")


def messages_request(body: Any) -> dict[str, Any]:
    body = count_tokens_request(body)
    max_tokens = body.get("max_tokens")
    if not is_int(max_tokens) or not 1 <= max_tokens <= MAX_OUTPUT_TOKENS:
        raise bad_request(f"max_tokens: expected an integer from 1 to {MAX_OUTPUT_TOKENS}.", param="max_tokens")
    return body


def count_tokens_request(body: Any) -> dict[str, Any]:
    """What a Messages request and a token count share: all but max_tokens."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model: a model name is required.", param="model")
    _messages(body.get("messages"))
    _system(body.get("system"))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _wrong("stream", "a boolean", stream)
    _sampling(body)
    stop = body.get("stop_sequences")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(item, str) for item in stop)):
        raise _wrong("stop_sequences", "a list of strings", stop)
    _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    _metadata(body.get("metadata"))
    return body
