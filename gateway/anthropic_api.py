"""The Anthropic-compatible Messages endpoint, over the same proxy core.

A deployment on Anthropic gets the request as the client sent it (a relay:
only the model name is rewritten; ``anthropic-version`` and ``anthropic-beta``
go along) and its answer comes back as it was, with what OneFlow adds: the
model name the client asked for, ``usage.cost`` at the end of a stream, the
``x-oneflow-*`` headers. So prompt caching, thinking, betas and block types
OneFlow has never heard of work as they do against Anthropic itself.

Any other deployment (OpenAI, Gemini, the simulator) gets the request
translated into the internal OpenAI format and the answer translated back,
by the rules in docs/translation.md.
"""

from __future__ import annotations

import uuid
from typing import Any

from gateway import protocol, validation_anthropic
from gateway.admission import admit
from gateway.attempts import complete, open_stream
from gateway.call import Call
from gateway.errors import model_not_found
from gateway.openai_api import read_json
from gateway.protocol import Request, raw_key
from gateway.settlement import account_chunk, estimate, price_call, recorded, respond
from gateway.streaming import forward
from oneflow.lib import json, sse
from oneflow.lib.errors import InvalidInput
from providers import tokens
from providers.adapters import Relay, UpstreamError
from providers.adapters.base import decode_event
from providers.translate.anthropic import (
    OpenAIStreamToAnthropic,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
)
from providers.translate.anthropic_format import usage_from_anthropic

# The client's protocol headers an Anthropic deployment gets as they came.
FORWARDED = ("anthropic-version", "anthropic-beta")
# Stream events before the first content: held back, so a failing deployment can still be left.
PREAMBLE = frozenset({"message_start", "ping", "content_block_start"})


async def messages(request: Request) -> None:
    async with recorded(Call(request=request, endpoint="messages")) as call:
        raw = validation_anthropic.messages_request(await read_json(request))
        model = str(raw["model"])
        headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
        call.relay = Relay("messages", raw, headers=headers, preamble=PREAMBLE)
        call.body, call.untranslatable = _internal(raw)
        call.stream = raw.get("stream") is True
        await admit(call, model, kind="chat")
        if call.stream:
            await _stream(call, model)
            return
        answer = await complete(call)
        if call.relayed:
            _account_message(call, answer, model)
        else:
            answer = openai_response_to_anthropic(answer, model=model)
        await respond(call, 200, answer, {"request-id": request.request_id})


def _internal(raw: dict[str, Any]) -> tuple[dict[str, Any], InvalidInput | None]:
    """The request in the internal format, for admission and for deployments that
    do not speak Anthropic. What cannot be translated is no error yet: an
    Anthropic deployment takes it as it is, and only the others refuse it."""
    try:
        return anthropic_request_to_openai(raw), None
    except InvalidInput as exc:
        # Admission bounds the prompt by its size in bytes, which this keeps.
        prompt = json.dumps([raw.get("system"), raw.get("messages"), raw.get("tools")]).decode()
        body = {
            "model": raw["model"],
            "max_tokens": raw["max_tokens"],
            "messages": [{"role": "user", "content": prompt}],
        }
        return body, exc


def _account_message(call: Call, answer: dict[str, Any], model: str) -> None:
    """Usage of a relayed answer, as the upstream reported it (cache writes and reads included)."""
    answer["model"] = model
    usage = answer.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("input_tokens"), int):
        call.usage, call.usage_source = usage_from_anthropic(usage), "reported"
        return
    content = answer.get("content")
    blocks: list[Any] = content if isinstance(content, list) else []
    text = "".join(_block_text(block) for block in blocks if isinstance(block, dict))
    call.usage, call.usage_source = estimate(call, text), "estimated"


def _block_text(block: dict[str, Any]) -> str:
    if block.get("type") == "tool_use":
        return json.dumps(block.get("input") or {}).decode()
    return str(block.get("text") or block.get("thinking") or "")


