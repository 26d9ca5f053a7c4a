"""The /v1 gateway in the OpenAPI document, beside the REST API (issue 13, item 8).

The gateway is raw ASGI (``gateway/asgi.py``), outside DRF, so drf-spectacular cannot
see it. ``gateway_paths`` is a postprocessing hook (``SPECTACULAR_SETTINGS``) that adds
its operations, schemas, security schemes and headers to the document drf-spectacular
built, so ``/api/schema``, ``/api/docs`` and ``/api/redoc`` show both. It lives here, on
the Django side, because the hot path must not load documentation code.

The schemas name the fields OneFlow reads, checks or returns, with the bounds the
gateway enforces (``gateway.validation``). The protocols are open: clients send fields
added every month (PROTOCOLS.md §2.3) and the gateway passes them on, so every object
allows more (``additionalProperties: true``). Only what the gateway routes is
documented (``gateway.asgi.ROUTES``), so the document never promises an endpoint.
"""

from __future__ import annotations

from typing import Any

from gateway.asgi import ROUTES
from gateway.errors import ANTHROPIC_TYPES
from gateway.validation import MAX_CHOICES, MAX_DIMENSIONS, MAX_OUTPUT_TOKENS, MAX_TOKEN_ID
from gateway.validation import ROLES as OPENAI_ROLES
from gateway.validation_anthropic import ROLES as ANTHROPIC_ROLES

Schema = dict[str, Any]

BEARER = "oneflowKey"
X_API_KEY = "oneflowApiKeyHeader"
OPENAI_TAG = "gateway: OpenAI-compatible"
ANTHROPIC_TAG = "gateway: Anthropic-compatible"


