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


def _count(value: Any) -> int:
    """A token count from an upstream's JSON: anything but a positive integer counts as none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_anthropic(usage: Json) -> Json:
    """Anthropic's usage in the internal (OpenAI) terms, cache reads and writes apart.

    Anthropic's ``input_tokens`` excludes cache reads and cache writes; the internal
    ``prompt_tokens`` is all of them. ``cache_creation_input_tokens`` is every write and
    ``cache_creation`` splits it by lifetime; without the split (older API versions,
    compatible upstreams) every write is a 5-minute one, Anthropic's default. A split
    that accounts for fewer writes than the total leaves the rest as 5-minute writes,
    and one that accounts for more wins, so no reported write goes unbilled.
    """
    reads = _count(usage.get("cache_read_input_tokens"))
    split = usage.get("cache_creation")
    split = split if isinstance(split, dict) else {}
    write_1h = _count(split.get("ephemeral_1h_input_tokens"))
    writes = max(
        _count(usage.get("cache_creation_input_tokens")), _count(split.get("ephemeral_5m_input_tokens")) + write_1h
    )
    internal = openai_usage(
        prompt=_count(usage.get("input_tokens")) + reads + writes,
        completion=_count(usage.get("output_tokens")),
        cached=reads,
        cache_write_5m=writes - write_1h,
        cache_write_1h=write_1h,
    )
    if requests := server_tool_requests(usage.get("server_tool_use")):
        internal["server_tool_requests"] = requests
    return internal


def server_tool_requests(server_tool_use: Any) -> int:
    """How many times server tools ran (``web_search_requests``, ``web_fetch_requests``, ...):
    Anthropic bills them per request, not per token."""
    if not isinstance(server_tool_use, dict):
        return 0
    return sum(_count(value) for name, value in server_tool_use.items() if name.endswith("_requests"))


def _bad_message(index: int, problem: str) -> InvalidInput:
    return InvalidInput(f"messages[{index}]: {problem}", param="messages")


def _openai_tool_call(block: Json) -> Json:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input") or {})},
    }
