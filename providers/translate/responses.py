"""OpenAI Responses requests -> the internal format (OpenAI Chat Completions).

Client (PROTOCOLS §1.6, §2.3): a customer calls OneFlow's ``/v1/responses``. A
deployment that does not speak the Responses API gets the request as a chat
completion (``responses_request_to_openai``); its answer goes back as a Response
object (``providers.translate.responses_answer``) or as the typed event stream
(``providers.translate.responses_stream``). docs/translation.md has the rule for
every field: what maps, what is dropped, what is refused.

Everything here is a pure function of decoded JSON; no I/O.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oneflow.lib.errors import InvalidInput

Json = dict[str, Any]

# A namespaced tool reaches Chat Completions, which has no namespaces, as one function
# named "<namespace>__<name>" (OpenAI allows [a-zA-Z0-9_-] in function names).
NAMESPACE_SEPARATOR = "__"
# The single argument a custom (freeform) tool's input travels in as a function call.
CUSTOM_INPUT = "input"
# Input items that record work done on OpenAI's servers (or reasoning only OpenAI can
# read): dropped, since another provider can neither read nor resume it. What the model
# learned from them is in the messages that followed.
DROPPED_ITEMS = frozenset(
    {
        "reasoning",
        "web_search_call",
        "file_search_call",
        "image_generation_call",
        "code_interpreter_call",
        "mcp_list_tools",
        "mcp_call",
        "mcp_approval_request",
        "mcp_approval_response",
        "tool_search_call",
        "tool_search_output",
    }
)
# Request fields with a chat field of the same name and meaning.
PASSED = ("temperature", "top_p", "user", "metadata", "prompt_cache_key", "safety_identifier", "service_tier")
# OneFlow's own routing preferences (gateway.strategies), read at admission.
ONEFLOW_FIELDS = ("provider",)


@dataclass(frozen=True, slots=True)
class ToolName:
    """The Responses tool a chat function stands for."""

    name: str
    namespace: str | None = None
    custom: bool = False  # a custom (freeform) tool: its input travels as {"input": "..."}


@dataclass(frozen=True, slots=True)
class Translation:
    """A Responses request as the internal chat request, and what rendering the answer needs."""

    body: Json  # the internal (OpenAI chat) request
    request: Mapping[str, Any]  # the Responses request as the client sent it
    tools: Mapping[str, ToolName] = field(default_factory=dict)  # chat function name -> its tool

    def tool(self, chat_name: str) -> ToolName:
        return self.tools.get(chat_name) or ToolName(chat_name)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# --- Client: Responses request -> internal chat request ---------------------------------------


def responses_request_to_openai(raw: Mapping[str, Any]) -> Translation:
    """The chat request a deployment that does not speak Responses gets.

    Raises InvalidInput (a 400 naming the field) for what Chat Completions cannot
    carry and dropping would change the meaning of: stored prompts, images and
    files by OpenAI file id, client-run tool calls of special kinds, a forced
    tool that was dropped.
    """
    if raw.get("prompt") is not None:
        raise InvalidInput(
            "Stored prompts ('prompt') live at OpenAI; this model's deployment cannot resolve them. "
            "Send the prompt's text as 'instructions' and 'input'.",
            param="prompt",
        )
    tools, names = _tools(raw.get("tools"))
    body: Json = {"model": raw.get("model"), "messages": _messages(raw, names)}
    if raw.get("stream") is True:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if raw.get("max_output_tokens") is not None:
        body["max_completion_tokens"] = raw["max_output_tokens"]
    body |= _tool_fields(raw, tools, names)
    body |= _text_fields(raw.get("text"))
    reasoning = raw.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        body["reasoning_effort"] = reasoning["effort"]
    for name in (*PASSED, *ONEFLOW_FIELDS):
        if raw.get(name) is not None:
            body[name] = raw[name]
    return Translation(body=body, request=raw, tools=names)


# --- tools ---


def _tools(tools: Any) -> tuple[list[Json], dict[str, ToolName]]:
    if tools is None:
        return [], {}
    if not isinstance(tools, list):
        raise InvalidInput("'tools' must be an array.", param="tools")
    chat: list[Json] = []
    names: dict[str, ToolName] = {}
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidInput(f"'{where}' must be an object.", param=where)
        kind = tool.get("type")
        if kind in ("function", "custom"):
            _add_tool(chat, names, tool, where, namespace=None)
        elif kind == "namespace":
            namespace = tool.get("name")
            inner = tool.get("tools")
            if not isinstance(namespace, str) or not namespace or not isinstance(inner, list):
                raise InvalidInput(f"'{where}': a namespace needs a 'name' and a 'tools' array.", param=where)
            for position, member in enumerate(inner):
                member_where = f"{where}.tools[{position}]"
                if not isinstance(member, dict) or member.get("type") not in ("function", "custom"):
                    raise InvalidInput(f"'{member_where}' must be a function or custom tool.", param=member_where)
                _add_tool(chat, names, member, member_where, namespace=namespace)
        # Any other type is dropped, and the model is not told of it: hosted tools (web_search,
        # file_search, code_interpreter, mcp, ...) run on OpenAI's servers; computer, local_shell,
        # shell and apply_patch have call items of their own, which Chat Completions cannot carry;
        # and a kind this gateway has not met yet is better left out than refused (Codex CLI
        # declares its tools of every kind on every request).
    return chat, names


def _add_tool(chat: list[Json], names: dict[str, ToolName], tool: Json, where: str, *, namespace: str | None) -> None:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"'{where}.name' is required.", param=f"{where}.name")
    custom = tool.get("type") == "custom"
    chat_name = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
    if chat_name in names:
        raise InvalidInput(f"'{where}': the tool name '{chat_name}' is declared twice.", param=f"{where}.name")
    names[chat_name] = ToolName(name, namespace, custom)
    function: Json = {"name": chat_name}
    description = tool.get("description")
    if custom:
        function["description"] = _custom_description(description, tool.get("format"))
        function["parameters"] = {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string"}},
            "required": [CUSTOM_INPUT],
            "additionalProperties": False,
        }
    else:
        if isinstance(description, str):
            function["description"] = description
        if tool.get("parameters") is not None:
            function["parameters"] = tool["parameters"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
    chat.append({"type": "function", "function": function})


def _custom_description(description: Any, format_: Any) -> str:
    """A custom tool's description, with the grammar its input must follow (Chat Completions
    has no grammar-constrained tools, so the model is told it in words)."""
    text = description if isinstance(description, str) else ""
    if isinstance(format_, dict) and format_.get("type") == "grammar" and isinstance(format_.get("definition"), str):
        syntax = format_.get("syntax") if isinstance(format_.get("syntax"), str) else "grammar"
        text += f"\n\nThe '{CUSTOM_INPUT}' argument must follow this {syntax}:\n{format_['definition']}"
    return text.strip()


def _tool_fields(raw: Mapping[str, Any], tools: list[Json], names: dict[str, ToolName]) -> Json:
    choice = raw.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        tools, choice = _allowed(choice, tools, names)
    fields: Json = {}
    if tools:
        fields["tools"] = tools
        if isinstance(raw.get("parallel_tool_calls"), bool):
            fields["parallel_tool_calls"] = raw["parallel_tool_calls"]
    if choice is None:
        return fields
    if isinstance(choice, str):
        if choice == "required" and not tools:
            raise InvalidInput(
                "'tool_choice' is 'required' but no tool this model's deployment can run was given.",
                param="tool_choice",
            )
        if tools:
            fields["tool_choice"] = choice
        return fields
    fields["tool_choice"] = {"type": "function", "function": {"name": _forced(choice, names)}}
    return fields


def _forced(choice: Any, names: dict[str, ToolName]) -> str:
    """The chat function a tool_choice object forces."""
    if not isinstance(choice, dict):
        raise InvalidInput("'tool_choice' must be a string or an object.", param="tool_choice")
    kind = choice.get("type")
    if kind not in ("function", "custom"):
        raise InvalidInput(
            f"'tool_choice' forces the '{kind}' tool, which this model's deployment cannot run "
            "(only function and custom tools are translated).",
            param="tool_choice.type",
        )
    name, namespace = choice.get("name"), choice.get("namespace")
    chat_name = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if isinstance(namespace, str) and namespace else name
    if not isinstance(chat_name, str) or chat_name not in names:
        raise InvalidInput(f"'tool_choice' names the tool {name!r}, which is not among 'tools'.", param="tool_choice")
    return chat_name


def _allowed(choice: Json, tools: list[Json], names: dict[str, ToolName]) -> tuple[list[Json], str]:
    """``allowed_tools`` as Chat Completions' common ground: only those tools, and the mode."""
    listed = choice.get("tools")
    if not isinstance(listed, list):
        raise InvalidInput("'tool_choice.tools' must be an array.", param="tool_choice.tools")
    allowed = {
        _forced(tool, names) for tool in listed if isinstance(tool, dict) and tool.get("type") in ("function", "custom")
    }
    mode = choice.get("mode")
    if mode not in ("auto", "required"):
        raise InvalidInput("'tool_choice.mode' must be 'auto' or 'required'.", param="tool_choice.mode")
    return [tool for tool in tools if tool["function"]["name"] in allowed], mode


