"""A provider that lives in the process: deterministic answers, realistic usage,
configurable latency, time to first token, token rate and failure rate.

It lets a fresh install answer its first request with no provider key, and
lets load tests run without an upstream. Settings (Provider.simulator):
``latency_ms`` (non-streaming answer time), ``ttft_ms``, ``tokens_per_second``,
``failure_rate`` (0-1, answered with HTTP 503), ``reply_words``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from oneflow.lib.http import HttpClient
from providers import tokens
from providers.adapters.base import Adapter, ErrorKind, Target, UpstreamError

_WORDS = [
    "OneFlow",
    "routes",
    "this",
    "request",
    "to",
    "a",
    "simulated",
    "model",
    "so",
    "that",
    "you",
    "can",
    "try",
    "the",
    "gateway",
    "without",
    "a",
    "provider",
    "key.",
    "Configure",
    "a",
    "real",
    "provider",
    "in",
    "the",
    "admin",
    "to",
    "get",
    "real",
    "answers.",
    "The",
    "simulator",
    "reports",
    "usage",
    "like",
    "a",
    "provider",
    "does,",
    "so",
    "billing,",
    "limits",
    "and",
    "metrics",
    "behave",
    "as",
    "they",
    "will",
    "in",
    "production.",
]


def _reply(body: dict[str, Any], settings: Any) -> str:
    """Deterministic in the request: the same prompt always gets the same answer."""
    words = int(settings.get("reply_words", 24))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0:
        words = min(words, limit)
    seed = int(hashlib.sha256(repr(body.get("messages")).encode()).hexdigest()[:8], 16)
    start = seed % len(_WORDS)
    return " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(words))


def _maybe_fail(settings: Any) -> None:
    rate = float(settings.get("failure_rate", 0))
    if rate > 0 and random.random() < rate:  # noqa: S311 - load simulation, not security
        raise UpstreamError("The simulated provider failed.", kind=ErrorKind.TRANSIENT, status=502, upstream_status=503)


def _usage(body: dict[str, Any], text: str, model: str) -> dict[str, Any]:
    return tokens.openai_usage(
        prompt=tokens.count_chat_prompt(body, model=model), completion=tokens.count_text(text, model=model)
    )


class SimulatorAdapter(Adapter):
    async def chat(self, http: HttpClient, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        _maybe_fail(target.simulator)
        text = _reply(body, target.simulator)
        await asyncio.sleep(float(target.simulator.get("latency_ms", 0)) / 1000)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.upstream_model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                },
            ],
            "usage": _usage(body, text, target.upstream_model),
            "system_fingerprint": "oneflow-simulator",
        }

    async def chat_stream(
        self, http: HttpClient, target: Target, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        _maybe_fail(target.simulator)
        text = _reply(body, target.simulator)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = target.upstream_model
        rate = float(target.simulator.get("tokens_per_second", 0))
        await asyncio.sleep(float(target.simulator.get("ttft_ms", 0)) / 1000)
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for i, word in enumerate(text.split(" ")):
            if rate > 0:
                await asyncio.sleep(1 / rate)
            piece = word if i == 0 else f" {word}"
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield {**base, "choices": [], "usage": _usage(body, text, target.upstream_model)}

    async def embeddings(self, http: HttpClient, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        _maybe_fail(target.simulator)
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)) else list(inputs or [])
        dimensions = int(body.get("dimensions") or 256)
        data = []
        for index, item in enumerate(items):
            vector = _vector(repr(item), dimensions)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        prompt = tokens.count_embedding_input(inputs, model=target.upstream_model)
        return {
            "object": "list",
            "data": data,
            "model": target.upstream_model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    rng = random.Random(digest)  # noqa: S311 - deterministic fake vectors
    return [round(rng.uniform(-1, 1), 6) for _ in range(dimensions)]
