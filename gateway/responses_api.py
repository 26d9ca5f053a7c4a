"""The OpenAI Responses endpoint, ``POST /v1/responses``, over the same proxy core.

The request is translated into the internal chat format, so any deployment
(OpenAI-compatible, Anthropic, Gemini, the simulator) serves it, and the answer
goes back as a Response object or as the Responses API's typed event stream
(providers.translate.responses, responses_answer and responses_stream; the
rules are in docs/translation.md). Codex CLI speaks only this endpoint, streaming.

OneFlow keeps no responses: requests that need one kept (``store: true``,
``previous_response_id``) are refused by gateway.validation_responses.
"""

from __future__ import annotations

from typing import Any

from gateway import protocol, validation_responses
from gateway.admission import admit
from gateway.attempts import complete, open_stream
from gateway.call import Call
from gateway.openai_api import read_json
from gateway.protocol import Request
from gateway.settlement import account_chunk, estimate, price_call, recorded, respond
from gateway.streaming import forward
from oneflow.lib import json, sse
from oneflow.lib.errors import InvalidInput
from providers.adapters import Relay, UpstreamError
from providers.adapters.base import decode_event
from providers.translate.responses import Translation, responses_request_to_openai
from providers.translate.responses_answer import openai_response_to_responses, usage_from_responses
from providers.translate.responses_stream import OpenAIStreamToResponses

# Stream events before the first content: held back, so a failing deployment can still be left.
PREAMBLE = frozenset(
    {"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
)
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
DELTAS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta"})


async def responses(request: Request) -> None:
    async with recorded(Call(request=request, endpoint="responses")) as call:
        raw = validation_responses.responses_request(await read_json(request))
        call.relay = Relay("responses", raw, preamble=PREAMBLE)
        translation, call.untranslatable = _translated(raw)
        call.body, call.stream = translation.body, raw.get("stream") is True
        await admit(call, raw["model"], kind="chat")
        if call.stream:
            await _stream(call, translation)
            return
        answer = await complete(call)
        if call.relayed:
            _account_relayed(call, answer)
        else:
            answer = openai_response_to_responses(answer, translation, **_shell(call))
        await respond(call, 200, answer)


def _translated(raw: dict[str, Any]) -> tuple[Translation, InvalidInput | None]:
    """The request in the internal format, for admission and for deployments that do
    not speak Responses. What cannot be translated is no error yet: an OpenAI
    deployment takes it as it is, and only the others refuse it."""
    try:
        return responses_request_to_openai(raw), None
    except InvalidInput as exc:
        # Admission bounds the prompt by its size in bytes, which this keeps.
        prompt = json.dumps([raw.get("instructions"), raw.get("input"), raw.get("tools")]).decode()
        body = {"model": raw["model"], "messages": [{"role": "user", "content": prompt}]}
        if raw.get("max_output_tokens") is not None:
            body["max_completion_tokens"] = raw["max_output_tokens"]
        return Translation(body=body, request=raw), exc


def _account_relayed(call: Call, answer: dict[str, Any]) -> None:
    """Usage of a relayed Response, as the upstream reported it (cached input and reasoning included)."""
    assert call.model is not None  # noqa: S101 - admit() ran
    answer["model"] = call.model.name
    usage = answer.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("input_tokens"), int):
        call.usage, call.usage_source = usage_from_responses(usage), "reported"
    else:
        call.usage, call.usage_source = estimate(call, json.dumps(answer.get("output") or []).decode()), "estimated"


def _shell(call: Call) -> dict[str, Any]:
    """What names the response: its id (the request id's, so support can find one from the
    other), the public model, and when the request arrived."""
    assert call.model is not None  # noqa: S101 - admit() ran
    return {
        "response_id": "resp_" + call.request.request_id.removeprefix("req_"),
        "model": call.model.name,
        "created_at": int(call.request.started_wall),
    }


def _frames(events: list[dict[str, Any]]) -> list[bytes]:
    # Named like OpenAI's: an ``event:`` line with the type, and the event as data.
    return [sse.named_frame(event["type"], event) for event in events]


async def _stream(call: Call, translation: Translation) -> None:
    first, chunks = await open_stream(call)
    await protocol.start_stream(call.request, call.response_headers())
    if call.relayed:
        relayed = RelayedResponses(call)
        await forward(
            call,
            first,
            chunks,
            account=relayed.account,
            render=relayed.render,
            closing=relayed.closing,
            failing=relayed.failing,
        )
        return
    translator = OpenAIStreamToResponses(translation, **_shell(call))

    def render(chunk: dict[str, Any]) -> list[bytes]:
        return _frames(translator.feed(chunk))

    def cost() -> str | None:
        # Known once the call is recorded, which happens before closing or failing runs.
        return str(call.cost) if call.cost is not None else None

    def closing() -> list[bytes]:
        return _frames(translator.finish(call.usage, cost()))

    def failing(error: UpstreamError) -> list[bytes]:
        # A terminal event all the same: Codex CLI retries a stream that ends without one.
        return _frames(translator.fail(error.message, call.usage, cost()))

    await forward(call, first, chunks, account=account_chunk, render=render, closing=closing, failing=failing)


class RelayedResponses:
    """An OpenAI deployment's Responses event stream, passed to the client as it came.

    OneFlow reads the generated text (for an estimate if the stream is cut) and the
    usage on the terminal event, names the public model in the events that carry
    the response, and adds the cost to the terminal event, which it holds until the
    call is recorded, so the client's last byte follows the record.
    """

    def __init__(self, call: Call) -> None:
        assert call.model is not None  # noqa: S101 - admit() ran
        self.call, self.model = call, call.model.name
        self.sequence = 0
        self.terminal: bytes | None = None

    def account(self, call: Call, event: sse.Event) -> None:
        data = decode_event(event.data)
        if isinstance(data.get("sequence_number"), int):
            self.sequence = data["sequence_number"]
        if data.get("type") in DELTAS and isinstance(data.get("delta"), str):
            call.generated.append(data["delta"])
        elif data.get("type") in TERMINAL:
            usage = (data.get("response") or {}).get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("input_tokens"), int):
                call.usage, call.usage_source = usage_from_responses(usage), "reported"

    def render(self, event: sse.Event) -> list[bytes]:
        if not event.event.startswith("response.") or event.event.count(".") != 1:
            return [_raw_frame(event)]  # deltas and item events: as they came
        data = decode_event(event.data)
        response = data.get("response")
        if isinstance(response, dict):
            response["model"] = self.model
        if data.get("type") not in TERMINAL:
            return [sse.named_frame(event.event, data)]
        cost = price_call(self.call)
        if cost is not None and isinstance(response, dict) and isinstance(response.get("usage"), dict):
            response["usage"]["cost"] = str(cost)
        self.terminal = sse.named_frame(event.event, data)
        return []

    def closing(self) -> list[bytes]:
        return [self.terminal] if self.terminal is not None else []

    def failing(self, error: UpstreamError) -> list[bytes]:
        # A terminal event all the same: Codex CLI retries a stream that ends without one.
        response = {
            "id": "resp_" + self.call.request.request_id.removeprefix("req_"),
            "object": "response",
            "model": self.model,
            "status": "failed",
            "error": {"code": "server_error", "message": error.message},
            "output": [],
        }
        failed = {"type": "response.failed", "sequence_number": self.sequence + 1, "response": response}
        return [sse.named_frame("response.failed", failed)]


def _raw_frame(event: sse.Event) -> bytes:
    name = b"" if event.event == "message" else b"event: " + event.event.encode() + b"\n"
    return name + b"data: " + event.data.encode() + b"\n\n"
