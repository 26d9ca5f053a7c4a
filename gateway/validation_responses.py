"""Checks of OpenAI Responses request bodies, with OpenAI's messages and params.

Only what OneFlow reads: the model, the input's outer shape, ``stream``,
``max_output_tokens`` (it bounds the credit hold), the tools' outer shape and
the sampling numbers, plus the state OneFlow does not keep. Everything else
passes: to a deployment that speaks Responses as it came, and to the
translation (providers.translate.responses) for the others, which refuses with
a 400 naming the field what it cannot carry.

OneFlow keeps no responses: ``store: true``, ``previous_response_id``,
``conversation`` and ``background`` all need the response kept at the server,
so they are refused with a 400 that says what to send instead (docs/translation.md).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import bad_request
from gateway.validation import MAX_OUTPUT_TOKENS, invalid_type, is_int, is_number, metadata

# The most input items one request may hold: far beyond a long agent session (Codex CLI
# compacts its history well before), and it bounds the translation's work.
MAX_INPUT_ITEMS = 100_000
MAX_TOOLS = 10_000  # far beyond any client (Codex CLI declares 9, Claude Code 12)

STATELESS = (
    "OneFlow does not store responses, so there is no stored conversation to continue: "
    "send the whole conversation as 'input' (and 'store': false), as Codex CLI does."
)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _model(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("you must provide a model parameter", param="model", code="missing_model")


def _state(body: dict[str, Any]) -> None:
    if body.get("store") is True:
        raise bad_request(f"'store': true is not supported. {STATELESS}", param="store", code="unsupported_parameter")
    for name in ("previous_response_id", "conversation"):
        if body.get(name) is not None:
            raise bad_request(f"'{name}' is not supported. {STATELESS}", param=name, code="unsupported_parameter")
    if body.get("background") is True:
        raise bad_request(
            "'background': true is not supported: a background response is kept at the server to be polled, "
            "and OneFlow keeps none. Stream the response instead ('stream': true).",
            param="background",
            code="unsupported_parameter",
        )
    for name in ("store", "background"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise invalid_type(name, "a boolean", value)


def _input(body: dict[str, Any]) -> None:
    value = body.get("input")
    if isinstance(value, str):
        return
    if "input" not in body or value is None:
        # Nothing stored to continue from (previous_response_id): the input is the conversation.
        raise bad_request("'input' is required: a string, or an array of input items.", param="input")
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of input items", value)
    if len(value) > MAX_INPUT_ITEMS:
        raise bad_request(f"'input' may hold at most {MAX_INPUT_ITEMS} items.", param="input")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid_type(f"input[{index}]", "an object", item)
        kind = item.get("type")
        if kind is not None and not isinstance(kind, str):
            raise invalid_type(f"input[{index}].type", "a string", kind)


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    if len(tools) > MAX_TOOLS:
        raise bad_request(f"'tools' may hold at most {MAX_TOOLS} tools.", param="tools")
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise invalid_type(param, "an object", tool)
        if not isinstance(tool.get("type"), str):
            raise invalid_type(f"{param}.type", "a string", tool.get("type"))
        if tool["type"] != "function":
            continue  # other kinds: the upstream (or the translation) judges them
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise bad_request(f"Invalid '{param}': a function tool needs a 'name'.", param=f"{param}.name")
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid_type(f"{param}.parameters", "an object", parameters)
        strict = tool.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise invalid_type(f"{param}.strict", "a boolean", strict)


def _numbers(body: dict[str, Any]) -> None:
    tokens = body.get("max_output_tokens")
    if tokens is not None and (not is_int(tokens) or not 1 <= tokens <= MAX_OUTPUT_TOKENS):
        raise bad_request(
            f"Invalid 'max_output_tokens': expected an integer from 1 to {MAX_OUTPUT_TOKENS}.",
            param="max_output_tokens",
        )
    for name, high in (("temperature", 2), ("top_p", 1)):
        value = body.get(name)
        if value is not None and (not is_number(value) or not 0 <= value <= high):
            raise bad_request(f"Invalid '{name}': expected a number between 0 and {high}.", param=name)


def _flags(body: dict[str, Any]) -> None:
    for name in ("stream", "parallel_tool_calls"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise invalid_type(name, "a boolean", value)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str | list):
        raise invalid_type("instructions", "a string or an array of input items", instructions)
    for name in ("user", "prompt_cache_key", "safety_identifier"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise invalid_type(name, "a string", value)
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, str | dict):
        raise invalid_type("tool_choice", "a string or an object", choice)
    for name in ("reasoning", "text"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            raise invalid_type(name, "an object", value)


def responses_request(body: Any) -> dict[str, Any]:
    body = _object(body)
    _model(body)
    _state(body)
    _input(body)
    _flags(body)
    _numbers(body)
    _tools(body.get("tools"))
    metadata(body.get("metadata"))
    return body
