"""The usage stream: the gateway appends one event per request to Redis; the
drain moves them into PostgreSQL in batches, idempotent on the request id.

Appending happens in the script that settles the request's credit hold
(billing.holds), so an event and its charge are on record together. Besides
the event (field ``e``) each entry carries what Redis needs to account for
its charge until the drain has stored it: organization ``o``, key ``k``,
charged units ``c``, and when the request arrived ``t`` (unix s).

The stream is read through a consumer group: an event is acknowledged (and
deleted) only after its row committed, so a worker that dies mid-batch leaves
its events to be claimed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from oneflow.lib import json

GROUP = "drain"  # the drain's consumer group on the stream (oneflow.lib.redis_keys.USAGE_STREAM)
FIELD = b"e"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    request_id: str
    organization_id: int
    api_key_id: int | None
    endpoint: str
    public_model: str
    deployment_id: int | None
    provider: str
    stream: bool
    status_code: int
    error_type: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    usage_source: str
    latency_ms: int
    ttft_ms: int | None
    attempts: int
    client_disconnected: bool
    created_at: float  # unix seconds, when the request arrived
    provider_cost_usd: str = "0"  # Decimal as text: JSON has no exact decimals
    charged: str = "0"  # credits the ledger takes for this request (never more than its hold)
    attempt_log: list[dict[str, Any]] = field(default_factory=list)  # deployment, provider, status, error, ms
    requested_model: str = ""  # the name asked for, when it resolved to no model (public_model is "")
    # Token classes beside prompt/cached/completion (billing.models.UsageEvent says how they
    # nest). Defaults, so that an event appended by an older gateway still decodes.
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    server_tool_requests: int = 0  # Anthropic's server tools (web search, fetch), billed per request
    # The request's span as a W3C traceparent when it was sampled, else "": the drain's
    # span links back to it (oneflow.lib.tracing). Not stored with the usage row.
    traceparent: str = ""


_FIELDS = tuple(f.name for f in fields(UsageRecord))


def encode(record: UsageRecord) -> bytes:
    # Not dataclasses.asdict: it deep-copies every value, a measurable cost per request.
    return json.dumps({name: getattr(record, name) for name in _FIELDS})


def decode(fields: dict[Any, Any]) -> dict[str, Any]:
    """An event's fields; any a newer gateway added that this release does not know
    are left out, so a rolling deploy's old drain still stores the event."""
    raw = fields.get(FIELD) or fields.get(FIELD.decode()) or b"{}"
    value: dict[str, Any] = json.loads(raw)
    return {name: value[name] for name in _FIELDS if name in value}
