"""OpenAI-compatible endpoints: chat completions, embeddings, models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from gateway import protocol, validation
from gateway.admission import admit
from gateway.attempts import complete, open_stream
from gateway.call import Call
from gateway.errors import bad_request, model_not_found
from gateway.protocol import Request, raw_key
from gateway.settlement import account_chunk, price_call, recorded, respond
from gateway.streaming import forward
from oneflow.lib import json, sse
from oneflow.lib.asgi import speaks_anthropic
from providers.adapters import UpstreamError
from providers.selectors import ModelView

# The most models one page of Anthropic's list holds (its Models API's bound).
ANTHROPIC_PAGE_MAX = 1000


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

    await forward(
        call, first, chunks, account=account_chunk, render=render, closing=lambda: [sse.DONE], failing=failing
    )


async def embeddings(request: Request) -> None:
    async with recorded(Call(request=request, endpoint="embeddings")) as call:
        call.body = validation.embeddings_request(await read_json(request))
        await admit(call, call.body.get("model"), kind="embedding")
        await respond(call, 200, await complete(call))


# The models endpoints answer in the caller's protocol: OpenAI's list, or Anthropic's
# Models API when the client names an Anthropic version (every Anthropic SDK does).
# A model's limits are the smallest its deployments state (providers.selectors.model_limits)
# and are left out, never null, when none states one: absent means unknown.


def _model_object(model: ModelView) -> dict[str, Any]:
    """OpenAI's model object (``types/model.py``); ``context_window`` and
    ``max_output_tokens`` are OneFlow's, in tokens, read by clients that look for them."""
    entry: dict[str, Any] = {"id": model.name, "object": "model", "created": model.created, "owned_by": model.owned_by}
    if model.context_window is not None:
        entry["context_window"] = model.context_window
    if model.max_output_tokens is not None:
        entry["max_output_tokens"] = model.max_output_tokens
    return entry


def _anthropic_model(model: ModelView) -> dict[str, Any]:
    """Anthropic's ``ModelInfo``: ``max_input_tokens`` is the context window and
    ``max_tokens`` the most ``max_tokens`` may ask for."""
    created_at = datetime.fromtimestamp(model.created, tz=UTC).isoformat().replace("+00:00", "Z")
    entry: dict[str, Any] = {"type": "model", "id": model.name, "display_name": model.name, "created_at": created_at}
    if model.context_window is not None:
        entry["max_input_tokens"] = model.context_window
    if model.max_output_tokens is not None:
        entry["max_tokens"] = model.max_output_tokens
    return entry


def _speaks_anthropic(request: Request) -> bool:
    return speaks_anthropic(request.path, names_version="anthropic-version" in request.headers)


async def _visible_models(request: Request) -> list[ModelView]:
    config = await request.gateway.snapshots.fresh()
    key = await config.authenticate(raw_key(request))
    return [model for model in config.catalog.listed if config.visible(model, key)]


async def models_list(request: Request) -> None:
    models = await _visible_models(request)
    if _speaks_anthropic(request):
        await _anthropic_page(request, models)
        return
    await protocol.send_json(request, 200, {"object": "list", "data": [_model_object(m) for m in models]})


async def _anthropic_page(request: Request, models: list[ModelView]) -> None:
    """One page of Anthropic's list: ``limit`` (1-1000, 20 by default) models after
    ``after_id`` or before ``before_id``, in the list's order (by name)."""
    query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"))
    limit_text = (query.get("limit") or ["20"])[-1]
    # ASCII digits, and few: str.isdigit() takes "²", and int() refuses 4,301 digits.
    if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text[:5]) <= ANTHROPIC_PAGE_MAX):
        raise bad_request(f"limit: expected an integer from 1 to {ANTHROPIC_PAGE_MAX}.", param="limit")
    limit, names = int(limit_text), [model.name for model in models]
    start, end = 0, len(models)
    for param in ("after_id", "before_id"):
        cursor = (query.get(param) or [""])[-1]
        if cursor and cursor not in names:
            raise bad_request(f"{param}: no model `{cursor}` in this list.", param=param)
        if cursor and param == "after_id":
            start = names.index(cursor) + 1
        elif cursor:
            end = names.index(cursor)
    window = models[start:end]
    # Paging backwards keeps the models nearest the cursor, as Anthropic's API does.
    page = window[-limit:] if "before_id" in query else window[:limit]
    body = {
        "data": [_anthropic_model(model) for model in page],
        "has_more": len(page) < len(window),
        "first_id": page[0].name if page else None,
        "last_id": page[-1].name if page else None,
    }
    await protocol.send_json(request, 200, body, {"request-id": request.request_id})


async def model_retrieve(request: Request, model_id: str) -> None:
    for model in await _visible_models(request):
        if model.name == model_id:
            if _speaks_anthropic(request):
                await protocol.send_json(request, 200, _anthropic_model(model), {"request-id": request.request_id})
            else:
                await protocol.send_json(request, 200, _model_object(model))
            return
    raise model_not_found(model_id)
