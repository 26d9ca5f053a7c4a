"""Requests between the OpenAI and Anthropic formats, both ways.

Upstream (PROTOCOLS §3.1): an OpenAI request to OneFlow becomes an Anthropic
Messages request to an Anthropic model. Client (PROTOCOLS §2.2): a customer's
request to OneFlow's ``/v1/messages`` becomes an internal OpenAI request.

Everything here is a pure function of decoded JSON; no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from oneflow.lib.errors import InvalidInput
from providers.translate import MAX_DEPTH, nests_deeper
from providers.translate.anthropic_format import (
    JSON_TOOL,
    Json,
    _bad_message,
    _openai_tool_call,
    drop_none,
)

_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[^;,]*)*;base64,(?P<data>.*)", re.DOTALL)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[\d\s().-]+")


# --- Upstream: OpenAI request -> Anthropic request -------------------------------------------


def openai_to_anthropic_request(body: Json, *, upstream_model: str, default_max_tokens: int = 4096) -> Json:
    if body.get("n") not in (None, 1):
        raise InvalidInput("Anthropic models return a single choice; n must be 1.", param="n")
    system, turns = _anthropic_turns(body.get("messages"))
    request = {
        "model": upstream_model,
        "max_tokens": _first_set(body.get("max_completion_tokens"), body.get("max_tokens"), default_max_tokens),
        "system": system or None,
        "messages": turns,
        "stop_sequences": _stop_list(body.get("stop")),
        "temperature": _clamp(body.get("temperature")),
        "top_p": body.get("top_p"),
        "metadata": _metadata(body.get("user")),
        "stream": body.get("stream"),
    }
    return drop_none(request) | _tool_fields(body, turns)


def _first_set(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _stop_list(stop: Any) -> list[str] | None:
    if isinstance(stop, str):
        return [stop]
    return list(stop) if stop else None


def _clamp(temperature: Any) -> Any:
    # OpenAI allows up to 2, Anthropic up to 1: the nearest value beats a 400.
    if isinstance(temperature, int | float):
        return min(max(temperature, 0), 1)
    return None


def _metadata(user: Any) -> Json | None:
    # Anthropic asks for an opaque id; never forward what looks like personal data.
    if not isinstance(user, str) or not user or _EMAIL.fullmatch(user):
        return None
    if _PHONE.fullmatch(user) and sum(char.isdigit() for char in user) >= 7:
        return None
    return {"user_id": user}


def _anthropic_turns(messages: Any) -> tuple[list[Json], list[Json]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages must be a non-empty list.", param="messages")
    system: list[Json] = []
    turns: list[Json] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad_message(index, "each message must be an object.")
        role = message.get("role")
        if role in {"system", "developer"}:
            system += _content_blocks(message.get("content"), index)
        elif role == "user":
            append_turn(turns, "user", _content_blocks(message.get("content"), index))
        elif role == "assistant":
            append_turn(turns, "assistant", _assistant_blocks(message, index))
        elif role == "tool":
            append_turn(turns, "user", [_tool_result_block(message, index)])
        else:
            raise _bad_message(index, f"role {role!r} is not supported for Anthropic models.")
    if not turns:
        raise InvalidInput("messages must contain at least one user or assistant message.", param="messages")
    _trim_prefill(turns)
    return system, turns


def append_turn(turns: list[Json], role: str, items: list[Json], *, field: str = "content") -> None:
    """Adds a turn, merging it into the previous one of the same role.

    Anthropic and Gemini both require alternating roles; their turns differ
    only in the name of the list (``content`` blocks, ``parts``).
    """
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][field].extend(items)
    else:
        turns.append({"role": role, field: list(items)})


def _trim_prefill(turns: list[Json]) -> None:
    # A final assistant turn is a prefill, which Anthropic rejects if it ends in whitespace.
    last = turns[-1]
    if last["role"] == "assistant" and last["content"][-1]["type"] == "text":
        last["content"][-1]["text"] = last["content"][-1]["text"].rstrip()


def _content_blocks(content: Any, index: int) -> list[Json]:
    if content is None:
        return []
    if isinstance(content, str):
        parts: list[Any] = [{"type": "text", "text": content}]
    elif isinstance(content, list):
        parts = content
    else:
        raise _bad_message(index, "content must be a string or a list of parts.")
    blocks = [_content_block(part, index) for part in parts]
    return [block for block in blocks if block is not None]


def _content_block(part: Any, index: int) -> Json | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in {"text", "refusal"}:
        text = part.get(kind) or ""
        if not isinstance(text, str):
            raise _bad_message(index, f"a {kind} part's {kind} must be a string.")
        # Anthropic rejects text blocks without visible text.
        block: Json | None = {"type": "text", "text": text} if text.strip() else None
    elif kind == "image_url":
        block = {"type": "image", "source": _image_source(part.get("image_url"), index)}
    elif kind == "file":
        block = _document_block(part.get("file") or {}, index)
    else:
        raise _bad_message(index, f"content part type {kind!r} is not supported for Anthropic models.")
    if block is not None and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _image_source(image_url: Any, index: int) -> Json:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise _bad_message(index, "image_url.url must be a string.")
    if match := _DATA_URI.fullmatch(url):
        return {"type": "base64", "media_type": match["mime"], "data": match["data"]}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise _bad_message(index, "image_url.url must be an http(s) URL or a base64 data URI.")


def _document_block(file: Json, index: int) -> Json:
    match = _DATA_URI.fullmatch(file.get("file_data") or "")
    if not match or match["mime"] != "application/pdf":
        raise _bad_message(index, "only base64 PDF file parts (file.file_data) are supported for Anthropic models.")
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": match["data"]}}


def _assistant_blocks(message: Json, index: int) -> list[Json]:
    blocks = _content_blocks(message.get("content"), index)
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        if not call.get("id") or not function.get("name"):
            raise _bad_message(index, "each tool call needs an id and function.name.")
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": tool_arguments(function.get("arguments"), index),
            },
        )
    return blocks


def tool_arguments(arguments: Any, index: int) -> Json:
    """The object a tool call's ``arguments`` string encodes (Anthropic and Gemini want it decoded)."""
    try:
        value = json.loads(arguments) if arguments else {}
    except (TypeError, ValueError, RecursionError) as exc:
        raise _bad_message(index, "tool_calls[].function.arguments is not valid JSON.") from exc
    if not isinstance(value, dict):
        raise _bad_message(index, "tool_calls[].function.arguments must encode a JSON object.")
    if nests_deeper(value):
        raise _bad_message(index, f"tool_calls[].function.arguments nests deeper than {MAX_DEPTH} levels.")
    return value


