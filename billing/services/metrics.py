"""The business figures that /metrics serves: credits charged and outstanding, active
organizations and keys, sign-ups and the conversion funnel, the ledger's health.

They live in Redis (``oneflow.lib.figures``), not in a scrape: a job computes the
gauges every minute (``billing.publish_business_metrics``), the ledger
reconciliation reports what it found, and the usage drain adds what it charges
as it commits (``billing.services.usage._post_charges``).
So no scrape runs SQL, and every web process serves the same value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from accounts.models import ApiKey, Organization, User
from billing.models import BillingAccount, LedgerEntry
from billing.services.ledger import ledger_reconcile_all
from oneflow.lib import money, redis, scripts
from oneflow.lib.figures import FIGURES_KEY, figure_field
from oneflow.lib.scripts import Invocation, Script

logger = logging.getLogger(__name__)

# "Active": an API key the drain saw a request of (refused or served) in this window,
# and the organizations of those keys (ApiKey.last_used_at, written by the drain).
ACTIVE_WINDOW = timedelta(hours=24)
# Sign-ups are counted once their row is surely committed: a user's date_joined is
# set as the sign-up's transaction starts, which commits well within this.
SIGNUP_SETTLE = timedelta(minutes=1)
# Where the sign-ups counted so far end (not a figure: never served).
SIGNUPS_COUNTED_UNTIL = "signups:counted-until"
FUNNEL_STAGES = ("signed_up", "first_key", "first_request", "first_credits")

_PUBLISH = """
-- KEYS: the figures hash
-- ARGV: the sign-ups' watermark field, the watermark read ('' none), the new watermark,
--       the sign-ups counter's field, the sign-ups between the two watermarks,
--       then field, value pairs to set
-- Counts the sign-ups only if no other run moved the watermark since it was read, so a
-- sign-up is counted once however many runs overlap; returns 1 when it counted them.
local counted = 0
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('HINCRBY', KEYS[1], ARGV[4], ARGV[5])
  counted = 1
end
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
return counted
"""
PUBLISH = Script("metrics.publish", _PUBLISH)


@dataclass(frozen=True)
class BusinessFigures:
    credits_outstanding: Decimal  # credits, the sum of every balance
    negative_balances: int
    active_organizations: int
    active_keys: int
    funnel: dict[str, int] = field(default_factory=dict)  # organizations per stage
    signups: int = 0  # users who joined since the previous publication

    def gauges(self, *, now: datetime) -> dict[str, str]:
        values = {
            figure_field("oneflow_credits_outstanding"): str(self.credits_outstanding),
            figure_field("oneflow_negative_balances"): str(self.negative_balances),
            figure_field("oneflow_active_organizations"): str(self.active_organizations),
            figure_field("oneflow_active_keys"): str(self.active_keys),
            figure_field("oneflow_business_metrics_last_success_timestamp_seconds"): str(now.timestamp()),
        }
        for stage, organizations in self.funnel.items():
            values[figure_field("oneflow_funnel_organizations", stage)] = str(organizations)
        return values


def _business_figures(*, now: datetime, signups: int) -> BusinessFigures:
    """One read of the figures: a few aggregates over accounts, keys and organizations
    (a small table each), and the non-charge ledger entries (a partial index)."""
    balances = BillingAccount.objects.aggregate(total=Sum("balance"))["total"] or money.ZERO
    recent = ApiKey.objects.filter(last_used_at__gte=now - ACTIVE_WINDOW)
    api_keys = ApiKey.objects.filter(purpose=ApiKey.Purpose.API)
    credited = LedgerEntry.objects.filter(kind__in=[LedgerEntry.Kind.TOPUP, LedgerEntry.Kind.GRANT])
    funnel = {
        "signed_up": Organization.objects.count(),
        "first_key": api_keys.values("organization_id").distinct().count(),
        "first_request": api_keys.filter(last_used_at__isnull=False).values("organization_id").distinct().count(),
        "first_credits": credited.values("account__organization_id").distinct().count(),
    }
    return BusinessFigures(
        credits_outstanding=money.internal(balances),
        negative_balances=BillingAccount.objects.filter(balance__lt=0).count(),
        active_organizations=recent.values("organization_id").distinct().count(),
        active_keys=recent.count(),
        funnel=funnel,
        signups=signups,
    )


def business_metrics_publish(*, now: datetime | None = None) -> BusinessFigures:
    """Computes the business gauges and the sign-ups since the last run, and stores
    them where /metrics reads them. Safe to run twice or at once: the gauges are set,
    and the sign-ups are counted against a watermark moved in the same script."""
    now = now or timezone.now()
    client = redis.sync_client()
    read = _text(client.hget(FIGURES_KEY, SIGNUPS_COUNTED_UNTIL))
    since = _moment(read)
    until = max(now - SIGNUP_SETTLE, since) if since else now - SIGNUP_SETTLE
    joined = User.objects.filter(date_joined__lt=until)
    signups = (joined.filter(date_joined__gte=since) if since else joined).count()
    figures = _business_figures(now=now, signups=signups)
    pairs = [item for pair in figures.gauges(now=now).items() for item in pair]
    watermark = [SIGNUPS_COUNTED_UNTIL, read, _stamp(until)]
    counted = [figure_field("oneflow_signups_total"), signups]
    invocation: Invocation[int] = Invocation(PUBLISH, [FIGURES_KEY], [*watermark, *counted, *pairs], int)
    if not scripts.run(client, invocation):
        logger.info("sign-ups left to the run that moved the watermark first")
    return figures


def _stamp(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1_000_000))


def _moment(stamp: str) -> datetime | None:
    return datetime.fromtimestamp(int(stamp) / 1_000_000, UTC) if stamp else None


def _text(raw: bytes | str | None) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw or ""


def ledger_reconcile_report() -> list[int]:
    """The ledger reconciliation (``ledger_reconcile_all``), its count of disagreeing
    accounts kept for ``oneflow_ledger_reconciliation_mismatches``."""
    mismatched = ledger_reconcile_all()
    redis.sync_client().hset(FIGURES_KEY, figure_field("oneflow_ledger_reconciliation_mismatches"), len(mismatched))
    return mismatched