def _text_fields(text: Any) -> Json:
    if not isinstance(text, dict):
        return {}
    fields: Json = {}
    if isinstance(text.get("verbosity"), str):
        fields["verbosity"] = text["verbosity"]
    format_ = text.get("format")
    if format_ is None:
        return fields
    kind = format_.get("type") if isinstance(format_, dict) else None
    if kind == "json_object":
        fields["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        fields["response_format"] = {"type": "json_schema", "json_schema": _json_schema(format_)}
    elif kind != "text":
        raise InvalidInput(
            "'text.format.type' must be 'text', 'json_object' or 'json_schema'.", param="text.format.type"
        )
    return fields


def _json_schema(format_: Json) -> Json:
    if not isinstance(format_.get("name"), str) or not isinstance(format_.get("schema"), dict):
        raise InvalidInput(
            "'text.format' of type json_schema needs a 'name' and a 'schema' object.", param="text.format"
        )
    return {name: format_[name] for name in ("name", "schema", "strict", "description") if name in format_}


# --- input items ---


def _messages(raw: Mapping[str, Any], names: Mapping[str, ToolName]) -> list[Json]:
    conversation = _Conversation(names)
    instructions = raw.get("instructions")
    if isinstance(instructions, str) and instructions:
        conversation.messages.append({"role": "system", "content": instructions})
    elif isinstance(instructions, list):
        for index, item in enumerate(instructions):
            conversation.add(item, f"instructions[{index}]")
    items = raw.get("input")
    if isinstance(items, str):
        conversation.messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        for index, item in enumerate(items):
            conversation.add(item, f"input[{index}]")
    conversation.flush_images()
    if not conversation.messages:
        raise InvalidInput("'input' holds nothing a model can read (no message, no tool output).", param="input")
    return conversation.messages


class _Conversation:
    """Input items in order, as chat messages."""

    def __init__(self, names: Mapping[str, ToolName]) -> None:
        self.messages: list[Json] = []
        self.names = names
        # Images a tool returned: Chat Completions' tool messages carry text only, so they
        # follow as a user message once the run of tool messages is over.
        self.images: list[Json] = []

    def add(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise InvalidInput(f"'{where}' must be an object.", param=where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind not in ("function_call_output", "custom_tool_call_output"):
            self.flush_images()
        if kind == "message":
            self._message(item, where)
        elif kind in ("function_call", "custom_tool_call"):
            self._call(item, where, custom=kind == "custom_tool_call")
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self._output(item, where)
        elif kind not in DROPPED_ITEMS:
            raise InvalidInput(
                f"'{where}': input items of type {kind!r} cannot be sent to this model's deployment "
                "(item references need stored responses; computer, shell and apply_patch calls have no "
                "Chat Completions form).",
                param=f"{where}.type",
            )

    def flush_images(self) -> None:
        if self.images:
            self.messages.append({"role": "user", "content": self.images})
            self.images = []

    def _message(self, item: Json, where: str) -> None:
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise InvalidInput(
                f"'{where}.role' must be one of user, assistant, system, developer.", param=f"{where}.role"
            )
        content = item.get("content")
        parts = _parts(content, f"{where}.content")
        if role == "user":
            self.messages.append({"role": "user", "content": content if isinstance(content, str) else parts})
            return
        text = _only_text(parts, where, role)
        if role == "assistant":
            self.messages.append({"role": "assistant", "content": text})
        else:
            self.messages.append({"role": "system", "content": text})

    def _call(self, item: Json, where: str, *, custom: bool) -> None:
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
            raise InvalidInput(f"'{where}' needs a 'call_id' and a 'name'.", param=where)
        namespace = item.get("namespace")
        chat_name = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if isinstance(namespace, str) and namespace else name
        if custom:
            value = item.get("input")
            if not isinstance(value, str):
                raise InvalidInput(f"'{where}.input' must be a string.", param=f"{where}.input")
            arguments = json.dumps({CUSTOM_INPUT: value})
        else:
            arguments = item.get("arguments", "")
            if not isinstance(arguments, str):
                raise InvalidInput(f"'{where}.arguments' must be a string.", param=f"{where}.arguments")
        call = {"id": call_id, "type": "function", "function": {"name": chat_name, "arguments": arguments}}
        last = self.messages[-1] if self.messages else None
        # Calls made in one turn belong to one assistant message, with the text before them.
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def _output(self, item: Json, where: str) -> None:
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidInput(f"'{where}.call_id' is required.", param=f"{where}.call_id")
        output = item.get("output")
        if isinstance(output, str):
            text = output
        elif isinstance(output, list):
            parts = _parts(output, f"{where}.output")
            text = "\n".join(part["text"] for part in parts if part["type"] == "text")
            self.images += [part for part in parts if part["type"] != "text"]
        else:
            raise InvalidInput(
                f"'{where}.output' must be a string or an array of content parts.", param=f"{where}.output"
            )
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})


def _parts(content: Any, where: str) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidInput(f"'{where}' must be a string or an array of content parts.", param=where)
    return [_part(part, f"{where}[{index}]") for index, part in enumerate(content)]


def _part(part: Any, where: str) -> Json:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return {"type": "text", "text": _string(part, "text", where)}
    if kind == "refusal":
        return {"type": "text", "text": _string(part, "refusal", where)}
    if kind == "input_image":
        return _image(part, where)
    if kind == "input_file":
        return _file(part, where)
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not all(isinstance(audio.get(name), str) for name in ("data", "format")):
            raise InvalidInput(
                f"'{where}.input_audio' needs 'data' and 'format' strings.", param=f"{where}.input_audio"
            )
        return {"type": "input_audio", "input_audio": {"data": audio["data"], "format": audio["format"]}}
    raise InvalidInput(f"'{where}': content parts of type {kind!r} are not supported.", param=f"{where}.type")


def _string(part: Json, name: str, where: str) -> str:
    value = part.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"'{where}.{name}' must be a string.", param=f"{where}.{name}")
    return value


def _image(part: Json, where: str) -> Json:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise InvalidInput(
            f"'{where}': images must come as 'image_url' (an https URL or a data: URI); "
            "OneFlow keeps no files, so a 'file_id' cannot be resolved.",
            param=f"{where}.image_url",
        )
    image: Json = {"url": url}
    if isinstance(part.get("detail"), str):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file(part: Json, where: str) -> Json:
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        raise InvalidInput(
            f"'{where}': files must come inline as 'file_data'; OneFlow keeps no files and fetches no URLs, "
            "so a 'file_id' or 'file_url' cannot be resolved.",
            param=f"{where}.file_data",
        )
    file: Json = {"file_data": data}
    if isinstance(part.get("filename"), str):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def _only_text(parts: list[Json], where: str, role: str) -> str:
    if any(part["type"] != "text" for part in parts):
        raise InvalidInput(f"'{where}.content': {role} messages may hold text only.", param=f"{where}.content")
    return "\n".join(part["text"] for part in parts)
