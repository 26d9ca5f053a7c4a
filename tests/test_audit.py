"""The operator audit log: each staff action in the admin leaves one entry naming
who did what to which row, the changed fields before and after (never a
secret), and when; the log is shown read-only and outlives usage retention."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from accounts.models import ApiKey, Membership, Organization, User
from audit.models import AuditEntry
from audit.services import SECRET_MASK, audit_record
from billing import services as billing_services
from billing.models import LedgerEntry, Price
from gateway import breakers
from providers.models import Credential, Deployment, Provider
from providers.services import catalog_seed_demo
from tests.factories import CreditGrantFactory, OperatorFactory, ProviderFactory
from tests.providers.test_routing_config import public_model_form as base_public_model_form

Action = AuditEntry.Action
SECRET = "sk-upstream-audit-0123456789"


def the_entry() -> AuditEntry:
    """The one entry the log holds: the test fails if there are none or several."""
    [entry] = AuditEntry.objects.all()
    return entry


def who_what(entry: AuditEntry) -> tuple[Any, ...]:
    return entry.actor, entry.actor_email, entry.action, f"{entry.app_label}.{entry.model}", entry.object_id


def row(obj: Model) -> tuple[str, str]:
    return obj._meta.label_lower, str(obj.pk)


def admin_url(obj: Model, view: str = "change") -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=[obj.pk])


def changelist(label: str) -> str:
    return reverse(f"admin:{label.replace('.', '_')}_changelist")


def charged(organization: Organization, request_id: str, amount: str) -> LedgerEntry:
    CreditGrantFactory.create(organization=organization, amount=Decimal(100))
    return billing_services.ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.CHARGE,
        amount=-Decimal(amount),
        idempotency_key=f"usage:{request_id}",
        request_id=request_id,
    )


# --- Money -----------------------------------------------------------------------------------


def test_a_credit_grant_is_recorded_once_even_when_submitted_twice(
    as_operator: Client, operator: User, acme: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    account = billing_services.billing_account(organization=acme)
    form = {"markup": "1.0000", "grant": "25.50", "note": "welcome", "grant_key": "admin-grant:fixed"}
    for _ in range(2):  # a double submit grants once, and is recorded once
        with django_capture_on_commit_callbacks(execute=True):
            assert as_operator.post(admin_url(account), form).status_code == 302

    grant = LedgerEntry.objects.get(kind=LedgerEntry.Kind.GRANT)
    entry = the_entry()  # the markup did not change: no "change" entry besides the grant
    assert who_what(entry) == (operator, "ops@oneflow.local", Action.CREDITS_GRANT, *row(grant))
    assert Decimal(entry.changes["amount"]["after"]) == Decimal("25.5")
    assert entry.changes["note"] == {"before": None, "after": "welcome"}
    assert entry.changes["account"] == {"before": None, "after": account.pk}


def test_a_refund_is_recorded_with_its_amount_and_request(
    as_operator: Client, operator: User, acme: Organization
) -> None:
    charge = charged(acme, "req_1", "30")
    url = reverse("admin:billing_ledgerentry_refund", args=[charge.pk])
    form = {"amount": "12.50", "note": "slow answer", "refunds_seen": "0"}
    for _ in range(2):  # a double submit refunds once, and is recorded once
        assert as_operator.post(url, form).status_code == 302

    refund = LedgerEntry.objects.get(kind=LedgerEntry.Kind.REFUND)
    entry = the_entry()
    assert who_what(entry) == (operator, "ops@oneflow.local", Action.REFUND, *row(refund))
    assert Decimal(entry.changes["amount"]["after"]) == Decimal("12.5")
    assert entry.changes["request_id"] == {"before": None, "after": "req_1"}


def test_the_refund_action_is_recorded_per_charge(as_operator: Client, operator: User, acme: Organization) -> None:
    charges = [charged(acme, "req_1", "30"), charged(acme, "req_2", "5")]
    as_operator.post(
        changelist("billing.ledgerentry"),
        {"action": "refund_charges", "_selected_action": [charge.pk for charge in charges]},
    )
    refunds = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REFUND).order_by("pk")
    assert [(entry.action, entry.object_id) for entry in AuditEntry.objects.order_by("pk")] == [
        (Action.REFUND, str(refund.pk)) for refund in refunds
    ]


# --- Prices ----------------------------------------------------------------------------------


def test_a_price_edit_records_the_changed_fields_before_and_after(as_operator: Client, operator: User) -> None:
    starts = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    price = Price.objects.create(
        public_model="acme-llm",
        effective_from=starts,
        input_per_1m=Decimal(1),
        cached_input_per_1m=Decimal("0.5"),
        output_per_1m=Decimal(2),
        created_at=starts - timedelta(days=31),
    )
    form = {
        "public_model": "acme-llm",
        "effective_from_0": starts.date().isoformat(),
        "effective_from_1": starts.time().isoformat(),
        "input_per_1m": "1",
        "cached_input_per_1m": "0.5",
        "output_per_1m": "2.5",
        "request_fee": "0",
        "note": "",
        "created_at_0": price.created_at.date().isoformat(),
        "created_at_1": price.created_at.time().isoformat(),
    }
    # Sent without the hidden initial values a browser sends, the dates count as changed
    # for Django's form; they are left out all the same, as their values did not change.
    assert as_operator.post(admin_url(price), form).status_code == 302

    entry = the_entry()
    assert who_what(entry) == (operator, "ops@oneflow.local", Action.CHANGE, *row(price))
    assert entry.object_repr == str(price)
    assert {name: {k: Decimal(v) for k, v in pair.items()} for name, pair in entry.changes.items()} == {
        "output_per_1m": {"before": Decimal(2), "after": Decimal("2.5")}
    }


def test_a_price_import_records_each_version_it_creates(as_operator: Client, operator: User) -> None:
    starts = (timezone.now() + timedelta(days=30)).replace(microsecond=0).isoformat()
    content = f"model,effective_from,input,cached_input,output\nacme-llm,{starts},1,0.5,2\nacme-mini,{starts},0,0,0\n"
    preview = as_operator.post(
        reverse("admin:billing_price_import"), {"file": SimpleUploadedFile("prices.csv", content.encode())}
    )
    [rows] = re.findall(r'<input type="hidden" name="rows" value="([^"]*)"', preview.content.decode())
    assert AuditEntry.objects.count() == 0, "a preview changes nothing"
    assert as_operator.post(reverse("admin:billing_price_import"), {"rows": html.unescape(rows)}).status_code == 302

    created = Price.objects.filter(public_model__in=["acme-llm", "acme-mini"]).order_by("pk")
    entries = list(AuditEntry.objects.order_by("pk"))
    assert [who_what(entry) for entry in entries] == [
        (operator, "ops@oneflow.local", Action.PRICE_IMPORT, *row(price)) for price in created
    ]
    assert entries[0].changes["public_model"] == {"before": None, "after": "acme-llm"}


# --- Deployments and breakers ----------------------------------------------------------------


@pytest.fixture
def deployment(db: None) -> Deployment:
    catalog_seed_demo()
    return Deployment.objects.filter(enabled=True).select_related("public_model", "provider").order_by("pk")[0]


def test_disabling_a_deployment_records_its_switch(as_operator: Client, operator: User, deployment: Deployment) -> None:
    action = {"action": "disable", "_selected_action": [deployment.pk]}
    as_operator.post(changelist("providers.deployment"), action)
    as_operator.post(changelist("providers.deployment"), action)  # already disabled: nothing more happens

    entry = the_entry()
    assert who_what(entry) == (operator, "ops@oneflow.local", Action.DEPLOYMENT_DISABLE, *row(deployment))
    assert entry.changes == {"enabled": {"before": True, "after": False}}
    assert entry.object_repr == str(deployment)


@pytest.fixture
def closed_breaker(deployment: Deployment) -> Iterator[Deployment]:
    breakers.breakers_force_close(deployment_ids=[deployment.pk])
    yield deployment
    breakers.breakers_force_close(deployment_ids=[deployment.pk])  # never leave one open for the next test


def test_forcing_a_breaker_open_and_closed_records_each_move(
    as_operator: Client, operator: User, closed_breaker: Deployment
) -> None:
    health = changelist("routing.deploymenthealth")
    as_operator.post(health, {"action": "open_breakers", "_selected_action": [closed_breaker.pk]})
    as_operator.post(health, {"action": "close_breakers", "_selected_action": [closed_breaker.pk]})

    opened, closed = AuditEntry.objects.order_by("pk")
    # Recorded against the deployment itself, whichever page forced it.
    assert who_what(opened) == (operator, "ops@oneflow.local", Action.BREAKER_FORCE_OPEN, *row(closed_breaker))
    assert opened.changes == {"breaker": {"before": "closed", "after": "open"}}
    assert (closed.action, closed.changes) == (
        Action.BREAKER_FORCE_CLOSE,
        {"breaker": {"before": "open", "after": "closed"}},
    )


def public_model_form(**fields: Any) -> dict[str, Any]:
    """The public model's page with one deployment inline."""
    return base_public_model_form(
        **{
            "deployments-TOTAL_FORMS": "1",
            "deployments-0-upstream_model": "smart-1",
            "deployments-0-priority": "1",
            "deployments-0-quality_score": "80",
            "deployments-0-enabled": "on",
            **fields,
        }
    )


