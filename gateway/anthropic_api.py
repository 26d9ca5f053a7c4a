"""The Anthropic-compatible Messages endpoint, over the same proxy core.

Requests are translated into the internal OpenAI format and answers back, so
any deployment (OpenAI, Gemini, the simulator, Anthropic itself) serves
Anthropic SDK clients.
"""

from __future__ import annotations

import uuid
from typing import Any

from gateway import protocol, validation_anthropic
from gateway.admission import admit
from gateway.attempts import complete, open_stream
from gateway.call import Call
from gateway.errors import bad_request, model_not_found
from gateway.openai_api import read_json
from gateway.protocol import Request, raw_key
from gateway.settlement import recorded, respond
from gateway.streaming import forward
from oneflow.lib import sse
from oneflow.lib.errors import InvalidInput
from providers import tokens
from providers.adapters import UpstreamError
from providers.translate.anthropic import (
    OpenAIStreamToAnthropic,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
)


async def messages(request: Request) -> None:
    async with recorded(Call(request=request, endpoint="messages")) as call:
        raw = validation_anthropic.messages_request(await read_json(request))
        try:
            body = anthropic_request_to_openai(raw)
        except InvalidInput as exc:
            raise bad_request(exc.message, param=exc.param) from None
        call.body, call.stream = body, bool(body.get("stream"))
        await admit(call, raw.get("model"), kind="chat")
        if call.stream:
            await _stream(call, str(raw.get("model")))
        else:
            answer = openai_response_to_anthropic(await complete(call), model=str(raw.get("model")))
            await respond(call, 200, answer, {"request-id": request.request_id})


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
    try:
        body = anthropic_request_to_openai({**raw, "max_tokens": 1, "stream": False})
    except InvalidInput as exc:
        raise bad_request(exc.message, param=exc.param) from None
    tokenizer = model.deployments[0].target.upstream_model if model.deployments else model.name
    counted = {"input_tokens": tokens.count_chat_prompt(body, model=tokenizer)}
    await protocol.send_json(request, 200, counted, {"request-id": request.request_id})


async def _stream(call: Call, model: str) -> None:
    # Ask for usage in the internal stream: Anthropic clients always get it.
    call.body["stream_options"] = {"include_usage": True}
    first, chunks = await open_stream(call)
    await protocol.start_stream(call.request, {**call.response_headers(), "request-id": call.request.request_id})
    translator = OpenAIStreamToAnthropic(model=model, message_id=f"msg_{uuid.uuid4().hex}")

    def render(chunk: dict[str, Any]) -> list[bytes]:
        return [sse.named_frame(event, data) for event, data in translator.feed(chunk)]

    def closing() -> list[bytes]:
        events = translator.finish()
        for event, data in events:
            if event == "message_delta" and call.cost is not None:
                data.setdefault("usage", {})["cost"] = str(call.cost)
        return [sse.named_frame(event, data) for event, data in events]

    def failing(error: UpstreamError) -> list[bytes]:
        payload = {"type": "error", "error": {"type": "api_error", "message": error.message}}
        return [sse.named_frame("error", payload)]

    await forward(call, first, chunks, render=render, closing=closing, failing=failing)