# --- Schema builders -----------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], *required: str, description: str = "") -> Schema:
    """An object that allows fields beyond those named: the protocols grow."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": True}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def integer(low: int | None = None, high: int | None = None, description: str = "") -> Schema:
    schema: Schema = {"type": "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema | ({"description": description} if description else {})


def number(low: float, high: float) -> Schema:
    return {"type": "number", "minimum": low, "maximum": high}


def string(description: str = "", **more: Any) -> Schema:
    return {"type": "string", **more} | ({"description": description} if description else {})


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def array(items: Schema, **more: Any) -> Schema:
    return {"type": "array", "items": items, **more}


def either(*schemas: Schema) -> Schema:
    return {"oneOf": list(schemas)}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
STRINGS: Schema = array(string())


# --- OpenAI: chat completions, embeddings, models, responses --------------------------------

OPENAI_SCHEMAS: dict[str, Schema] = {
    "OpenAIError": obj(
        {
            "error": obj(
                {
                    "message": string(),
                    "type": string("invalid_request_error, permission_error, rate_limit_error, server_error, ..."),
                    "param": nullable(string("The request field at fault.")),
                    "code": nullable(string("e.g. invalid_api_key, model_not_found, insufficient_quota.")),
                },
                "message",
                "type",
            )
        },
        "error",
        description="OpenAI's error object; the SDKs pick the exception class by status.",
    ),
    "ChatMessage": obj(
        {
            "role": enum(*sorted(OPENAI_ROLES)),
            "content": nullable(either(string(), array(ref("ChatContentPart")))),
            "name": string(),
            "tool_call_id": string(),
            "tool_calls": array(ref("ToolCall")),
        },
        "role",
    ),
    "ChatContentPart": obj(
        {
            "type": string("text, image_url, input_audio, file, refusal, or a newer kind passed on."),
            "text": string(),
            "image_url": either(string(), obj({"url": string(), "detail": string()}, "url")),
            "input_audio": obj({"data": string(), "format": string()}),
            "file": obj({"file_data": string(), "file_id": string(), "filename": string()}),
        },
        "type",
    ),
    "ToolCall": obj(
        {
            "id": string(),
            "type": string(),
            "function": obj({"name": string(), "arguments": string("JSON text.")}, "name"),
        },
        "function",
    ),
    "ChatCompletionRequest": obj(
        {
            "model": string("A public model name or alias (GET /v1/models)."),
            "messages": array(ref("ChatMessage"), minItems=1),
            "stream": {"type": "boolean"},
            "stream_options": obj({"include_usage": {"type": "boolean"}}, description="Only with stream."),
            "max_tokens": integer(1, MAX_OUTPUT_TOKENS, "Also the cap of the credits held for the request."),
            "max_completion_tokens": integer(1, MAX_OUTPUT_TOKENS),
            "n": integer(1, MAX_CHOICES),
            "temperature": number(0, 2),
            "top_p": number(0, 1),
            "frequency_penalty": number(-2, 2),
            "presence_penalty": number(-2, 2),
            "seed": integer(),
            "stop": either(string(), STRINGS),
            "tools": array(
                obj(
                    {
                        "type": string(),
                        "function": obj({"name": string(), "description": string(), "parameters": ANY_OBJECT}, "name"),
                    }
                )
            ),
            "tool_choice": either(string("none, auto or required."), ANY_OBJECT),
            "parallel_tool_calls": {"type": "boolean"},
            "response_format": obj(
                {"type": enum("text", "json_object", "json_schema"), "json_schema": ANY_OBJECT}, "type"
            ),
            "metadata": {"type": "object", "additionalProperties": string(maxLength=512), "maxProperties": 16},
            "user": string(),
            "prompt_cache_key": string(),
            "provider": obj(
                {
                    "order": STRINGS,
                    "only": STRINGS,
                    "ignore": STRINGS,
                    "sort": string("price, throughput or latency."),
                    "allow_fallbacks": {"type": "boolean"},
                    "max_price": ANY_OBJECT,
                },
                description="OneFlow's (OpenRouter's) routing preferences; never sent upstream.",
            ),
        },
        "model",
        "messages",
    ),
    "ChatCompletion": obj(
        {
            "id": string(),
            "object": enum("chat.completion"),
            "created": integer(description="Unix seconds."),
            "model": string("The model the client asked for, whichever deployment answered."),
            "choices": array(
                obj(
                    {
                        "index": integer(0),
                        "message": obj(
                            {
                                "role": enum("assistant"),
                                "content": nullable(string()),
                                "refusal": nullable(string()),
                                "tool_calls": array(ref("ToolCall")),
                            },
                            "role",
                        ),
                        "finish_reason": nullable(string("stop, length, tool_calls, content_filter, ...")),
                        "logprobs": nullable(ANY_OBJECT),
                    },
                    "index",
                    "message",
                )
            ),
            "usage": ref("ChatUsage"),
            "system_fingerprint": nullable(string()),
        },
        "id",
        "object",
        "created",
        "model",
        "choices",
    ),
    "ChatUsage": obj(
        {
            "prompt_tokens": integer(0),
            "completion_tokens": integer(0),
            "total_tokens": integer(0),
            "prompt_tokens_details": nullable(obj({"cached_tokens": integer(0)})),
            "completion_tokens_details": nullable(obj({"reasoning_tokens": integer(0)})),
            "cost": string("Credits, in a stream's usage chunk only (JSON answers say x-oneflow-cost)."),
        },
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    ),
    "EmbeddingRequest": obj(
        {
            "model": string(),
            "input": either(
                string(minLength=1),
                array(string(minLength=1), minItems=1),
                array(integer(0, MAX_TOKEN_ID), minItems=1),
                array(array(integer(0, MAX_TOKEN_ID), minItems=1), minItems=1),
            ),
            "encoding_format": enum("float", "base64"),
            "dimensions": integer(1, MAX_DIMENSIONS),
            "user": string(),
        },
        "model",
        "input",
    ),
    "EmbeddingList": obj(
        {
            "object": enum("list"),
            "data": array(
                obj(
                    {
                        "object": enum("embedding"),
                        "index": integer(0),
                        "embedding": either(array({"type": "number"}), string("float32 little-endian, base64.")),
                    },
                    "object",
                    "index",
                    "embedding",
                )
            ),
            "model": string(),
            "usage": obj({"prompt_tokens": integer(0), "total_tokens": integer(0)}, "prompt_tokens", "total_tokens"),
        },
        "object",
        "data",
        "model",
    ),
    "Model": obj(
        {
            "id": string(),
            "object": enum("model"),
            "created": integer(description="Unix seconds."),
            "owned_by": string(),
            "context_window": integer(
                1,
                description="Tokens, prompt and answer together: the smallest any deployment of it states. "
                "Absent when unknown.",
            ),
            "max_output_tokens": integer(
                1,
                description="The most tokens one answer may hold, the smallest any deployment states. "
                "Absent when unknown.",
            ),
        },
        "id",
        "object",
        "created",
        "owned_by",
    ),
    "ModelList": obj({"object": enum("list"), "data": array(ref("Model"))}, "object", "data"),
    "ResponseRequest": obj(
        {
            "model": string(),
            "input": either(string(), array(obj({"type": string("message, function_call_output, ...")}))),
            "instructions": either(string(), array(ANY_OBJECT)),
            "tools": array(obj({"type": string("function, or a newer kind passed on."), "name": string()}, "type")),
            "tool_choice": either(string(), ANY_OBJECT),
            "parallel_tool_calls": {"type": "boolean"},
            "stream": {"type": "boolean"},
            "max_output_tokens": integer(1, MAX_OUTPUT_TOKENS, "Also the cap of the credits held for the request."),
            "temperature": number(0, 2),
            "top_p": number(0, 1),
            "reasoning": ANY_OBJECT,
            "text": ANY_OBJECT,
            "store": {"type": "boolean", "enum": [False], "description": "OneFlow keeps no responses: false only."},
            "include": STRINGS,
            "metadata": {"type": "object", "additionalProperties": string(maxLength=512), "maxProperties": 16},
            "user": string(),
            "prompt_cache_key": string(),
            "safety_identifier": string(),
        },
        "model",
        "input",
        description="The Responses API as Codex CLI sends it (PROTOCOLS.md §2.3), translated for any deployment. "
        "Stateless: previous_response_id, conversation and background are refused; send the whole conversation.",
    ),
    "Response": obj(
        {
            "id": string(),
            "object": enum("response"),
            "created_at": integer(description="Unix seconds."),
            "status": string("completed, incomplete, failed, in_progress, ..."),
            "model": string(),
            "output": array(obj({"type": string("message, function_call, reasoning, ...")}, "type")),
            "usage": nullable(
                obj(
                    {
                        "input_tokens": integer(0),
                        "input_tokens_details": obj({"cached_tokens": integer(0)}),
                        "output_tokens": integer(0),
                        "output_tokens_details": obj({"reasoning_tokens": integer(0)}),
                        "total_tokens": integer(0),
                    },
                    "input_tokens",
                    "output_tokens",
                    "total_tokens",
                )
            ),
        },
        "id",
        "object",
        "status",
        "model",
        "output",
    ),
}


# --- Anthropic: messages, token counting, the Models API shape ------------------------------

_BLOCKS: Schema = array(ref("AnthropicContentBlock"))

ANTHROPIC_SCHEMAS: dict[str, Schema] = {
    "AnthropicError": obj(
        {
            "type": enum("error"),
            "error": obj(
                {"type": string(", ".join(sorted(set(ANTHROPIC_TYPES.values())))), "message": string()},
                "type",
                "message",
            ),
            "request_id": string("The same id as the request-id and x-request-id headers."),
        },
        "type",
        "error",
        description="Anthropic's error object; the SDKs pick the exception class by status.",
    ),
    "AnthropicContentBlock": obj(
        {
            "type": string("text, image, tool_use, tool_result, thinking, ..."),
            "text": string(),
            "source": obj({"type": string("base64 or url.")}, "type"),
            "id": string(),
            "name": string(),
            "input": ANY_OBJECT,
            "tool_use_id": string(),
            "content": either(string(), array(ANY_OBJECT)),
            "cache_control": ANY_OBJECT,
        },
        "type",
    ),
    "AnthropicMessagesRequest": obj(
        {
            "model": string(),
            "max_tokens": integer(1, MAX_OUTPUT_TOKENS),
            "messages": array(
                obj(
                    {
                        "role": enum(*sorted(ANTHROPIC_ROLES)),
                        "content": either(string(), _BLOCKS),
                    },
                    "role",
                    "content",
                    description="`system` between turns is served, as Claude Code sends it.",
                )
            ),
            "system": either(string(), _BLOCKS),
            "stop_sequences": STRINGS,
            "stream": {"type": "boolean"},
            "temperature": number(0, 1),
            "top_p": number(0, 1),
            "top_k": integer(0, MAX_OUTPUT_TOKENS),
            "tools": array(obj({"name": string(), "description": string(), "input_schema": ANY_OBJECT}, "name")),
            "tool_choice": obj({"type": string("auto, any, tool or none."), "name": string()}, "type"),
            "metadata": obj({"user_id": nullable(string(maxLength=256))}),
            "thinking": ANY_OBJECT,
        },
        "model",
        "max_tokens",
        "messages",
    ),
    "AnthropicMessage": obj(
        {
            "id": string(),
            "type": enum("message"),
            "role": enum("assistant"),
            "model": string(),
            "content": _BLOCKS,
            "stop_reason": nullable(string("end_turn, max_tokens, stop_sequence, tool_use, refusal, ...")),
            "stop_sequence": nullable(string()),
            "usage": obj(
                {
                    "input_tokens": integer(0),
                    "output_tokens": integer(0),
                    "cache_creation_input_tokens": nullable(integer(0)),
                    "cache_read_input_tokens": nullable(integer(0)),
                },
                "input_tokens",
                "output_tokens",
            ),
        },
        "id",
        "type",
        "role",
        "model",
        "content",
        "usage",
    ),
    "AnthropicCountTokensRequest": obj(
        {
            "model": string(),
            "messages": array(obj({"role": enum(*sorted(ANTHROPIC_ROLES)), "content": either(string(), _BLOCKS)})),
            "system": either(string(), _BLOCKS),
            "tools": array(ANY_OBJECT),
        },
        "model",
        "messages",
    ),
    "AnthropicTokenCount": obj({"input_tokens": integer(0)}, "input_tokens"),
    "AnthropicModelInfo": obj(
        {
            "type": enum("model"),
            "id": string(),
            "display_name": string(),
            "created_at": string("RFC 3339.", format="date-time"),
            "max_input_tokens": integer(1, description="The context window; absent when unknown."),
            "max_tokens": integer(1, description="The most max_tokens may ask for; absent when unknown."),
        },
        "type",
        "id",
        "display_name",
        "created_at",
    ),
    "AnthropicModelPage": obj(
        {
            "data": array(ref("AnthropicModelInfo")),
            "has_more": {"type": "boolean"},
            "first_id": nullable(string()),
            "last_id": nullable(string()),
        },
        "data",
        "has_more",
        "first_id",
        "last_id",
    ),
}


# --- Headers -------------------------------------------------------------------------------

HEADERS: dict[str, str] = {
    "x-request-id": "OneFlow's id of the request (`req_<uuid>`), also the id of its usage event and charge.",
    "x-client-request-id": "The caller's own x-client-request-id, echoed when it is well formed.",
    "x-oneflow-cost": "What the request cost, in credits (a decimal); a stream carries it as usage.cost.",
    "x-oneflow-provider": "The provider whose deployment answered.",
    "x-oneflow-attempts": "Upstream attempts made; more than 1 when a deployment failed over.",
    "x-oneflow-route": "How the deployment was chosen: strategy:<name> or provider:<preference>.",
    "x-ratelimit-limit-requests": "The binding request limit of the key or organization.",
    "x-ratelimit-remaining-requests": "Requests left in that limit.",
    "x-ratelimit-reset-requests": "When it is full again, as a duration (1s, 6m0s).",
    "x-ratelimit-limit-tokens": "The binding token limit.",
    "x-ratelimit-remaining-tokens": "Tokens left in it.",
    "x-ratelimit-reset-tokens": "When it is full again, as a duration.",
    "ratelimit": "IETF RateLimit field: what is left of each policy.",
    "ratelimit-policy": "IETF RateLimit-Policy field: the policies that apply.",
    "anthropic-ratelimit-requests-limit": "The binding request limit (Anthropic's name).",
    "anthropic-ratelimit-requests-remaining": "Requests left in it.",
    "anthropic-ratelimit-requests-reset": "When it is full again (RFC 3339).",
    "anthropic-ratelimit-tokens-limit": "The binding token limit (Anthropic's name).",
    "anthropic-ratelimit-tokens-remaining": "Tokens left in it.",
    "anthropic-ratelimit-tokens-reset": "When it is full again (RFC 3339).",
    "request-id": "The request id where the Anthropic SDKs read it; the same as x-request-id.",
    "retry-after": "Seconds to wait before trying again.",
    "retry-after-ms": "The same, in milliseconds.",
    "x-should-retry": "false when retrying cannot help (exhausted credits, a budget): the SDKs then do not retry.",
    "www-authenticate": "The Bearer challenge of a 401.",
}
_INTEGER_HEADERS = {"x-oneflow-attempts", "retry-after", "retry-after-ms"}
_RATE_LIMITS = [name for name in HEADERS if name.startswith(("x-ratelimit-", "ratelimit"))]
_ANTHROPIC_RATE_LIMITS = [name for name in HEADERS if name.startswith("anthropic-ratelimit-")]
_ANSWERED = ["x-request-id", "x-client-request-id", "x-oneflow-provider", "x-oneflow-attempts", "x-oneflow-route"]


def _header(name: str) -> Schema:
    kind = "integer" if name in _INTEGER_HEADERS else "string"
    return {"description": HEADERS[name], "schema": {"type": kind}}


def _headers(*names: str) -> dict[str, Schema]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


# --- Operations ----------------------------------------------------------------------------

ERRORS: dict[int, str] = {
    400: "The body is not valid JSON, or a field the gateway reads is wrong (param names it).",
    401: "No key, or a key that is unknown, revoked or expired.",
    403: "The key may not use the model, or the model has no price or broken billing rows.",
    404: "No such model for this key (model_not_found).",
    408: "The body did not arrive within BODY_READ_TIMEOUT_SECONDS.",
    409: "An Idempotency-Key whose first request is still running.",
    413: "The body is larger than MAX_REQUEST_BODY_BYTES.",
    422: "An Idempotency-Key reused with another body.",
    429: "A rate limit, exhausted credits (insufficient_quota) or a budget (budget_exceeded); see x-should-retry.",
    500: "OneFlow failed.",
    502: "Every deployment failed.",
    503: "No deployment can serve the model now (open breakers), or the gateway is starting or stopping.",
    504: "The upstream deadline (UPSTREAM_DEADLINE_SECONDS) passed.",
}
POST_ERRORS = (400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504)
GET_ERRORS = (401, 404, 500, 503)


def _errors(statuses: tuple[int, ...], error: str, *id_headers: str) -> dict[str, Schema]:
    answers = {}
    for status in statuses:
        names = [*id_headers, *(["www-authenticate"] if status == 401 else [])]
        if status in (429, 503):
            names += ["retry-after", "retry-after-ms", "x-should-retry"]
        answers[str(status)] = {
            "description": ERRORS[status],
            "headers": _headers(*names),
            "content": {"application/json": {"schema": ref(error)}},
        }
    return answers


def _stream_answer(what: str) -> Schema:
    return {"text/event-stream": {"schema": string(what)}}


def _operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    answer: Schema,
    headers: list[str],
    errors: tuple[int, ...],
    body: str | None = None,
    stream: str = "",
    anthropic: bool = False,
    parameters: list[Schema] | None = None,
) -> Schema:
    content: Schema = {"application/json": {"schema": answer}}
    if stream:
        content |= _stream_answer(stream)
    ids = ["x-request-id", "x-client-request-id", *(["request-id"] if anthropic else [])]
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        # Anthropic's older SDKs send x-api-key; the gateway takes either on every path.
        "security": [{BEARER: []}, {X_API_KEY: []}],
        "responses": {
            "200": {
                "description": "The answer" + (", or an event stream when stream is true." if stream else "."),
                "headers": _headers(*dict.fromkeys([*ids, *headers])),
                "content": content,
            },
            **_errors(errors, "AnthropicError" if anthropic else "OpenAIError", *ids),
        },
    }
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


_IDEMPOTENCY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "Replays the first answer for 24 h and never charges twice.",
    "schema": string(maxLength=255),
}
_ANTHROPIC_VERSION = {
    "in": "header",
    "name": "anthropic-version",
    "required": False,
    "description": "Any version string; on /v1/models it selects Anthropic's Models API shape.",
    "schema": string(),
}
_MODEL_ID = {"in": "path", "name": "model", "required": True, "schema": string()}
_PAGE = [
    {"in": "query", "name": "limit", "required": False, "schema": integer(1, 1000), "description": "Anthropic shape."},
    {"in": "query", "name": "after_id", "required": False, "schema": string(), "description": "Anthropic shape."},
    {"in": "query", "name": "before_id", "required": False, "schema": string(), "description": "Anthropic shape."},
]
_BILLED = [*_ANSWERED, "x-oneflow-cost"]
_MODELS_ANSWER = either(ref("ModelList"), ref("AnthropicModelPage"))
_MODEL_ANSWER = either(ref("Model"), ref("AnthropicModelInfo"))

OPERATIONS: dict[tuple[str, str], Schema] = {
    ("POST", "/v1/chat/completions"): _operation(
        "gateway_chat_completions",
        "Chat completion (OpenAI's Chat Completions API)",
        tag=OPENAI_TAG,
        body="ChatCompletionRequest",
        answer=ref("ChatCompletion"),
        headers=[*_BILLED, *_RATE_LIMITS],
        errors=POST_ERRORS,
        stream="data: <chat.completion.chunk JSON> events, then data: [DONE]; with "
        "stream_options.include_usage a last chunk carries usage and its cost.",
        parameters=[_IDEMPOTENCY],
    ),
    ("POST", "/v1/embeddings"): _operation(
        "gateway_embeddings",
        "Embeddings (OpenAI's Embeddings API)",
        tag=OPENAI_TAG,
        body="EmbeddingRequest",
        answer=ref("EmbeddingList"),
        headers=[*_BILLED, *_RATE_LIMITS],
        errors=POST_ERRORS,
        parameters=[_IDEMPOTENCY],
    ),
    ("POST", "/v1/responses"): _operation(
        "gateway_responses",
        "Response (OpenAI's Responses API)",
        tag=OPENAI_TAG,
        body="ResponseRequest",
        answer=ref("Response"),
        headers=[*_BILLED, *_RATE_LIMITS],
        errors=POST_ERRORS,
        stream="Typed events (event: response.created ... response.completed), each with type and sequence_number.",
        parameters=[_IDEMPOTENCY],
    ),
    ("GET", "/v1/models"): _operation(
        "gateway_models_list",
        "The models this key may call, with their limits",
        tag=OPENAI_TAG,
        answer=_MODELS_ANSWER,
        headers=["request-id"],
        errors=GET_ERRORS,
        parameters=[_ANTHROPIC_VERSION, *_PAGE],
    ),
    ("GET", "/v1/models/{model}"): _operation(
        "gateway_models_retrieve",
        "One model, with its limits",
        tag=OPENAI_TAG,
        answer=_MODEL_ANSWER,
        headers=["request-id"],
        errors=GET_ERRORS,
        parameters=[_MODEL_ID, _ANTHROPIC_VERSION],
    ),
    ("POST", "/v1/messages"): _operation(
        "gateway_messages",
        "Message (Anthropic's Messages API), served by any deployment",
        tag=ANTHROPIC_TAG,
        body="AnthropicMessagesRequest",
        answer=ref("AnthropicMessage"),
        headers=[*_BILLED, *_ANTHROPIC_RATE_LIMITS],
        errors=POST_ERRORS,
        stream="event: <name> / data: <JSON> pairs: message_start, content_block_start, content_block_delta, "
        "content_block_stop, message_delta, message_stop (and ping).",
        anthropic=True,
        parameters=[_ANTHROPIC_VERSION, _IDEMPOTENCY],
    ),
    ("POST", "/v1/messages/count_tokens"): _operation(
        "gateway_messages_count_tokens",
        "Input tokens of a Messages request, counted offline; free",
        tag=ANTHROPIC_TAG,
        body="AnthropicCountTokensRequest",
        answer=ref("AnthropicTokenCount"),
        headers=[],
        errors=(400, 401, 404, 413, 500, 503),
        anthropic=True,
        parameters=[_ANTHROPIC_VERSION],
    ),
}


def routed_operations() -> dict[tuple[str, str], Schema]:
    """The operations the gateway serves: its ROUTES, and models by id (a path prefix)."""
    served = set(ROUTES) | {("GET", "/v1/models/{model}")}
    return {route: operation for route, operation in OPERATIONS.items() if route in served}


# --- The hook ------------------------------------------------------------------------------


def gateway_paths(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular's postprocessing hook: the REST document plus the gateway."""
    for (method, path), operation in routed_operations().items():
        result.setdefault("paths", {}).setdefault(path, {})[method.lower()] = operation
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(OPENAI_SCHEMAS | ANTHROPIC_SCHEMAS)
    components.setdefault("headers", {}).update({name: _header(name) for name in HEADERS})
    components.setdefault("securitySchemes", {}).update(
        {
            BEARER: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "of_live_<prefix>_<secret>",
                "description": "A OneFlow API key, made in the dashboard (API keys).",
            },
            X_API_KEY: {
                "type": "apiKey",
                "in": "header",
                "name": "x-api-key",
                "description": "The same key where Anthropic's SDKs before 2.x send it.",
            },
        }
    )
    result["tags"] = [
        *result.get("tags", []),
        {"name": OPENAI_TAG, "description": "The /v1 gateway for OpenAI clients: a OneFlow key, not a JWT."},
        {"name": ANTHROPIC_TAG, "description": "The /v1 gateway for Anthropic clients (Claude Code, the SDKs)."},
    ]
    return result