def test_inline_rows_are_recorded_as_their_own_rows(as_operator: Client, operator: User) -> None:
    provider = ProviderFactory.create()
    inline = {"deployments-0-provider": provider.pk, "deployments-0-weight": "100"}
    form = public_model_form(**inline, **{"deployments-INITIAL_FORMS": "0"})
    assert as_operator.post(reverse("admin:providers_publicmodel_add"), form).status_code == 302
    deployment = Deployment.objects.get(upstream_model="smart-1")
    inline |= {"deployments-INITIAL_FORMS": "1", "deployments-0-id": deployment.pk}
    inline["deployments-0-weight"] = "40"
    changed = as_operator.post(admin_url(deployment.public_model), public_model_form(**inline))
    assert changed.status_code == 302

    entries = [
        (entry.action, entry.app_label, entry.model, entry.object_id) for entry in AuditEntry.objects.order_by("pk")
    ]
    assert entries == [
        (Action.ADD, "providers", "publicmodel", str(deployment.public_model_id)),
        (Action.ADD, "providers", "deployment", str(deployment.pk)),
        (Action.CHANGE, "providers", "deployment", str(deployment.pk)),
    ], "the unchanged public model records nothing the second time"
    assert AuditEntry.objects.order_by("pk").last().changes == {"weight": {"before": 100, "after": 40}}  # type: ignore[union-attr]


