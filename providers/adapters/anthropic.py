"""Anthropic's Messages API, presented in the OpenAI format."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from oneflow.lib import json, sse
from oneflow.lib.errors import InvalidInput
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
    translated_stream,
)
from providers.translate.anthropic import (
    AnthropicStreamToOpenAI,
    anthropic_to_openai_response,
    is_json_mode,
    openai_to_anthropic_request,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"


def error_message(raw: bytes) -> str:
    try:
        message = json.loads(raw)["error"]["message"]
    except (json.JSONDecodeError, KeyError, TypeError):
        message = None
    return str(message)[:1000] if message else "The upstream provider rejected the request."


def _request(target: Target, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    try:
        payload = openai_to_anthropic_request(body, upstream_model=target.upstream_model)
    except InvalidInput as exc:
        raise UpstreamError(exc.message, kind=ErrorKind.REQUEST, status=400) from None
    payload.pop("stream", None)
    if stream:
        payload["stream"] = True
    return payload


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name), "")


def _betas(*values: str) -> str:
    """The operator's betas and the client's, each once, in order."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return ",".join(dict.fromkeys(names))


def stream_error(data: str) -> UpstreamError:
    """An ``error`` event in an Anthropic stream (e.g. overloaded_error after the 200)."""
    try:
        error = json.loads(data).get("error") or {}
        message = str(error.get("message") or "")[:1000]
    except (json.JSONDecodeError, AttributeError):
        message = ""
    text = message or "The upstream provider failed mid-stream."
    return UpstreamError(text, kind=ErrorKind.TRANSIENT, status=502, mid_stream=True)


class AnthropicAdapter(Adapter):
    relays = frozenset({"messages"})

    def url(self, target: Target) -> str:
        return f"{(target.base_url or DEFAULT_BASE_URL).rstrip('/')}/v1/messages"

    def headers(self, target: Target) -> dict[str, str]:
        return {
            **target.extra_headers,
            "x-api-key": target.api_key,
            "anthropic-version": target.api_version or DEFAULT_VERSION,
            "Content-Type": "application/json",
        }

    def relay_headers(self, target: Target, request: Relay) -> dict[str, str]:
        """The deployment's headers, with the client's protocol version and betas.

        The client's ``anthropic-version`` wins: it names the shape of the body
        it sent. Betas add up: the operator's (e.g. a context-window beta for the
        deployment) and the client's.
        """
        headers = {key: value for key, value in self.headers(target).items() if key.lower() != "anthropic-beta"}
        if version := _header(request.headers, "anthropic-version"):
            headers["anthropic-version"] = version
        betas = _betas(_header(target.extra_headers, "anthropic-beta"), _header(request.headers, "anthropic-beta"))
        if betas:
            headers["anthropic-beta"] = betas
        return headers

    async def relay(self, http: HttpClient, target: Target, request: Relay) -> dict[str, Any]:
        payload = {**request.body, "model": target.upstream_model}
        payload.pop("stream", None)
        return await post_json(
            http,
            self.url(target),
            payload,
            headers=self.relay_headers(target, request),
            target=target,
            error_message=error_message,
        )

    async def relay_stream(self, http: HttpClient, target: Target, request: Relay) -> AsyncIterator[sse.Event]:
        payload = {**request.body, "model": target.upstream_model, "stream": True}
        events = post_stream(
            http,
            self.url(target),
            payload,
            headers=self.relay_headers(target, request),
            target=target,
            error_message=error_message,
        )
        async for event in events:
            if event.event == "error":
                raise stream_error(event.data)
            yield event

    async def chat(self, http: HttpClient, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        answer = await post_json(
            http,
            self.url(target),
            _request(target, body, stream=False),
            headers=self.headers(target),
            target=target,
            error_message=error_message,
        )
        return anthropic_to_openai_response(answer, model=target.upstream_model, json_mode=is_json_mode(body))

    async def chat_stream(
        self, http: HttpClient, target: Target, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        translator = AnthropicStreamToOpenAI(
            model=target.upstream_model, completion_id=completion_id, created=created, json_mode=is_json_mode(body)
        )
        events = post_stream(
            http,
            self.url(target),
            _request(target, body, stream=True),
            headers=self.headers(target),
            target=target,
            error_message=error_message,
        )
        chunks = translated_stream(
            events,
            lambda event: translator.feed(event.event, decode_event(event.data)),
            lambda: translator.usage,
            completion_id=completion_id,
            created=created,
            model=target.upstream_model,
        )
        async for chunk in chunks:
            yield chunk
