"""The credits ledger: append-only, idempotent, and the balance is always its sum, never negative."""

from __future__ import annotations

import contextlib
import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Organization
from billing.models import BillingAccount, LedgerEntry
from billing.services import InsufficientCredits, billing_account, credits_grant, ledger_post, ledger_reconcile
from oneflow.lib.errors import Conflict
from tests.factories import CreditGrantFactory, OrganizationFactory

amounts = st.decimals(min_value=Decimal("0.0000000001"), max_value=Decimal(1000), places=10)
operations = st.lists(st.tuples(st.sampled_from(["grant", "charge", "refund"]), amounts), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_the_balance_equals_the_ledger_sum_after_any_sequence(db: None, ops: list[tuple[str, Decimal]]) -> None:
    organization = OrganizationFactory.create()
    for index, (kind, amount) in enumerate(ops):
        signed = -amount if kind == "charge" else amount
        key = f"{organization.pk}:{index}"
        with contextlib.suppress(InsufficientCredits):
            ledger_post(organization=organization, kind=kind, amount=signed, idempotency_key=key)
    balance, total = ledger_reconcile(organization=organization)
    assert balance == total
    assert balance >= 0


def test_a_charge_that_does_not_fit_is_refused_and_changes_nothing(acme: Organization) -> None:
    credits_grant(organization=acme, amount=Decimal("5"), idempotency_key="grant-1")
    with pytest.raises(InsufficientCredits) as refused:
        ledger_post(organization=acme, kind="charge", amount=Decimal("-5.0000000001"), idempotency_key="charge-1")
    assert refused.value.status_code == 402
    assert billing_account(organization=acme).balance == Decimal("5")
    assert LedgerEntry.objects.count() == 1


def test_posting_the_same_key_twice_counts_once(acme: Organization) -> None:
    first = credits_grant(organization=acme, amount=Decimal("10"), idempotency_key="topup-42")
    again = credits_grant(organization=acme, amount=Decimal("10"), idempotency_key="topup-42")
    assert again.pk == first.pk
    assert billing_account(organization=acme).balance == Decimal("10")
    with pytest.raises(Conflict):
        credits_grant(organization=acme, amount=Decimal("11"), idempotency_key="topup-42")


def test_the_database_refuses_a_negative_balance(acme: Organization) -> None:
    account = billing_account(organization=acme)
    with pytest.raises(IntegrityError), transaction.atomic():
        BillingAccount.objects.filter(pk=account.pk).update(balance=Decimal("-0.01"))


@pytest.mark.django_db(transaction=True)
def test_concurrent_charges_never_overspend(live_services: None) -> None:
    organization = OrganizationFactory.create()
    CreditGrantFactory.create(organization=organization, amount=Decimal(10))
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def charge(index: int) -> None:
        barrier.wait()
        try:
            ledger_post(organization=organization, kind="charge", amount=Decimal(-1), idempotency_key=f"c{index}")
            outcomes.append("charged")
        except InsufficientCredits:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=charge, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count("charged") == 10
    assert outcomes.count("refused") == 10
    assert ledger_reconcile(organization=organization) == (Decimal(0), Decimal(0))


def test_an_operator_grants_credits_once_in_the_admin(
    as_operator, acme: Organization, django_capture_on_commit_callbacks
) -> None:
    from django.urls import reverse

    account = billing_account(organization=acme)
    url = reverse("admin:billing_billingaccount_change", args=[account.pk])
    form = {"markup": "1.0000", "grant": "25.50", "note": "welcome", "grant_key": "admin-grant:fixed"}
    for _ in range(2):  # a double submit
        with django_capture_on_commit_callbacks(execute=True):
            assert as_operator.post(url, form).status_code == 302
    account.refresh_from_db()
    assert account.balance == Decimal("25.5")
    [entry] = LedgerEntry.objects.all()
    assert (entry.kind, entry.note, str(entry.created_by)) == ("grant", "welcome", "ops@oneflow.local")
    page = as_operator.get(url).content.decode()
    assert "25.50" in page
