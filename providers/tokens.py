"""Offline token counting, for upstreams that report no usage.

Encodings ship inside the quicktok package (no download at run time). Counts
are estimates for non-OpenAI models, whose tokenizers differ; usage counted
here is marked "estimated" wherever it is stored.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import quicktok

from oneflow.lib import json

# tiktoken's model table (PROTOCOLS.md §4); anything else falls back to cl100k.
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4-mini")
# Chat framing from the OpenAI cookbook: per message, per name, and the reply primer.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMER = 3


@cache
def _encoding(name: str) -> Any:
    return quicktok.get_encoding(name)


def encoding_name(model: str) -> str:
    bare = model.rsplit("/", 1)[-1].lower()
    if bare.startswith("gpt-oss"):
        return "o200k_harmony"
    if bare.startswith(_O200K_PREFIXES):
        return "o200k_base"
    return "cl100k_base"


def count_text(text: str, *, model: str) -> int:
    # count() treats special-token strings as ordinary text, as a provider
    # tokenizing user input does; it never raises on "<|endoftext|>".
    return int(_encoding(encoding_name(model)).count(text))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return "".join(text for text in texts if isinstance(text, str))
    return ""


def count_chat_prompt(body: dict[str, Any], *, model: str) -> int:
    """Prompt tokens of an OpenAI chat request: messages, tool schemas and framing."""
    total = REPLY_PRIMER
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        total += TOKENS_PER_MESSAGE + count_text(_content_text(message.get("content")), model=model)
        if message.get("name"):
            total += TOKENS_PER_NAME + count_text(str(message["name"]), model=model)
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                total += count_text(f"{function.get('name', '')}{function.get('arguments', '')}", model=model)
    if body.get("tools"):
        # Tool schemas reach the model as text; their JSON is a fair upper estimate.
        total += count_text(str(body["tools"]), model=model)
    return total


def openai_usage(
    *,
    prompt: int,
    completion: int,
    cached: int = 0,
    reasoning: int = 0,
    cache_write_5m: int = 0,
    cache_write_1h: int = 0,
) -> dict[str, Any]:
    """A usage object in OpenAI's shape, which every adapter reports in.

    ``prompt`` is every input token, cache reads (``cached``) and cache writes
    included; ``completion`` every output token, ``reasoning`` included. Cache
    writes are Anthropic's (OpenAI has none), so their keys appear only when
    there are some, and answers without them keep OpenAI's exact shape.
    """
    prompt_details: dict[str, Any] = {"cached_tokens": cached}
    if cache_write_5m:
        prompt_details["cache_write_5m_tokens"] = cache_write_5m
    if cache_write_1h:
        prompt_details["cache_write_1h_tokens"] = cache_write_1h
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def count_embedding_input(value: Any, *, model: str) -> int:
    if isinstance(value, str):
        return count_text(value, model=model)
    if isinstance(value, list) and value and all(isinstance(item, int) for item in value):
        return len(value)
    if isinstance(value, list):
        return sum(count_embedding_input(item, model=model) for item in value)
    return 0


def prompt_upper_bound(body: dict[str, Any]) -> int:
    """At least as many tokens as the request's prompt can have, without a tokenizer.

    Every token of these encodings is at least one byte, so the byte length of
    the messages and tools (as JSON, which only adds bytes) bounds the count.
    Cheap enough for every request, and it keeps the tokenizer's ~70 MB
    vocabulary out of workers whose upstreams report usage.
    """
    value = body.get("input") if "input" in body else [body.get("messages"), body.get("tools")]
    if isinstance(value, list) and value and all(isinstance(item, int) for item in value):
        return len(value)
    return len(json.dumps(value)) + REPLY_PRIMER
