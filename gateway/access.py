"""The access log of the proxy API: one INFO line per /v1 call on the logger
``oneflow.access``, written when the call is recorded (``gateway.settlement.finish``),
so it holds what the usage event holds: status, timings, who, which model and
deployment, tokens by class, cost, attempts. Never the prompt or the answer: nothing
here reads ``call.body``, ``call.relay`` or ``call.generated``.

``ACCESS_LOG=false`` turns it off; so does a level above INFO for ``oneflow.access``
(``LOG_LEVELS``). docs/logging.md lists the fields and what a line costs.
"""

from __future__ import annotations

import logging

from django.conf import settings

from billing.pricing import Tokens
from gateway.call import Call

logger = logging.getLogger("oneflow.access")


def log(call: Call, *, used: Tokens) -> None:
    """Writes the call's access line; ``used`` is its tokens as priced (``settlement.usage_tokens``)."""
    if not settings.ACCESS_LOG or not logger.isEnabledFor(logging.INFO):
        return
    request, key, model, deployment = call.request, call.key, call.model, call.deployment
    fields = {
        "request_id": request.request_id,
        "endpoint": call.endpoint,
        "status": call.status_code,
        "error_type": call.error_type or None,
        "latency_ms": request.elapsed_ms(),
        "ttft_ms": call.ttft_ms,
        "upstream_ms": None if call.upstream_ms is None else round(call.upstream_ms),
        "organization_id": key.organization_id if key else None,
        "key_id": key.public_id if key else None,  # the key's public id, never its secret
        "model": model.name if model else None,
        # What the client asked for, kept only when it named no model it may use.
        "requested_model": None if model else call.requested_model or None,
        "deployment_id": deployment.id if deployment else None,
        "provider": call.provider or None,
        "route": call.route or None,
        "stream": call.stream,
        "prompt_tokens": used.prompt,
        "cached_tokens": used.cached,
        "cache_write_5m_tokens": used.cache_write_5m,
        "cache_write_1h_tokens": used.cache_write_1h,
        "completion_tokens": used.completion,
        "reasoning_tokens": used.reasoning,
        "cost": call.cost,  # credits at the request's price, None when unpriced
        "charged": call.charged,  # credits the ledger is asked to take: min(cost, hold)
        "attempts": call.attempts,
        "usage_source": call.usage_source if call.usage else "void",
        "client_disconnected": call.client_disconnected,
    }
    logger.info("%s %s %s", request.method, request.path, call.status_code, extra=fields)