def _tool_result_block(message: Json, index: int) -> Json:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad_message(index, "a tool message needs its tool_call_id.")
    content = message.get("content")
    result: Json = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        if content:
            result["content"] = content
    elif blocks := _content_blocks(content, index):
        result["content"] = blocks
    return result


def _tool_fields(body: Json, turns: list[Json]) -> Json:
    tools = [_anthropic_tool(tool) for tool in body.get("tools") or []]
    choice = _anthropic_tool_choice(body.get("tool_choice"))
    schema = _json_schema(body.get("response_format"))
    if schema is not None:
        # Forcing the JSON tool would rule out the caller's own tools, so it is forced only when alone.
        if not tools:
            choice = {"type": "tool", "name": JSON_TOOL}
        tools.append({"name": JSON_TOOL, "description": "Respond with the JSON answer.", "input_schema": schema})
    elif not tools:
        # Anthropic refuses tool_use/tool_result history unless tools are defined; declare them, unusable.
        tools = _stub_tools(turns)
        choice = {"type": "none"} if tools else None
    if not tools:
        return {}
    if body.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice = {**choice, "disable_parallel_tool_use": True}
    return drop_none({"tools": tools, "tool_choice": choice})


def _anthropic_tool(tool: Any) -> Json:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise InvalidInput("Only function tools are supported for Anthropic models.", param="tools")
    function = tool.get("function") or {}
    if not function.get("name"):
        raise InvalidInput("Each tool needs function.name.", param="tools")
    return drop_none(
        {
            "name": function["name"],
            "description": function.get("description"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        },
    )


def _anthropic_tool_choice(choice: Any) -> Json | None:
    if choice is None:
        return None
    simple = {"auto": "auto", "required": "any", "none": "none"}
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}
    name = ((choice.get("function") or {}).get("name")) if isinstance(choice, dict) else None
    if not name:
        raise InvalidInput("tool_choice must be none, auto, required or a named function.", param="tool_choice")
    return {"type": "tool", "name": name}