async def count_tokens(request: Request) -> None:
    """``POST /v1/messages/count_tokens``: the prompt's input tokens, counted offline
    with the tokenizer of the model's first deployment; free, and never billed.
    Claude Code asks it before large requests."""
    raw = validation_anthropic.count_tokens_request(await read_json(request))
    config = await request.gateway.snapshots.fresh()
    key = await config.authenticate(raw_key(request))
    model = config.usable(key, raw["model"])
    if model is None or model.kind != "chat":
        raise model_not_found(raw["model"])
    # A body the translation cannot carry is still counted: over its text, which an Anthropic deployment would take.
    body, _ = _internal({**raw, "max_tokens": 1, "stream": False})
    tokenizer = model.deployments[0].target.upstream_model if model.deployments else model.name
    counted = {"input_tokens": tokens.count_chat_prompt(body, model=tokenizer)}
    await protocol.send_json(request, 200, counted, {"request-id": request.request_id})


def _failing(error: UpstreamError) -> list[bytes]:
    payload = {"type": "error", "error": {"type": "api_error", "message": error.message}}
    return [sse.named_frame("error", payload)]


async def _stream(call: Call, model: str) -> None:
    first, chunks = await open_stream(call)
    await protocol.start_stream(call.request, {**call.response_headers(), "request-id": call.request.request_id})
    if call.relayed:
        relayed = RelayedStream(call, model)
        await forward(
            call,
            first,
            chunks,
            account=relayed.account,
            render=relayed.render,
            closing=relayed.closing,
            failing=_failing,
        )
        return
    translator = OpenAIStreamToAnthropic(model=model, message_id=f"msg_{uuid.uuid4().hex}")

    def render(chunk: dict[str, Any]) -> list[bytes]:
        return [sse.named_frame(event, data) for event, data in translator.feed(chunk)]

    def closing() -> list[bytes]:
        events = translator.finish()
        for event, data in events:
            if event == "message_delta" and call.cost is not None:
                data.setdefault("usage", {})["cost"] = str(call.cost)
        return [sse.named_frame(event, data) for event, data in events]

    await forward(call, first, chunks, account=account_chunk, render=render, closing=closing, failing=_failing)


class RelayedStream:
    """An Anthropic deployment's event stream, passed to the client as it came.

    OneFlow reads the usage (``message_start``, then the cumulative
    ``message_delta``) and the generated text (for an estimate if the stream is
    cut), and changes two events: ``message_start`` names the model the client
    asked for, and ``message_delta`` carries the cost. ``message_stop`` is held
    until the call is recorded, so the client's last byte follows the record.
    """

    def __init__(self, call: Call, model: str) -> None:
        self.model = model
        self.reported: dict[str, Any] = {}
        self.stop: bytes | None = None
        self.call = call

    def account(self, call: Call, event: sse.Event) -> None:
        if event.event == "content_block_delta":
            delta = decode_event(event.data).get("delta") or {}
            piece = delta.get("text") or delta.get("partial_json") or delta.get("thinking")
            if isinstance(piece, str) and piece:
                call.generated.append(piece)
        elif event.event == "message_start":
            # The prompt's classes as reported: they stand if the stream is cut before message_delta.
            self._report((decode_event(event.data).get("message") or {}).get("usage"))
            call.usage, call.usage_source = usage_from_anthropic(self.reported), "started"
        elif event.event == "message_delta":
            self._report(decode_event(event.data).get("usage"))
            call.usage, call.usage_source = usage_from_anthropic(self.reported), "reported"

    def _report(self, usage: Any) -> None:
        if isinstance(usage, dict):
            # message_delta's counts are cumulative: the latest of each field is the total.
            self.reported |= {name: value for name, value in usage.items() if value is not None}

    def render(self, event: sse.Event) -> list[bytes]:
        if event.event == "message_start":
            data = decode_event(event.data)
            if isinstance(data.get("message"), dict):
                data["message"]["model"] = self.model
            return [sse.named_frame(event.event, data)]
        if event.event == "message_delta":
            data = decode_event(event.data)
            cost = price_call(self.call)
            if cost is not None and isinstance(data.get("usage"), dict):
                data["usage"]["cost"] = str(cost)
            return [sse.named_frame(event.event, data)]
        frame = b"event: " + event.event.encode() + b"\ndata: " + event.data.encode() + b"\n\n"
        if event.event == "message_stop":
            self.stop = frame
            return []
        return [frame]

    def closing(self) -> list[bytes]:
        return [self.stop] if self.stop is not None else []