# --- Credentials -----------------------------------------------------------------------------


def stored_text() -> str:
    """Every field of every entry, as stored."""
    return json.dumps(list(AuditEntry.objects.values()), cls=DjangoJSONEncoder)


def test_a_credential_s_secret_is_recorded_as_changed_never_stored(as_operator: Client, operator: User) -> None:
    provider = ProviderFactory.create(kind=Provider.Kind.OPENAI, base_url="https://api.openai.com/v1")
    fields = {"provider": provider.pk, "name": "main", "reference": "", "status": "active", "status_reason": ""}
    assert as_operator.post(reverse("admin:providers_credential_add"), {**fields, "secret": SECRET}).status_code == 302
    credential = Credential.objects.get()
    first_seal = credential.sealed_secret

    assert as_operator.post(admin_url(credential), {**fields, "secret": f"{SECRET}-new"}).status_code == 302
    assert as_operator.post(admin_url(credential, "delete"), {"post": "yes"}).status_code == 302

    added, changed, deleted = AuditEntry.objects.order_by("pk")
    assert who_what(changed) == (operator, "ops@oneflow.local", Action.CHANGE, *row(credential))
    assert added.action == Action.ADD
    assert added.changes["secret"] == SECRET_MASK
    assert added.changes["name"] == {"before": None, "after": "main"}
    assert changed.changes == {"secret": SECRET_MASK}, "only the secret changed"
    assert deleted.action == Action.DELETE
    assert deleted.changes["sealed_secret"] == SECRET_MASK
    assert deleted.changes["name"] == {"before": "main", "after": None}
    text = stored_text()
    for secret in (SECRET, f"{SECRET}-new", first_seal):
        assert secret not in text


def test_a_secret_is_masked_whoever_builds_the_changes(operator: User, acme: Organization) -> None:
    changes = {"sealed_secret": {"before": "x", "after": "sealed"}, "password": "hunter2", "name": "kept"}
    audit_record(actor=operator, action=Action.CHANGE, obj=acme, changes=changes)
    assert AuditEntry.objects.get().changes == {"sealed_secret": SECRET_MASK, "password": SECRET_MASK, "name": "kept"}


# --- Keys, organizations and people ----------------------------------------------------------


def test_a_key_revoked_by_staff_is_recorded(
    as_operator: Client, operator: User, acme_key: account_services.IssuedSecret
) -> None:
    action = {"action": "revoke_keys", "_selected_action": [acme_key.key.pk]}
    as_operator.post(changelist("accounts.apikey"), action)
    as_operator.post(changelist("accounts.apikey"), action)  # revoked already: nothing more happens

    entry = the_entry()
    assert who_what(entry) == (operator, "ops@oneflow.local", Action.API_KEY_REVOKE, *row(acme_key.key))
    assert entry.changes == {"status": {"before": ApiKey.Status.ACTIVE, "after": ApiKey.Status.REVOKED}}
    assert acme_key.raw not in stored_text()


def test_a_key_rotated_by_staff_is_recorded_without_its_new_secret(
    as_operator: Client, operator: User, acme_key: account_services.IssuedSecret
) -> None:
    as_operator.post(changelist("accounts.apikey"), {"action": "rotate_keys", "_selected_action": [acme_key.key.pk]})

    entry = the_entry()
    assert who_what(entry) == (operator, "ops@oneflow.local", Action.API_KEY_ROTATE, *row(acme_key.key))
    assert entry.changes == {"rotation": {"before": 0, "after": 1}}
    revealed = account_services.api_key_reveal(key=acme_key.key)
    assert revealed is not None
    assert revealed not in stored_text()