def _json_schema(response_format: Any) -> Json | None:
    kind = (response_format or {}).get("type")
    if kind in {None, "text"}:
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    raise InvalidInput(f"response_format type {kind!r} is not supported.", param="response_format")


def _stub_tools(turns: list[Json]) -> list[Json]:
    names = dict.fromkeys(
        block["name"] for turn in turns for block in turn["content"] if block["type"] == "tool_use" and block["name"]
    )
    return [
        {"name": name, "description": "Used earlier in this conversation.", "input_schema": {"type": "object"}}
        for name in names
    ]


# --- Client: Anthropic request -> OpenAI request ---------------------------------------------


def anthropic_request_to_openai(body: Json) -> Json:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidInput("model: a model name is required.", param="model")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidInput("max_tokens: a positive integer is required.", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages: at least one message is required.", param="messages")
    converted = _system_messages(body.get("system"))
    for index, message in enumerate(messages):
        converted += _openai_messages(message, index)
    stream = body.get("stream") is True
    request = {
        "model": model,
        "messages": converted,
        "max_tokens": max_tokens,
        "stop": _stop_sequences(body.get("stop_sequences")),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "user": (body.get("metadata") or {}).get("user_id"),
        "stream": body.get("stream"),
        # The Anthropic stream ends with usage, so the OpenAI side must always report it.
        "stream_options": {"include_usage": True} if stream else None,
        # Server tools run at Anthropic only: elsewhere the model goes without them.
        "tools": [
            _openai_tool(tool, index) for index, tool in enumerate(body.get("tools") or []) if not _is_server_tool(tool)
        ]
        or None,
    }
    return drop_none(request) | _openai_tool_choice(body.get("tool_choice"))


def _system_messages(system: Any) -> list[Json]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if isinstance(system, list) and all(_is_text_block(block) for block in system):
        return [{"role": "system", "content": "\n".join(block.get("text") or "" for block in system)}]
    raise InvalidInput("system: must be a string or a list of text blocks.", param="system")


def _is_text_block(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)


def _stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise InvalidInput("stop_sequences: must be a list of strings.", param="stop_sequences")
    return stop or None


# Thinking has no place in Chat Completions; server tools' calls and results ran at Anthropic.
_DROPPED_ASSISTANT_BLOCKS = frozenset({"thinking", "redacted_thinking", "server_tool_use", "mcp_tool_use"})


def _openai_messages(message: Any, index: int) -> list[Json]:
    if not isinstance(message, dict):
        raise _bad_message(index, "each message must be an object.")
    role, content = message.get("role"), message.get("content")
    if role not in {"user", "assistant", "system"}:
        raise _bad_message(index, f"role must be 'user', 'assistant' or 'system', not {role!r}.")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list) or not all(isinstance(block, dict) for block in blocks):
        raise _bad_message(index, "content must be a string or a list of content blocks.")
    if role == "system":
        return [_from_system_blocks(blocks, index)]
    return _from_user_blocks(blocks, index) if role == "user" else [_from_assistant_blocks(blocks, index)]


def _from_system_blocks(blocks: list[Json], index: int) -> Json:
    """A system message where the conversation has it: OpenAI takes them anywhere."""
    if not all(_is_text_block(block) for block in blocks):
        raise _bad_message(index, "a system message may hold text blocks only.")
    return {"role": "system", "content": "\n".join(block.get("text") or "" for block in blocks)}


