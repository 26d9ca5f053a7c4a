"""Every Redis key OneFlow's own code names, built here and nowhere else.

Keys that one script touches together share a scope: an organization (its
credits, its budget windows, its key's limits), a deployment (its breaker and
provider quotas). Redis Cluster keeps keys in one slot only when their hash
tags agree; ``scope`` is where that tag goes (issue 17), the one line to change.
Names must not change between releases otherwise: a rolling deploy would run
old and new workers on different counters.
"""

from __future__ import annotations


def scope(value: int | str) -> str:
    """The part of a key that will choose its Cluster slot: ``"{" + str(value) + "}"`` for Cluster."""
    return str(value)


# The configuration version every gateway compares its snapshots with.
CONFIG_VERSION = "oneflow:config:version"

# The usage stream, its drain's consumer group's pending charges per
# organization, and the lock the drain and the seeding of counters share.
USAGE_STREAM = "oneflow:usage"
USAGE_PENDING = "oneflow:usage:pending"
DRAIN_LOCK = "oneflow:usage:drain-lock"
# Patterns the reconciliation scans for every organization's credits.
CREDITS_FREE_PATTERN = "oneflow:credits:*:free"
CREDITS_HOLDS_PATTERN = "oneflow:credits:*:holds"


def usage_journal_marker(worker: str) -> str:
    """The last stream id one gateway worker's journal knows was stored."""
    return f"oneflow:usage:journal:{worker}"


def credits_free(organization_id: int) -> str:
    return f"oneflow:credits:{scope(organization_id)}:free"


def credits_holds(organization_id: int) -> str:
    return f"oneflow:credits:{scope(organization_id)}:holds"


def credits_organization(key: bytes | str) -> int:
    """The organization of a key named by ``credits_free`` or ``credits_holds``."""
    text = key.decode() if isinstance(key, bytes) else key
    return int(text.split(":")[2].strip("{}"))


def budget_window(budget_id: int, start: int) -> str:
    return f"oneflow:budget:{scope(budget_id)}:{start}"


def limit(subject: str, subject_id: int, field: str) -> str:
    """A rate-limit counter: subject is "organization", "key" or "deployment"."""
    return f"oneflow:limit:{subject}:{scope(subject_id)}:{field}"


def breaker(deployment_id: int) -> str:
    return f"oneflow:breaker:{scope(deployment_id)}"


# Every breaker, every limit counter (tests and operators' clean-ups).
BREAKER_PATTERN = "oneflow:breaker:*"
LIMIT_PATTERN = "oneflow:limit:*"


def idempotency(key_prefix: str, value: str) -> str:
    return f"oneflow:idempotency:{scope(key_prefix)}:{value}"
