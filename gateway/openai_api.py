"""OpenAI-compatible endpoints: chat completions, embeddings, models."""

from __future__ import annotations

from typing import Any

from gateway import protocol, validation
from gateway.admission import admit
from gateway.attempts import complete, open_stream
from gateway.call import Call
from gateway.errors import bad_request, model_not_found
from gateway.protocol import Request, raw_key
from gateway.settlement import price_call, recorded, respond
from gateway.streaming import forward
from oneflow.lib import json, sse
from providers.adapters import UpstreamError


async def read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise bad_request(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."
        ) from None
    return validation.bounded_depth(value)


async def chat_completions(request: Request) -> None:
    async with recorded(Call(request=request, endpoint="chat")) as call:
        body = validation.chat_request(await read_json(request))
        call.body, call.stream = body, bool(body.get("stream"))
        await admit(call, body.get("model"), kind="chat")
        if call.stream:
            await _stream_chat(call)
        else:
            await respond(call, 200, await complete(call))


async def _stream_chat(call: Call) -> None:
    wants_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
    first, chunks = await open_stream(call)
    await protocol.start_stream(call.request, call.response_headers())

    def render(chunk: dict[str, Any]) -> list[bytes]:
        if not wants_usage:
            # We asked upstream for usage; the client did not.
            if chunk.pop("usage", None) is not None and not chunk.get("choices"):
                return []
        elif "usage" not in chunk:
            chunk["usage"] = None
        elif isinstance(chunk["usage"], dict):
            # The usage chunk is the stream's last event: it carries the cost.
            chunk["usage"]["cost"] = str(price_call(call))
        return [sse.data_frame(chunk)]

    def failing(error: UpstreamError) -> list[bytes]:
        return [sse.data_frame({"error": {"message": error.message, "type": "server_error", "code": None}})]

    await forward(call, first, chunks, render=render, closing=lambda: [sse.DONE], failing=failing)


async def embeddings(request: Request) -> None:
    async with recorded(Call(request=request, endpoint="embeddings")) as call:
        call.body = validation.embeddings_request(await read_json(request))
        await admit(call, call.body.get("model"), kind="embedding")
        await respond(call, 200, await complete(call))


def _model_object(model: Any) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": model.created, "owned_by": model.owned_by}


async def _visible_models(request: Request) -> list[Any]:
    config = await request.gateway.snapshots.fresh()
    key = await config.authenticate(raw_key(request))
    return [model for model in config.catalog.listed if config.visible(model, key)]


async def models_list(request: Request) -> None:
    models = await _visible_models(request)
    await protocol.send_json(request, 200, {"object": "list", "data": [_model_object(m) for m in models]})


async def model_retrieve(request: Request, model_id: str) -> None:
    for model in await _visible_models(request):
        if model.name == model_id:
            await protocol.send_json(request, 200, _model_object(model))
            return
    raise model_not_found(model_id)
