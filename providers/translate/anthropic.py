"""OpenAI Chat Completions <-> Anthropic Messages, in both directions.

Upstream (PROTOCOLS §3.1): OneFlow works in the OpenAI format and calls an
Anthropic model, so requests go OpenAI -> Anthropic and answers come back.
Client (PROTOCOLS §2.2): a customer calls OneFlow's ``/v1/messages``, so its
request becomes an internal OpenAI request and the answer goes back as an
Anthropic message or event stream.

The translation lives by direction in ``anthropic_request`` (requests, both
ways) and ``anthropic_response`` (answers and streams, both ways), with what
they share in ``anthropic_format``; this module is the one name callers import.
"""

from __future__ import annotations

from providers.translate.anthropic_format import (
    JSON_TOOL,
    Json,
    UpstreamStreamError,
    drop_none,
    finish_reason_from_anthropic,
    is_json_mode,
)
from providers.translate.anthropic_request import (
    anthropic_request_to_openai,
    append_turn,
    openai_to_anthropic_request,
    tool_arguments,
)
from providers.translate.anthropic_response import (
    AnthropicStreamToOpenAI,
    OpenAIStreamToAnthropic,
    anthropic_to_openai_response,
    openai_response_to_anthropic,
)

__all__ = [
    "JSON_TOOL",
    "AnthropicStreamToOpenAI",
    "Json",
    "OpenAIStreamToAnthropic",
    "UpstreamStreamError",
    "anthropic_request_to_openai",
    "anthropic_to_openai_response",
    "append_turn",
    "drop_none",
    "finish_reason_from_anthropic",
    "is_json_mode",
    "openai_response_to_anthropic",
    "openai_to_anthropic_request",
    "tool_arguments",
]
