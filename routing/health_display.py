"""How a deployment's live health reads in the admin pages (health list, overview)."""

from __future__ import annotations

from gateway.breakers import Health, State

NONE = "—"
_STATES = {State.CLOSED: "closed", State.HALF_OPEN: "half-open", State.OPEN: "open"}


def breaker_text(health: Health | None, *, unknown: str = NONE) -> str:
    if health is None:
        return unknown
    label = _STATES[health.state]
    return f"{label} (forced)" if health.forced else label


def error_rate_text(health: Health | None) -> str:
    if health is None or health.error_rate is None:
        return NONE
    return f"{health.error_rate:.0%} of {health.calls}"


def milliseconds(value: float | None) -> str:
    return NONE if value is None else f"{value:.0f} ms"
