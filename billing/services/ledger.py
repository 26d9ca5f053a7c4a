"""Credit writes: the ledger posting every balance change goes through, grants,
refunds, and the reconciliations of the balance with the ledger and of Redis's
free credits with the balance.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from accounts.models import Organization, User
from billing import holds, selectors
from billing.holds import to_units
from billing.models import BillingAccount, LedgerEntry
from billing.services.usage import DRAIN_LOCK_SECONDS
from oneflow.lib import money, redis, redis_keys, scripts
from oneflow.lib.errors import Conflict, ServiceError

logger = logging.getLogger(__name__)


# --- Credits -------------------------------------------------------------------------


class InsufficientCredits(ServiceError):
    status_code = 402
    default_code = "insufficient_quota"


def billing_account(*, organization: Organization) -> BillingAccount:
    account, _ = BillingAccount.objects.get_or_create(organization=organization)
    return account


def ledger_post(
    *,
    organization: Organization,
    kind: str,
    amount: Decimal,
    idempotency_key: str,
    note: str = "",
    created_by: User | None = None,
    request_id: str = "",
) -> LedgerEntry:
    """Appends one balance change and moves the balance with it, atomically.

    The account row is locked for the change, so concurrent postings queue and
    the balance always equals the sum of the entries. A posting that would take
    the balance below zero is refused (and the database constraint would
    refuse it too). Posting the same idempotency key again returns the first
    entry; with a different amount it is a conflict.
    """
    amount = money.internal(amount)
    with transaction.atomic(durable=True):
        account = BillingAccount.objects.select_for_update().get(pk=billing_account(organization=organization).pk)
        existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.amount != amount or existing.account_id != account.pk:
                raise Conflict("This idempotency key was used for another posting.", code="idempotency_conflict")
            return existing
        if account.balance + amount < 0:
            raise InsufficientCredits(
                f"The balance ({money.display_text(account.balance)}) cannot cover {money.display_text(-amount)}."
            )
        entry = LedgerEntry.objects.create(
            account=account,
            kind=kind,
            amount=amount,
            idempotency_key=idempotency_key,
            note=note,
            created_by=created_by,
            request_id=request_id,
        )
        account.balance = money.internal(account.balance + amount)
        account.save(update_fields=["balance", "updated_at"])
        # Redis learns the new balance by seeding it again from the ledger.
        organization_id = organization.pk
        transaction.on_commit(lambda: holds.forget(redis.sync_client(), organization_id=organization_id))
    return entry


def credits_grant(
    *, organization: Organization, amount: Decimal, idempotency_key: str, note: str = "", created_by: User | None = None
) -> LedgerEntry:
    if amount <= 0:
        raise ServiceError("A grant must be a positive amount.", param="amount")
    return ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.GRANT,
        amount=amount,
        idempotency_key=idempotency_key,
        note=note,
        created_by=created_by,
    )


def ledger_reconcile(*, organization: Organization) -> tuple[Decimal, Decimal]:
    """(balance, sum of entries) of an organization; they must be equal."""
    account = billing_account(organization=organization)
    return account.balance, selectors.ledger_sum(account=account)


# --- Reconciliation ----------------------------------------------------------------------


def credits_reconcile(*, now: float | None = None) -> dict[int, int]:
    """Gives back the holds of requests that died, and sets each organization's
    free credits in Redis to the ledger's figure; returns the corrections made
    (units, positive when Redis had too little).

    Redis takes whole units per charge where the ledger takes exact amounts,
    so small positive corrections are expected; anything else is logged.
    """
    client = redis.sync_client()
    organizations = {
        redis_keys.credits_organization(key)
        for pattern in (redis_keys.CREDITS_FREE_PATTERN, redis_keys.CREDITS_HOLDS_PATTERN)
        for key in client.scan_iter(match=pattern, count=1000)
    }
    corrections = {}
    for organization_id in sorted(organizations):
        scripts.run(client, holds.expire(organization_id=organization_id, now=now))
        if holds.free_units(client, organization_id=organization_id) is None:
            continue
        # Under the drain's lock, no batch is both in the ledger and pending in Redis.
        with client.lock(redis_keys.DRAIN_LOCK, timeout=DRAIN_LOCK_SECONDS, blocking_timeout=DRAIN_LOCK_SECONDS):
            balance = selectors.credits_balance(organization_id=organization_id)
            seeded = scripts.run(
                client,
                holds.seed(organization_id=organization_id, ledger_units=to_units(balance, round_up=False), force=True),
            )
        if seeded.before is not None and seeded.before != seeded.after:
            corrections[organization_id] = seeded.after - seeded.before
            logger.info(
                "free credits reconciled with the ledger",
                extra={"organization_id": organization_id, "units": seeded.after - seeded.before},
            )
    return corrections


def ledger_reconcile_all() -> list[int]:
    """Organizations whose balance is not the sum of their ledger; each is logged as an error.

    Nothing is fixed automatically: a mismatch means a bug or a hand edit, and
    an operator must look at it.
    """
    sums = dict(
        LedgerEntry.objects.values("account_id").annotate(total=Sum("amount")).values_list("account_id", "total")
    )
    mismatched = []
    for account in BillingAccount.objects.only("pk", "organization_id", "balance").iterator():
        total = money.internal(sums.get(account.pk) or money.ZERO)
        if total != account.balance:
            mismatched.append(account.organization_id)
            logger.error(
                "ledger and balance disagree",
                extra={
                    "organization_id": account.organization_id,
                    "balance": str(account.balance),
                    "ledger": str(total),
                },
            )
    return mismatched


# --- Refunds -----------------------------------------------------------------------------


def refund_issue(
    *,
    organization: Organization,
    request_id: str,
    amount: Decimal | None = None,
    refunds_seen: int | None = None,
    note: str = "",
    created_by: User | None = None,
) -> LedgerEntry:
    """Gives back all or part of what one request was charged, as a REFUND entry posted by ledger_post.

    The refunds of a request never add up to more than its charge; ``amount``
    None refunds what is left. The refunds of a request form a chain: the n-th
    has the idempotency key ``refund:<request_id>:<n>``, and ``refunds_seen``
    is how many the caller saw when it decided (a form sends the number it
    showed; None: as now). So a double submit returns the first entry instead
    of refunding twice, and of two refunds decided on the same state only one
    posts: the other meets the same key in ledger_post (a Conflict, or the
    first entry back if the amounts agree). Refunding a request never charged
    to ``organization``, or a zero or negative amount, is a ServiceError.
    """
    if not request_id:
        raise ServiceError("A refund names the request it refunds.", param="request_id")
    if amount is not None and amount <= 0:
        raise ServiceError("A refund must be a positive amount.", param="amount")
    if len(note) > 300:
        raise ServiceError("The note is longer than 300 characters.", param="note")
    state = selectors.refundable(organization_id=organization.pk, request_id=request_id)
    if state.charged <= 0:
        raise ServiceError(
            f"Request {request_id} was never charged to {organization}.", code="not_charged", param="request_id"
        )
    seen = state.refunds if refunds_seen is None else refunds_seen
    key = f"refund:{request_id}:{seen + 1}"
    issued = LedgerEntry.objects.filter(idempotency_key=key, account__organization=organization).first()
    if issued is not None and (amount is None or money.internal(amount) == issued.amount):
        return issued
    if seen != state.refunds:
        raise Conflict(
            f"Request {request_id} was refunded meanwhile; look at its refunds again.",
            code="refunds_changed",
            param="refunds_seen",
        )
    remaining = state.remaining
    if remaining <= 0:
        raise Conflict(f"Request {request_id} is already fully refunded.", code="already_refunded", param="request_id")
    amount = remaining if amount is None else money.internal(amount)
    if amount > remaining:
        raise Conflict(
            f"At most {remaining.normalize():f} credits of request {request_id} can still be refunded.",
            code="refund_exceeds_charge",
            param="amount",
        )
    return ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.REFUND,
        amount=amount,
        idempotency_key=key,
        note=note or f"refund of request {request_id}",
        created_by=created_by,
        request_id=request_id,
    )
