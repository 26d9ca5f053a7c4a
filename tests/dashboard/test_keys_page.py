"""The API keys page: list, create (secret shown once), rotate (grace shown), revoke, roles."""

from __future__ import annotations

import re
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey, ApiKeySecret, Organization
from tests.factories import ApiKeyFactory


def test_it_creates_a_key_and_shows_its_secret_exactly_once(alice_browser: Client, acme: Organization) -> None:
    created = alice_browser.post("/dashboard/keys", {"name": "production"})
    assert created.status_code == 302

    first = alice_browser.get("/dashboard/keys")
    shown = re.search(r'id="secret-value"[^>]*value="(of_live_[^"]+)"', first.content.decode())
    assert shown is not None
    key = ApiKey.objects.get(organization=acme, name="production")
    assert services.keys.hash_raw_key(shown.group(1)) == key.secrets.get().secret_hash
    assert first["Cache-Control"] == "no-store"

    second = alice_browser.get("/dashboard/keys").content.decode()
    assert shown.group(1) not in second
    assert "production" in second
    assert key.secrets.get().display_prefix in second


def test_it_refuses_a_key_that_expires_in_the_past(alice_browser: Client, acme: Organization) -> None:
    response = alice_browser.post("/dashboard/keys", {"name": "late", "expires_at": "2001-01-01T00:00"})
    assert response.status_code == 400
    assert "must be in the future" in response.content.decode()
    assert not ApiKey.objects.filter(name="late").exists()


def test_it_rotates_after_confirmation_and_shows_when_the_old_secret_stops(
    alice_browser: Client, acme: Organization, acme_key: services.IssuedSecret
) -> None:
    public_id = acme_key.key.public_id
    confirm = alice_browser.get(f"/dashboard/keys/{public_id}/rotate")
    assert confirm.status_code == 200
    assert "for 1\xa0week (until about" in confirm.content.decode()
    assert acme_key.key.secrets.count() == 1  # a GET changes nothing

    assert alice_browser.post(f"/dashboard/keys/{public_id}/rotate").status_code == 302

    page = alice_browser.get("/dashboard/keys").content.decode()
    old = ApiKeySecret.objects.get(key=acme_key.key, rotation=0)
    assert old.valid_until is not None
    assert f'data-countdown-left="{old.valid_until.isoformat()}"' in page
    assert f"Previous secret {old.display_prefix}… works until" in page
    assert re.search(r'id="secret-value"[^>]*value="of_live_', page)  # the new secret, once
    assert "New secret for “ci”" in page


def test_it_revokes_after_confirmation(alice_browser: Client, acme: Organization, acme_key: services.IssuedSecret):
    public_id = acme_key.key.public_id
    assert "cannot be undone" in alice_browser.get(f"/dashboard/keys/{public_id}/revoke").content.decode()

    response = alice_browser.post(f"/dashboard/keys/{public_id}/revoke", follow=True)

    acme_key.key.refresh_from_db()
    assert acme_key.key.status == ApiKey.Status.REVOKED
    assert not acme_key.key.secrets.filter(revoked_at__isnull=True).exists()
    assert "is revoked" in response.content.decode()
    assert '<span class="badge revoked">Revoked</span>' in response.content.decode()


def test_a_member_sees_keys_but_cannot_create_rotate_or_revoke(
    bob_browser: Client, acme: Organization, acme_key: services.IssuedSecret
) -> None:
    page = bob_browser.get("/dashboard/keys")
    assert page.status_code == 200
    assert "ci" in page.content.decode()
    assert "Create a key" not in page.content.decode()

    public_id = acme_key.key.public_id
    assert bob_browser.post("/dashboard/keys", {"name": "sneaky"}).status_code == 403
    assert bob_browser.get(f"/dashboard/keys/{public_id}/rotate").status_code == 403
    assert bob_browser.post(f"/dashboard/keys/{public_id}/rotate").status_code == 403
    assert bob_browser.post(f"/dashboard/keys/{public_id}/revoke").status_code == 403
    assert not ApiKey.objects.filter(name="sneaky").exists()
    assert acme_key.key.secrets.count() == 1
    acme_key.key.refresh_from_db()
    assert acme_key.key.status == ApiKey.Status.ACTIVE


def test_keys_of_another_organization_are_not_found(alice_browser: Client, acme: Organization) -> None:
    theirs = ApiKeyFactory.create(name="theirs").key  # of an organization of its own
    assert alice_browser.post(f"/dashboard/keys/{theirs.public_id}/revoke").status_code == 404
    assert "theirs" not in alice_browser.get("/dashboard/keys").content.decode()
    theirs.refresh_from_db()
    assert theirs.status == ApiKey.Status.ACTIVE


def test_the_list_is_paginated_and_shows_status_expiry_and_last_use(
    alice_browser: Client, acme: Organization, settings
) -> None:
    settings.DASHBOARD_KEYS_PER_PAGE = 5
    keys = [ApiKeyFactory.create(organization=acme, name=f"key-{n}").key for n in range(7)]
    used = keys[6]
    used.last_used_at = timezone.now() - timedelta(hours=3)
    used.expires_at = timezone.now() + timedelta(days=2)
    used.save()
    services.api_key_revoke(key=keys[5])

    first = alice_browser.get("/dashboard/keys").content.decode()
    second = alice_browser.get("/dashboard/keys?page=2").content.decode()

    assert first.count('<tr id="key-') == 5
    assert second.count('<tr id="key-') == 2
    assert "Page 1 of 2" in first
    assert "3\xa0hours ago" in first
    assert used.expires_at.strftime("%Y-%m-%d %H:%M") in first
    assert '<span class="badge revoked">Revoked</span>' in first
    assert "key-0" in second