def test_a_change_of_an_organization_s_limits_records_only_what_changed(
    as_operator: Client, operator: User, acme: Organization
) -> None:
    form = {"name": acme.name, "slug": acme.slug, "time_zone": "UTC", "limit_rpm": "", "limit_rph": "5000"}
    assert as_operator.post(admin_url(acme), form).status_code == 302
    assert as_operator.post(admin_url(acme), form).status_code == 302  # saved again unchanged: nothing to record

    entry = the_entry()
    assert who_what(entry) == (operator, "ops@oneflow.local", Action.CHANGE, *row(acme))
    assert (entry.object_repr, entry.changes) == ("Acme", {"limit_rph": {"before": None, "after": 5000}})
    assert entry.created_at <= timezone.now()


def test_a_role_change_is_recorded(as_operator: Client, operator: User, acme: Organization, bob: User) -> None:
    membership = Membership.objects.get(organization=acme, user=bob)
    joined = membership.created_at.replace(microsecond=0)
    Membership.objects.filter(pk=membership.pk).update(created_at=joined)
    form = {
        "user": bob.pk,
        "organization": acme.pk,
        "role": Membership.Role.ADMIN,
        "created_at_0": joined.date().isoformat(),
        "created_at_1": joined.time().isoformat(),
    }
    assert as_operator.post(admin_url(membership), form).status_code == 302

    entry = the_entry()
    assert who_what(entry) == (operator, "ops@oneflow.local", Action.CHANGE, *row(membership))
    assert entry.changes == {"role": {"before": Membership.Role.MEMBER, "after": Membership.Role.ADMIN}}


def test_a_password_set_by_staff_is_recorded_as_changed(as_operator: Client, operator: User, bob: User) -> None:
    password = "a brand new password 456"
    url = reverse("admin:auth_user_password_change", args=[bob.pk])
    response = as_operator.post(url, {"password1": password, "password2": password, "usable_password": "true"})
    assert response.status_code == 302

    entry = the_entry()
    assert who_what(entry) == (operator, "ops@oneflow.local", Action.PASSWORD_CHANGE, *row(bob))
    assert entry.changes == {"password": SECRET_MASK}
    bob.refresh_from_db()
    assert password not in stored_text()
    assert bob.password not in stored_text()


# --- The log itself --------------------------------------------------------------------------


def test_the_actor_s_email_outlives_the_actor(acme: Organization) -> None:
    former = OperatorFactory.create(email="former@oneflow.local")
    audit_record(actor=former, action=Action.CHANGE, obj=acme)
    former.delete()
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.actor_email) == (None, "former@oneflow.local")


def test_the_log_outlives_usage_retention(operator: User, acme: Organization) -> None:
    audit_record(actor=operator, action=Action.CHANGE, obj=acme)
    billing_services.usage_retention_apply(now=timezone.now() + timedelta(days=3650))
    assert AuditEntry.objects.count() == 1


@pytest.fixture
def logged(operator: User, acme: Organization, acme_key: account_services.IssuedSecret) -> list[AuditEntry]:
    return [
        audit_record(actor=operator, action=Action.CHANGE, obj=acme, changes={"limit_rpm": {"before": 1, "after": 2}}),
        audit_record(actor=operator, action=Action.API_KEY_REVOKE, obj=acme_key.key),
        audit_record(actor=None, action=Action.DEPLOYMENT_DISABLE, model=Deployment, object_id=999),
    ]


def listed(response: Any) -> list[AuditEntry]:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_the_log_lists_newest_first_and_filters_by_action_model_actor_and_object(
    as_operator: Client, operator: User, logged: list[AuditEntry]
) -> None:
    url = reverse("admin:audit_auditentry_changelist")
    assert listed(as_operator.get(url)) == logged[::-1]
    assert listed(as_operator.get(url, {"action": Action.API_KEY_REVOKE})) == [logged[1]]
    assert listed(as_operator.get(url, {"model": "accounts.organization"})) == [logged[0]]
    assert listed(as_operator.get(url, {"actor": operator.pk})) == logged[1::-1]
    assert listed(as_operator.get(url, {"q": "999"})) == [logged[2]]
    page = as_operator.get(url).content.decode()
    assert f'href="?actor={operator.pk}"' in page, "a row's actor links to the list narrowed to them"
    assert "delete_selected" not in page
    assert reverse("admin:audit_auditentry_add") not in page


def test_the_log_is_read_only(as_operator: Client, logged: list[AuditEntry]) -> None:
    entry = logged[0]
    page = as_operator.get(admin_url(entry))
    assert page.status_code == 200
    assert "limit_rpm" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert as_operator.post(admin_url(entry), {"action": "delete"}).status_code == 403
    assert as_operator.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert as_operator.post(admin_url(entry, "delete"), {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.count() == len(logged)
