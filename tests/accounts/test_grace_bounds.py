"""Grace periods are bounded wherever they enter, and one organization's bad row
never stops the key jobs for the others."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.forms import ModelForm, modelform_factory
from rest_framework.test import APIClient

from accounts import selectors, services, tasks
from accounts.admin import GatewayConfigForm
from accounts.keys import GRACE_MAX_SECONDS, LIMIT_MAX, ROTATION_INTERVAL_MAX_DAYS
from accounts.models import ApiKey, ApiKeySecret, Organization, Plan
from tests.factories import ApiKeyFactory, OrganizationFactory

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("seconds", [10**20, 10**12, GRACE_MAX_SECONDS + 1, -1])
def test_an_organizations_grace_period_out_of_range_is_a_400(
    as_alice: APIClient, acme: Organization, seconds: int
) -> None:
    response = as_alice.patch(f"/api/organizations/{acme.pk}", {"api_key_grace_period_seconds": seconds}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "api_key_grace_period_seconds"
    assert Organization.objects.get(pk=acme.pk).api_key_grace_period is None


def test_the_longest_grace_period_is_accepted_and_rotation_works(
    as_alice: APIClient, acme: Organization, acme_key: services.IssuedSecret
) -> None:
    response = as_alice.patch(
        f"/api/organizations/{acme.pk}", {"api_key_grace_period_seconds": GRACE_MAX_SECONDS}, format="json"
    )
    assert response.status_code == 200
    rotated = as_alice.post(f"/api/organizations/{acme.pk}/keys/{acme_key.key.public_id}/rotate", {}, format="json")
    assert rotated.status_code == 201


def test_a_stored_grace_period_too_long_to_rotate_with_is_a_409_not_a_500(
    as_alice: APIClient, acme: Organization, acme_key: services.IssuedSecret
) -> None:
    Organization.objects.filter(pk=acme.pk).update(api_key_grace_period=timedelta(seconds=10**12))
    rotated = as_alice.post(f"/api/organizations/{acme.pk}/keys/{acme_key.key.public_id}/rotate", {}, format="json")
    assert rotated.status_code == 409
    assert rotated.json()["error"]["code"] == "grace_period_too_long"


def admin_form(model: type, fields: list[str], data: dict[str, str]) -> ModelForm[Any]:
    return modelform_factory(model, form=GatewayConfigForm, fields=fields)(data)


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (Organization, "api_key_grace_period", "999999 00:00:00"),
        (Organization, "api_key_grace_period", "-1 00:00:00"),
        (Organization, "limit_rpm", str(LIMIT_MAX + 1)),
        (Plan, "rph", "9999999999999999999"),
        (ApiKey, "grace_period", f"{ROTATION_INTERVAL_MAX_DAYS + 1} 00:00:00"),
        (ApiKey, "rotation_interval_days", str(ROTATION_INTERVAL_MAX_DAYS + 1)),
        (ApiKey, "limit_concurrency", "99999999999"),
        (ApiKey, "allowed_models", '{"a": 1}'),
        (ApiKey, "allowed_models", '["' + "m" * 300 + '"]'),
    ],
)
def test_the_admin_refuses_what_the_api_refuses(db: None, model: type, field: str, value: str) -> None:
    form = admin_form(model, [field], {field: value})
    assert not form.is_valid()
    assert field in form.errors


def test_the_admin_accepts_the_bounds_themselves(db: None) -> None:
    form = admin_form(
        Organization,
        ["api_key_grace_period", "limit_rpm"],
        {"api_key_grace_period": f"{ROTATION_INTERVAL_MAX_DAYS} 00:00:00", "limit_rpm": str(LIMIT_MAX)},
    )
    assert form.is_valid(), form.errors


def test_a_bad_row_of_organization_b_does_not_stop_the_key_jobs_for_a(
    acme: Organization, caplog: pytest.LogCaptureFixture
) -> None:
    bad_org = OrganizationFactory.create(name="Broken")
    with time_machine.travel(T0, tick=False):
        a_due = ApiKeyFactory.create(organization=acme, rotation_interval_days=1)
        a_rotated = ApiKeyFactory.create(organization=acme)
        a_old = services.api_key_rotate(key=a_rotated.key, grace_period=timedelta(hours=1))
        b_due = ApiKeyFactory.create(organization=bad_org, rotation_interval_days=1)
    # Written around every validation, as an old row or a direct database edit could be.
    Organization.objects.filter(pk=bad_org.pk).update(api_key_grace_period=timedelta(seconds=10**12))
    # B's key comes first in the job's order.
    ApiKey.objects.filter(pk=b_due.key.pk).update(next_rotation_at=T0)

    with time_machine.travel(T0 + timedelta(days=2), tick=False), caplog.at_level(logging.ERROR):
        assert tasks.rotate_due_api_keys.apply().get() == 1
        assert tasks.expire_rotated_api_key_secrets.apply().get() == 1

    assert ApiKeySecret.objects.filter(key=a_due.key).count() == 2, "A's due key rotated"
    assert ApiKeySecret.objects.filter(key=b_due.key).count() == 1, "B's key was skipped"
    assert selectors.api_key_authenticate(raw=a_rotated.raw) is None, "A's expired secret expired"
    assert selectors.api_key_authenticate(raw=a_old.raw) is not None
    failures = [r for r in caplog.records if r.getMessage() == "scheduled api key rotation failed"]
    assert [(r.org_id, r.key_pk) for r in failures] == [(bad_org.pk, b_due.key.pk)]  # type: ignore[attr-defined]
    assert all("of_live_" not in r.getMessage() + str(r.__dict__) for r in caplog.records)
