"""Google Gemini (generateContent / streamGenerateContent), presented in the OpenAI format."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from oneflow.lib import json
from oneflow.lib.errors import InvalidInput
from oneflow.lib.http import HttpClient
from providers.adapters.base import (
    Adapter,
    ErrorKind,
    Target,
    UpstreamError,
    decode_event,
    post_json,
    post_stream,
    translated_stream,
)
from providers.translate.gemini import (
    GeminiStreamToOpenAI,
    gemini_error_to_status,
    gemini_to_openai_response,
    openai_to_gemini_request,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"


def error_message(raw: bytes) -> str:
    try:
        return gemini_error_to_status(json.loads(raw))[1][:1000]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return "The upstream provider rejected the request."


def _request(body: dict[str, Any]) -> dict[str, Any]:
    try:
        return openai_to_gemini_request(body)
    except InvalidInput as exc:
        raise UpstreamError(exc.message, kind=ErrorKind.REQUEST, status=400) from None


class GeminiAdapter(Adapter):
    def url(self, target: Target, action: str) -> str:
        base = (target.base_url or DEFAULT_BASE_URL).rstrip("/")
        return f"{base}/v1beta/models/{target.upstream_model}:{action}"

    def headers(self, target: Target) -> dict[str, str]:
        return {**target.extra_headers, "x-goog-api-key": target.api_key, "Content-Type": "application/json"}

    async def chat(self, http: HttpClient, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        answer = await post_json(
            http,
            self.url(target, "generateContent"),
            _request(body),
            headers=self.headers(target),
            target=target,
            error_message=error_message,
        )
        return gemini_to_openai_response(answer, model=target.upstream_model)

    async def chat_stream(
        self, http: HttpClient, target: Target, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        translator = GeminiStreamToOpenAI(model=target.upstream_model, completion_id=completion_id, created=created)
        events = post_stream(
            http,
            self.url(target, "streamGenerateContent?alt=sse"),
            _request(body),
            headers=self.headers(target),
            target=target,
            error_message=error_message,
        )
        chunks = translated_stream(
            events,
            lambda event: translator.feed(decode_event(event.data)),
            lambda: translator.usage,
            completion_id=completion_id,
            created=created,
            model=target.upstream_model,
        )
        async for chunk in chunks:
            yield chunk
