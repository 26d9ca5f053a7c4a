"""What both directions of the OpenAI <-> Anthropic translation share: the JSON tool
that stands in for OpenAI's JSON modes, the mappings between stop and finish
reasons, usage in OpenAI's terms, a tool call in OpenAI's shape, and the error an
upstream stream reports after it started.

Everything here is a pure function of decoded JSON; no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from oneflow.lib.errors import InvalidInput
from providers.tokens import openai_usage

Json = dict[str, Any]

# The forced tool that stands in for OpenAI's JSON modes; its input is the answer.
JSON_TOOL = "json_tool_call"

_FINISH_FROM_ANTHROPIC = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STOP_FROM_OPENAI = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


class UpstreamStreamError(Exception):
    """The upstream reported an error after the stream had started (HTTP status already 200)."""

    def __init__(self, message: str, *, error_type: str = "api_error") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


def drop_none(fields: Json) -> Json:
    return {key: value for key, value in fields.items() if value is not None}


def is_json_mode(body: Json) -> bool:
    """Whether an OpenAI request asks for JSON, so the answer's JSON tool call must become content."""
    return (body.get("response_format") or {}).get("type") in {"json_object", "json_schema"}


def finish_reason_from_anthropic(stop_reason: str | None) -> str:
    return _FINISH_FROM_ANTHROPIC.get(stop_reason or "", "stop")


def _usage_from_anthropic(usage: Json) -> Json:
    # Anthropic's input_tokens excludes both cache reads and cache writes; OpenAI's prompt_tokens is everything.
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    return openai_usage(prompt=prompt, completion=usage.get("output_tokens") or 0, cached=cached)


def _bad_message(index: int, problem: str) -> InvalidInput:
    return InvalidInput(f"messages[{index}]: {problem}", param="messages")


def _openai_tool_call(block: Json) -> Json:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input") or {})},
    }
