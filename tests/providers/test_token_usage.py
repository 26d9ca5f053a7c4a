"""Usage in the internal (OpenAI) shape, every token class apart: cache reads and writes
are parts of ``prompt_tokens``, reasoning a part of ``completion_tokens``; Anthropic's
usage is read into it and written back out of it."""

from __future__ import annotations

from typing import Any

import pytest

from providers.tokens import openai_usage
from providers.translate.anthropic_format import usage_from_anthropic
from providers.translate.anthropic_response import AnthropicStreamToOpenAI, openai_response_to_anthropic


def test_openai_usage_reports_cache_writes_only_when_there_are_some() -> None:
    assert openai_usage(prompt=100, completion=20, cached=30, reasoning=5) == {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 30},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    written = openai_usage(prompt=100, completion=20, cached=30, cache_write_5m=40, cache_write_1h=10)
    assert written["prompt_tokens_details"] == {
        "cached_tokens": 30,
        "cache_write_5m_tokens": 40,
        "cache_write_1h_tokens": 10,
    }
    assert openai_usage(prompt=9, completion=0, cache_write_1h=9)["prompt_tokens_details"] == {
        "cached_tokens": 0,
        "cache_write_1h_tokens": 9,
    }


def test_anthropic_usage_with_the_split_of_its_cache_writes() -> None:
    usage = usage_from_anthropic(
        {
            "input_tokens": 50,
            "output_tokens": 30,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 600,
            "cache_creation": {"ephemeral_5m_input_tokens": 450, "ephemeral_1h_input_tokens": 150},
        }
    )
    assert usage == {
        "prompt_tokens": 1650,  # input_tokens leaves reads and writes out; prompt_tokens is all of them
        "completion_tokens": 30,
        "total_tokens": 1680,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_5m_tokens": 450, "cache_write_1h_tokens": 150},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


@pytest.mark.parametrize(
    ("cache_creation", "write_5m", "write_1h"),
    [
        (None, 600, 0),  # no split (older API versions): every write is a 5-minute one
        ({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 600}, 0, 600),
        ({"ephemeral_1h_input_tokens": 200}, 400, 200),  # the split names fewer: the rest are 5-minute writes
        ({"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 300}, 500, 300),  # more: the split wins
    ],
)
def test_anthropic_cache_writes_without_a_whole_split(
    cache_creation: dict[str, int] | None, write_5m: int, write_1h: int
) -> None:
    reported: dict[str, Any] = {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 600}
    if cache_creation is not None:
        reported["cache_creation"] = cache_creation
    usage = usage_from_anthropic(reported)
    details = usage["prompt_tokens_details"]
    assert (details.get("cache_write_5m_tokens", 0), details.get("cache_write_1h_tokens", 0)) == (write_5m, write_1h)
    assert usage["prompt_tokens"] == 10 + write_5m + write_1h


def test_anthropic_usage_without_caching_is_openais_shape() -> None:
    assert usage_from_anthropic({"input_tokens": 12, "output_tokens": 3, "cache_creation_input_tokens": None}) == (
        openai_usage(prompt=12, completion=3)
    )


def test_a_stream_keeps_the_cache_write_split_of_message_start() -> None:
    """message_start carries the split (a dict); message_delta's nulls must not erase it."""
    stream = AnthropicStreamToOpenAI(model="m", completion_id="chatcmpl-1", created=0)
    start_usage = {
        "input_tokens": 5,
        "output_tokens": 1,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 70,
        "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 40},
    }
    stream.feed("message_start", {"type": "message_start", "message": {"usage": start_usage}})
    stream.feed(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 9, "cache_creation": None, "cache_read_input_tokens": None},
        },
    )
    assert stream.usage == openai_usage(prompt=175, completion=9, cached=100, cache_write_5m=30, cache_write_1h=40)


def test_an_anthropic_client_gets_its_cache_reads_and_writes_back_apart() -> None:
    internal = openai_usage(prompt=1000, completion=20, cached=500, cache_write_5m=200, cache_write_1h=100)
    message = openai_response_to_anthropic(
        {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], "usage": internal}, model="m"
    )
    assert message["usage"] == {
        "input_tokens": 200,
        "output_tokens": 20,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100},
    }
    # And reading it back gives the same internal usage.
    assert usage_from_anthropic(message["usage"]) == internal
