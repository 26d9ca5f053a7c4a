"""Operators refund charges and import and compare price versions in the admin."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization, User
from billing import price_imports
from billing.models import LedgerEntry, Price
from billing.price_imports import PriceRowsInvalid
from billing.services import (
    billing_account,
    ledger_post,
    ledger_reconcile,
    prices_import,
    refund_issue,
)
from oneflow.lib import config_version, redis
from oneflow.lib.errors import Conflict, ServiceError
from tests.factories import CreditGrantFactory, OrganizationFactory, UserFactory

PRICES_JSON = Path(__file__).resolve().parents[2] / "billing" / "data" / "prices.json"
IMPORT_URL = "admin:billing_price_import"


def staff_with(*codenames: str) -> User:
    """A staff member who holds only the named billing permissions."""
    user = UserFactory.create(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="billing", codename__in=codenames))
    return user


def charged(organization: Organization, request_id: str, amount: str) -> LedgerEntry:
    """A request charged as the usage drain charges it, on a balance that covers it."""
    CreditGrantFactory.create(organization=organization, amount=Decimal(100))
    return ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.CHARGE,
        amount=-Decimal(amount),
        idempotency_key=f"usage:{request_id}",
        request_id=request_id,
    )


def refunds(request_id: str) -> list[Decimal]:
    return list(
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REFUND, request_id=request_id)
        .order_by("pk")
        .values_list("amount", flat=True)
    )


def balance_matches_ledger(organization: Organization) -> bool:
    balance, total = ledger_reconcile(organization=organization)
    return balance == total


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def config_version_now() -> int:
    return int(redis.sync_client().get(config_version.KEY) or 0)


def later(days: int = 30) -> str:
    return (timezone.now() + timedelta(days=days)).replace(microsecond=0).isoformat()


# --- Refunds: the service --------------------------------------------------------------------


def test_it_refunds_the_rest_of_a_charge_when_no_amount_is_given(acme: Organization) -> None:
    charged(acme, "req_1", "30")

    refund = refund_issue(organization=acme, request_id="req_1", note="model was down")

    assert (refund.kind, refund.amount, refund.request_id, refund.note) == (
        "refund",
        Decimal(30),
        "req_1",
        "model was down",
    )
    assert billing_account(organization=acme).balance == Decimal(100)
    assert balance_matches_ledger(acme)


def test_it_refunds_part_of_a_charge_and_then_only_what_is_left(acme: Organization) -> None:
    charged(acme, "req_1", "30")

    refund_issue(organization=acme, request_id="req_1", amount=Decimal("12.5"))
    rest = refund_issue(organization=acme, request_id="req_1")

    assert rest.amount == Decimal("17.5")
    assert refunds("req_1") == [Decimal("12.5"), Decimal("17.5")]
    with pytest.raises(Conflict) as refused:
        refund_issue(organization=acme, request_id="req_1")
    assert (refused.value.code, refused.value.param) == ("already_refunded", "request_id")
    assert billing_account(organization=acme).balance == Decimal(100)
    assert balance_matches_ledger(acme)


def test_it_never_refunds_more_than_was_charged(acme: Organization) -> None:
    charged(acme, "req_1", "30")
    with pytest.raises(Conflict) as refused:
        refund_issue(organization=acme, request_id="req_1", amount=Decimal("30.0000000001"))
    assert (refused.value.code, refused.value.param) == ("refund_exceeds_charge", "amount")

    refund_issue(organization=acme, request_id="req_1", amount=Decimal(25))
    with pytest.raises(Conflict) as refused_again:
        refund_issue(organization=acme, request_id="req_1", amount=Decimal(6))
    assert "At most 5 credits" in refused_again.value.message
    assert refunds("req_1") == [Decimal(25)]
    assert billing_account(organization=acme).balance == Decimal(95)
    assert balance_matches_ledger(acme)


def test_it_refuses_requests_never_charged_and_amounts_that_are_not_positive(acme: Organization) -> None:
    charged(acme, "req_1", "30")
    other = OrganizationFactory.create()

    for organization, request_id in ((acme, "req_unknown"), (other, "req_1")):
        with pytest.raises(ServiceError) as never_charged:
            refund_issue(organization=organization, request_id=request_id)
        assert (never_charged.value.code, never_charged.value.param) == ("not_charged", "request_id")
    for amount in (Decimal(0), Decimal(-5)):
        with pytest.raises(ServiceError) as not_positive:
            refund_issue(organization=acme, request_id="req_1", amount=amount)
        assert not_positive.value.param == "amount"
    assert refunds("req_1") == []


def test_a_refund_decided_twice_on_the_same_state_is_issued_once(acme: Organization) -> None:
    charged(acme, "req_1", "30")

    first = refund_issue(organization=acme, request_id="req_1", amount=Decimal(5), refunds_seen=0)
    again = refund_issue(organization=acme, request_id="req_1", amount=Decimal(5), refunds_seen=0)

    assert again.pk == first.pk
    assert refunds("req_1") == [Decimal(5)]
    with pytest.raises(Conflict) as stale:  # another amount, decided before the first refund was seen
        refund_issue(organization=acme, request_id="req_1", amount=Decimal(7), refunds_seen=0)
    assert stale.value.code == "refunds_changed"
    assert billing_account(organization=acme).balance == Decimal(75)


# --- Refunds: the admin ----------------------------------------------------------------------


def test_the_refund_action_refunds_each_selected_charge_once(as_operator: Client, acme: Organization) -> None:
    first = charged(acme, "req_1", "30")
    second = charged(acme, "req_2", "20")
    refund_issue(organization=acme, request_id="req_2", amount=Decimal(5))
    grant = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.GRANT).first()
    assert grant is not None
    changelist = reverse("admin:billing_ledgerentry_changelist")
    selected = {"action": "refund_charges", "_selected_action": [first.pk, second.pk, grant.pk]}

    done = as_operator.post(changelist, selected)
    assert done.status_code == 302
    assert refunds("req_1") == [Decimal(30)]
    assert refunds("req_2") == [Decimal(5), Decimal(15)]
    assert "Refunded 2 charge(s), 45.00 credits in all." in messages_of(done)[0]
    assert "Skipped 1 entries that are not refundable charges." in messages_of(done)[0]

    again = as_operator.post(changelist, selected)  # a double submit
    assert "Refunded 0 charge(s)" in messages_of(again)[-1]
    assert "Skipped 2 already fully refunded." in messages_of(again)[-1]
    assert refunds("req_1") == [Decimal(30)]
    assert billing_account(organization=acme).balance == Decimal(200)
    assert balance_matches_ledger(acme)


def test_an_operator_refunds_part_of_a_charge_once_however_often_the_form_is_sent(
    as_operator: Client, acme: Organization, operator: User
) -> None:
    charge = charged(acme, "req_1", "30")
    url = reverse("admin:billing_ledgerentry_refund", args=[charge.pk])
    page = as_operator.get(url)
    assert page.status_code == 200
    assert "30.00 credits" in page.content.decode()
    form = {"amount": "12.50", "note": "slow answer", "refunds_seen": page.context["form"]["refunds_seen"].value()}

    for _ in range(2):  # a double submit
        response = as_operator.post(url, form)
        assert response.status_code == 302
    [refund] = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REFUND)
    assert (refund.amount, refund.note, refund.created_by) == (Decimal("12.5"), "slow answer", operator)
    assert "17.50 credits" in as_operator.get(url).content.decode()  # what can still be refunded
    assert balance_matches_ledger(acme)


def test_the_refund_page_refuses_more_than_is_left(as_operator: Client, acme: Organization) -> None:
    charge = charged(acme, "req_1", "30")
    url = reverse("admin:billing_ledgerentry_refund", args=[charge.pk])

    response = as_operator.post(url, {"amount": "30.01", "refunds_seen": "0"})

    assert response.status_code == 200
    assert "At most 30 credits of request req_1 can still be refunded." in response.content.decode()
    assert refunds("req_1") == []


def test_only_operators_who_may_refund_see_the_page_and_the_action(client: Client, acme: Organization) -> None:
    charge = charged(acme, "req_1", "30")
    client.force_login(staff_with("view_ledgerentry"))

    assert client.get(reverse("admin:billing_ledgerentry_refund", args=[charge.pk])).status_code == 403
    changelist = reverse("admin:billing_ledgerentry_changelist")
    assert "refund_charges" not in client.get(changelist).content.decode()
    client.post(changelist, {"action": "refund_charges", "_selected_action": [charge.pk]})
    assert refunds("req_1") == []


# --- Price imports -------------------------------------------------------------------------


def upload(client: Client, name: str, content: str) -> Any:
    return client.post(reverse(IMPORT_URL), {"file": SimpleUploadedFile(name, content.encode())})


def price_file(effective_from: str, *rows: dict[str, str]) -> str:
    """A file in the format of billing/data/prices.json."""
    return json.dumps({"effective_from": effective_from, "prices": list(rows)})


def test_the_preview_compares_each_row_with_the_price_in_force(as_operator: Client) -> None:
    versions_before = Price.objects.count()
    content = price_file(
        later(),
        {"model": "gpt-4o-mini", "input": "0.30", "cached_input": "0.075", "output": "0.48"},
        {"model": "acme-llm", "input": "1", "cached_input": "0.5", "output": "2"},
    )

    preview = upload(as_operator, "prices.json", content)

    assert preview.status_code == 200
    [mini, new] = preview.context["preview"]
    assert [(c.old, c.new, c.percent) for c in mini.changes[:3]] == [
        (Decimal("0.15"), Decimal("0.30"), Decimal("100.0")),
        (Decimal("0.075"), Decimal("0.075"), Decimal(0)),
        (Decimal("0.60"), Decimal("0.48"), Decimal("-20.0")),
    ]
    page = preview.content.decode()
    assert "0.15 &rarr; <strong>0.30</strong> (+100.0%)" in page
    assert "0.60 &rarr; <strong>0.48</strong> (-20.0%)" in page
    assert new.current is None
    assert "new model" in page
    assert Price.objects.count() == versions_before, "a preview imports nothing"


def test_confirming_the_preview_creates_the_versions_and_reloads_gateways(
    as_operator: Client, django_capture_on_commit_callbacks: Any
) -> None:
    starts = later()
    content = (
        "model,effective_from,input,cached_input,output,request_fee,is_free,note\n"
        f"gpt-4o-mini,{starts},0.30,0.075,0.48,0.001,false,summer price\n"
        f"acme-llm,{starts},0,0,0,,true,\n"
    )
    preview = upload(as_operator, "prices.csv", content)
    [hidden_rows] = re.findall(r'<input type="hidden" name="rows" value="([^"]*)"', preview.content.decode())
    version = config_version_now()

    with django_capture_on_commit_callbacks(execute=True):
        done = as_operator.post(reverse(IMPORT_URL), {"rows": html.unescape(hidden_rows)})

    assert done.status_code == 302
    assert "Imported 2 price version(s)." in messages_of(done)
    mini = Price.objects.get(public_model="gpt-4o-mini", effective_from=datetime.fromisoformat(starts))
    assert (mini.input_per_1m, mini.output_per_1m, mini.request_fee, mini.note) == (
        Decimal("0.30"),
        Decimal("0.48"),
        Decimal("0.001"),
        "summer price",
    )
    free = Price.objects.get(public_model="acme-llm")
    assert (free.is_free, free.note) == (True, "imported by ops@oneflow.local")
    assert config_version_now() == version + 1

    again = as_operator.post(reverse(IMPORT_URL), {"rows": html.unescape(hidden_rows)})  # a double submit
    assert again.status_code == 200
    assert "already exists" in again.content.decode()
    assert Price.objects.filter(public_model="acme-llm").count() == 1


def test_an_invalid_file_reports_every_row_error_and_creates_nothing(as_operator: Client) -> None:
    versions_before = Price.objects.count()
    starts = later()
    content = (
        "model,effective_from,input,cached_input,output\n"
        f"gpt-4o,{starts},2.50,1.25,10\n"
        f"gpt-4o-mini,{starts},-1,0.075,0.60\n"
        f"o3,{starts},two,0.50,8\n"
        "o4-mini,2020-01-01T00:00:00Z,1.10,0.275,4.40\n"
        f"gpt-4o,{starts},3,1.25,10\n"
        f"gpt-5,{starts.replace('+00:00', '')},1,1,1\n"
        f"gpt-5-mini,{starts},0.1234567,0,0\n"
    )

    response = upload(as_operator, "prices.csv", content)

    assert response.status_code == 200
    errors = response.context["errors"]
    assert errors == [
        "Row 2: input_per_1m must not be negative (got -1).",
        "Row 3: input_per_1m 'two' is not a decimal number.",
        "Row 4: effective_from 2020-01-01T00:00:00Z is in the past.",
        "Row 5: same model and effective_from as row 1.",
        f"Row 6: effective_from '{starts.replace('+00:00', '')}' has no time zone (add Z for UTC).",
        "Row 7: input_per_1m 0.1234567 has more than 6 decimal places.",
    ]
    assert "Row 2: input_per_1m must not be negative" in response.content.decode()
    assert Price.objects.count() == versions_before


def test_the_import_service_creates_all_rows_or_none(db: None) -> None:
    versions_before = Price.objects.count()
    rows = [
        {
            "public_model": "gpt-4o",
            "effective_from": later(),
            "input_per_1m": "3",
            "cached_input_per_1m": "1",
            "output_per_1m": "9",
        },
        {"public_model": "o3", "effective_from": later(), "input_per_1m": "1", "output_per_1m": "1", "inptu": "2"},
    ]
    with pytest.raises(PriceRowsInvalid) as refused:
        prices_import(rows=rows)
    assert refused.value.errors == ["Row 2: unknown column 'inptu'.", "Row 2: cached_input_per_1m is missing."]
    assert refused.value.param == "rows"
    assert Price.objects.count() == versions_before

    created = prices_import(rows=rows[:1])
    assert [(price.public_model, price.input_per_1m) for price in created] == [("gpt-4o", Decimal(3))]


def test_a_version_starting_when_another_of_its_model_does_is_refused(as_operator: Client) -> None:
    starts = later()
    prices_import(
        rows=[
            {
                "public_model": "gpt-4o",
                "effective_from": starts,
                "input_per_1m": "3",
                "cached_input_per_1m": "1",
                "output_per_1m": "9",
            }
        ]
    )
    content = price_file(starts, {"model": "gpt-4o", "input": "4", "cached_input": "1", "output": "9"})

    response = upload(as_operator, "prices.json", content)

    assert response.context["errors"] == [f"Row 1: a version of gpt-4o from {starts} already exists."]
    assert Price.objects.filter(public_model="gpt-4o", input_per_1m=4).count() == 0


def test_the_seed_file_is_an_import_file(db: None) -> None:
    rows = price_imports.rows_from_file(name="prices.json", content=PRICES_JSON.read_bytes())

    assert rows[1] == {
        "effective_from": "2025-01-01T00:00:00Z",
        "public_model": "gpt-4o-mini",
        "input_per_1m": "0.15",
        "cached_input_per_1m": "0.075",
        "output_per_1m": "0.60",
    }
    with pytest.raises(PriceRowsInvalid) as refused:  # its versions are in force already
        price_imports.price_rows_check(rows=rows, now=timezone.now(), existing=set())
    assert len(refused.value.errors) == len(rows)


def test_an_import_takes_cache_write_rates_and_leaves_out_means_anthropics_rule(db: None) -> None:
    starts = later()
    content = (
        "model,effective_from,input,cached_input,output,cache_write_5m,cache_write_1h\n"
        f"claude-sonnet-4,{starts},3,0.30,15,3.90,6.50\n"
        f"claude-haiku-4-5,{starts},0.000001,0.1,5,,\n"
    ).encode()
    rows = price_imports.rows_from_file(name="prices.csv", content=content)

    created = {price.public_model: price for price in prices_import(rows=rows)}

    sonnet, haiku = (Price.objects.get(pk=created[name].pk) for name in ("claude-sonnet-4", "claude-haiku-4-5"))
    assert (sonnet.cache_write_5m_per_1m, sonnet.cache_write_1h_per_1m) == (Decimal("3.90"), Decimal("6.50"))
    assert (haiku.cache_write_5m_per_1m, haiku.cache_write_1h_per_1m) == (Decimal("0.00000125"), Decimal("0.000002"))


def test_cache_write_rates_are_bounded_and_have_at_most_8_places(db: None) -> None:
    row = {"public_model": "m", "effective_from": later(), "input_per_1m": "1", "cached_input_per_1m": "1"}
    rows = [
        {**row, "output_per_1m": "1", "cache_write_5m_per_1m": "0.123456789"},
        {**row, "output_per_1m": "1", "cache_write_1h_per_1m": "2000001", "public_model": "n"},
        {**row, "output_per_1m": "1", "cache_write_1h_per_1m": "-1", "public_model": "o"},
    ]
    with pytest.raises(PriceRowsInvalid) as refused:
        prices_import(rows=rows)
    assert refused.value.errors == [
        "Row 1: cache_write_5m_per_1m 0.123456789 has more than 8 decimal places.",
        "Row 2: cache_write_1h_per_1m 2000001 is too large (at most 2000000).",
        "Row 3: cache_write_1h_per_1m must not be negative (got -1).",
    ]


def test_the_preview_compares_cache_write_rates_too(as_operator: Client) -> None:
    row = {"model": "claude-sonnet-4", "input": "3", "cached_input": "0.30", "output": "15", "cache_write_1h": "7.50"}
    content = price_file(later(), row)

    preview = upload(as_operator, "prices.json", content)

    [sonnet] = preview.context["preview"]
    by_field = dict(zip(price_imports.PRICE_FIELDS, sonnet.changes, strict=True))
    assert (by_field["cache_write_5m_per_1m"].old, by_field["cache_write_5m_per_1m"].new) == (
        Decimal("3.75"),
        Decimal("3.75"),
    )
    assert (by_field["cache_write_1h_per_1m"].new, by_field["cache_write_1h_per_1m"].percent) == (
        Decimal("7.50"),
        Decimal("25.0"),
    )
    assert "6.00 &rarr; <strong>7.50</strong> (+25.0%)" in preview.content.decode()


def test_only_operators_who_may_add_prices_can_import(client: Client) -> None:
    client.force_login(staff_with("view_price"))
    content = price_file(later(), {"model": "acme-llm", "input": "1", "cached_input": "1", "output": "1"})

    assert "Import prices" not in client.get(reverse("admin:billing_price_changelist")).content.decode()
    assert client.get(reverse(IMPORT_URL)).status_code == 403
    assert upload(client, "prices.json", content).status_code == 403
    assert client.get(reverse("admin:billing_price_compare")).status_code == 200
    assert not Price.objects.filter(public_model="acme-llm").exists()


# --- Comparing versions ----------------------------------------------------------------------


def test_compare_shows_the_changes_between_consecutive_versions(as_operator: Client) -> None:
    Price.objects.create(
        public_model="gpt-4o-mini",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        input_per_1m=Decimal("0.15"),
        cached_input_per_1m=Decimal("0.075"),
        output_per_1m=Decimal("0.75"),
    )
    Price.objects.create(
        public_model="gpt-4o-mini",
        effective_from=timezone.now() + timedelta(days=30),
        input_per_1m=Decimal("0.12"),
        cached_input_per_1m=Decimal("0.075"),
        output_per_1m=Decimal("0.75"),
        is_free=True,
    )

    response = as_operator.get(reverse("admin:billing_price_compare"), {"model": "gpt-4o-mini"})

    assert response.status_code == 200
    assert [version.status for version in response.context["versions"]] == ["past", "in force", "scheduled"]
    page = response.content.decode()
    assert "<strong>0.75</strong> (+25.0%, was 0.60)" in page
    assert "<strong>0.12</strong> (-20.0%, was 0.15)" in page
    assert "<strong>yes</strong> (changed)" in page
    assert page.count("was 0.075") == 0, "an unchanged price is not a difference"


def test_the_changelist_links_to_import_and_compare(as_operator: Client) -> None:
    page = as_operator.get(reverse("admin:billing_price_changelist")).content.decode()
    assert reverse(IMPORT_URL) in page
    assert reverse("admin:billing_price_compare") in page
    assert 'type="file"' in as_operator.get(reverse(IMPORT_URL)).content.decode()


def test_an_admin_price_edit_reloads_gateways(as_operator: Client, django_capture_on_commit_callbacks: Any) -> None:
    version = config_version_now()
    form = {
        "public_model": "acme-llm",
        "effective_from_0": "2099-01-01",
        "effective_from_1": "00:00:00",
        "input_per_1m": "1",
        "cached_input_per_1m": "1",
        "output_per_1m": "1",
        "request_fee": "0",
        "note": "",
        "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = as_operator.post(reverse("admin:billing_price_add"), form)
    assert response.status_code == 302
    assert config_version_now() == version + 1


def test_an_admin_price_left_without_cache_write_rates_gets_anthropics_rule(as_operator: Client) -> None:
    form = {
        "public_model": "acme-llm",
        "effective_from_0": "2099-01-01",
        "effective_from_1": "00:00:00",
        "input_per_1m": "0.000003",
        "cached_input_per_1m": "0",
        "output_per_1m": "1",
        "cache_write_1h_per_1m": "0.5",
        "request_fee": "0",
        "note": "",
        "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00",
    }
    assert as_operator.post(reverse("admin:billing_price_add"), form).status_code == 302
    price = Price.objects.get(public_model="acme-llm")
    assert (price.cache_write_5m_per_1m, price.cache_write_1h_per_1m) == (Decimal("0.00000375"), Decimal("0.5"))
    page = as_operator.get(reverse("admin:billing_price_change", args=[price.pk])).content.decode()
    assert "Empty: 1.25x the input price" in page