def _from_user_blocks(blocks: list[Json], index: int) -> list[Json]:
    # OpenAI wants tool results as their own messages right after the assistant's calls.
    tool_messages: list[Json] = []
    parts: list[Json] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            parts.append(_image_part(block, index))
        elif kind == "tool_result":
            text, images = _tool_result_content(block.get("content"), index)
            tool_messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
            parts += images  # OpenAI tool messages hold text only; images follow as user content
        elif kind == "document":
            parts.append(_document_part(block, index))
        elif kind == "search_result":
            parts.append({"type": "text", "text": _search_result_text(block)})
        else:
            raise _bad_message(index, f"content block type {kind!r} is not supported in a user message.")
    if not parts:
        return tool_messages
    only_text = len(parts) == 1 and parts[0]["type"] == "text"
    return [*tool_messages, {"role": "user", "content": parts[0]["text"] if only_text else parts}]


def _image_part(block: Json, index: int) -> Json:
    source = block.get("source")
    source = source if isinstance(source, dict) else {}
    if source.get("type") == "base64" and source.get("media_type") and source.get("data"):
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif source.get("type") == "url" and source.get("url"):
        url = source["url"]
    else:
        raise _bad_message(index, "image source must be base64 (media_type, data) or url.")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: Json, index: int) -> Json:
    """A document block: a base64 PDF becomes a file part, text becomes text; a PDF
    by URL or a Files API id has no form in Chat Completions and is refused."""
    source: Json = block["source"] if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    if kind == "base64" and source.get("media_type") == "application/pdf" and isinstance(source.get("data"), str):
        file = {"file_data": f"data:application/pdf;base64,{source['data']}", "filename": block.get("title")}
        return {"type": "file", "file": drop_none(file)}
    if kind == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if kind == "content" and isinstance(source.get("content"), list):
        return {"type": "text", "text": "\n".join(_texts(source["content"]))}
    raise _bad_message(index, f"a document from a {kind!r} source has no form this model's deployment accepts.")


def _search_result_text(block: Json) -> str:
    content = block.get("content")
    texts = _texts(content if isinstance(content, list) else [])
    return "\n".join([str(block.get("title") or ""), str(block.get("source") or ""), *texts]).strip()


def _texts(blocks: list[Any]) -> list[str]:
    return [str(b.get("text") or "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]


def _tool_result_content(content: Any, index: int) -> tuple[str, list[Json]]:
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise _bad_message(index, "tool_result content must be a string or a list of blocks.")
    texts = [block.get("text") or "" for block in content if block.get("type") == "text"]
    images = [_image_part(block, index) for block in content if block.get("type") == "image"]
    return "\n".join(texts), images


def _from_assistant_blocks(blocks: list[Json], index: int) -> Json:
    texts: list[str] = []
    calls: list[Json] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append(_openai_tool_call(block))
        elif kind not in _DROPPED_ASSISTANT_BLOCKS and not str(kind).endswith("_tool_result"):
            raise _bad_message(index, f"content block type {kind!r} is not supported in an assistant message.")
    message: Json = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _is_server_tool(tool: Any) -> bool:
    """A tool Anthropic runs itself (``web_search_20250305``, ``code_execution_…``): typed, not custom."""
    return isinstance(tool, dict) and tool.get("type", "custom") != "custom"


def _openai_tool(tool: Any, index: int) -> Json:
    if not isinstance(tool, dict) or not tool.get("name"):
        raise InvalidInput(f"tools[{index}]: each tool needs a name.", param="tools")
    function = {"name": tool["name"], "description": tool.get("description"), "parameters": tool.get("input_schema")}
    return {"type": "function", "function": drop_none(function)}


def _openai_tool_choice(choice: Any) -> Json:
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    simple = {"auto": "auto", "any": "required", "none": "none"}
    if kind in simple:
        fields: Json = {"tool_choice": simple[kind]}
    elif kind == "tool" and choice.get("name"):
        fields = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise InvalidInput("tool_choice: type must be auto, any, tool (with name) or none.", param="tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        fields["parallel_tool_calls"] = False
    return fields
