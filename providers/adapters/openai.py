"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, Groq, Mistral,
DeepSeek, Together), plus Azure OpenAI's URL and header variant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from oneflow.lib import json, sse
from oneflow.lib.http import HttpClient
from providers.adapters.base import (
    Adapter,
    ErrorKind,
    Relay,
    Target,
    UpstreamError,
    decode_event,
    post_json,
    post_stream,
)


def error_message(raw: bytes) -> str:
    """The provider's own message for a request error (it describes the caller's input)."""
    try:
        body = json.loads(raw)
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("message")
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
        message = None
    return str(message)[:1000] if message else "The upstream provider rejected the request."


class OpenAIAdapter(Adapter):
    azure = False

    def url(self, target: Target, operation: str) -> str:
        base = target.base_url.rstrip("/")
        if self.azure:
            version = target.api_version or "2024-10-21"
            return f"{base}/openai/deployments/{target.upstream_model}/{operation}?api-version={version}"
        return f"{base}/{operation}"

    def headers(self, target: Target) -> dict[str, str]:
        auth = {"api-key": target.api_key} if self.azure else {"Authorization": f"Bearer {target.api_key}"}
        return {**target.extra_headers, **auth, "Content-Type": "application/json"}

    async def chat(self, http: HttpClient, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        payload = {**body, "model": target.upstream_model}
        return await post_json(
            http,
            self.url(target, "chat/completions"),
            payload,
            headers=self.headers(target),
            target=target,
            error_message=error_message,
        )

    async def embeddings(self, http: HttpClient, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        payload = {**body, "model": target.upstream_model}
        return await post_json(
            http,
            self.url(target, "embeddings"),
            payload,
            headers=self.headers(target),
            target=target,
            error_message=error_message,
        )

    async def chat_stream(
        self, http: HttpClient, target: Target, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        # Always ask for usage: the gateway bills from it and strips the usage
        # chunk again when the client did not ask for one.
        payload = {
            **body,
            "model": target.upstream_model,
            "stream": True,
            "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
        }
        events = post_stream(
            http,
            self.url(target, "chat/completions"),
            payload,
            headers=self.headers(target),
            target=target,
            error_message=error_message,
        )
        async for event in events:
            if event.data == "[DONE]":
                return
            chunk = decode_event(event.data)
            if isinstance(chunk.get("error"), dict):
                message = str(chunk["error"].get("message") or "The upstream provider failed mid-stream.")
                raise UpstreamError(message[:1000], kind=ErrorKind.TRANSIENT, status=502, mid_stream=True)
            yield chunk


class OpenAIPlatformAdapter(OpenAIAdapter):
    """OpenAI itself, which also speaks the Responses API: a ``/v1/responses`` request
    is relayed as the client sent it. OpenAI-compatible servers differ in how much of
    that API they have, so they get it translated to Chat Completions instead."""

    relays = frozenset({"responses"})

    def _relay_payload(self, target: Target, request: Relay, *, stream: bool) -> dict[str, Any]:
        # OpenAI keeps responses unless told not to; OneFlow promises it keeps none (docs/translation.md).
        payload = {"store": False, **request.body, "model": target.upstream_model}
        payload.pop("stream", None)
        return {**payload, "stream": True} if stream else payload

    async def relay(self, http: HttpClient, target: Target, request: Relay) -> dict[str, Any]:
        return await post_json(
            http,
            self.url(target, "responses"),
            self._relay_payload(target, request, stream=False),
            headers=self.headers(target),
            target=target,
            error_message=error_message,
        )

    async def relay_stream(self, http: HttpClient, target: Target, request: Relay) -> AsyncIterator[sse.Event]:
        events = post_stream(
            http,
            self.url(target, "responses"),
            self._relay_payload(target, request, stream=True),
            headers=self.headers(target),
            target=target,
            error_message=error_message,
        )
        async for event in events:
            if event.event == "error":
                message = str(decode_event(event.data).get("message") or "The upstream provider failed mid-stream.")
                raise UpstreamError(message[:1000], kind=ErrorKind.TRANSIENT, status=502, mid_stream=True)
            yield event


class AzureOpenAIAdapter(OpenAIAdapter):
    azure = True
