"""API keys: issue, authenticate, rotate with grace, revoke, expire."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from accounts import selectors, services
from accounts.models import ApiKeySecret, Organization
from oneflow.lib.errors import Conflict
from tests.factories import ApiKeyFactory

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def authenticates(raw: str, at: datetime | None = None) -> bool:
    return selectors.api_key_authenticate(raw=raw, now=at) is not None


def test_it_shows_the_secret_once_and_stores_only_prefix_and_hash(acme_key: services.IssuedSecret) -> None:
    stored = ApiKeySecret.objects.get(pk=acme_key.secret.pk)
    assert acme_key.raw.startswith(f"of_live_{stored.prefix}_")
    assert len(acme_key.raw) == len("of_live_") + 12 + 1 + 32
    assert acme_key.raw not in {stored.prefix, stored.secret_hash, stored.sealed_secret}
    assert len(stored.secret_hash) == 64
    assert authenticates(acme_key.raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "of_live_",
        "sk-not-a-oneflow-key",
        "of_live_short_key",
        "of_live_AAAAAAAAAAAA_" + "A" * 31,
        "of_live_AAAAAAAAAAAA_" + "A" * 33,
        "of_live_AAAAAAAAAAA!_" + "A" * 32,
    ],
)
def test_it_refuses_malformed_keys(acme_key: services.IssuedSecret, raw: str) -> None:
    assert not authenticates(raw)


def test_it_refuses_a_right_prefix_with_a_wrong_secret(acme_key: services.IssuedSecret) -> None:
    tampered = acme_key.raw[:-1] + ("A" if acme_key.raw[-1] != "A" else "B")
    assert not authenticates(tampered)


def test_a_rotated_key_works_until_its_grace_ends_and_stops_the_second_after(acme: Organization) -> None:
    with time_machine.travel(T0, tick=False):
        old = ApiKeyFactory.create(organization=acme)
        new = services.api_key_rotate(key=old.key)

    grace_end = T0 + timedelta(days=7)
    for moment in (T0, grace_end - timedelta(seconds=1)):
        assert authenticates(old.raw, moment), moment
        assert authenticates(new.raw, moment), moment
    assert not authenticates(old.raw, grace_end)
    assert not authenticates(old.raw, grace_end + timedelta(seconds=1))
    assert authenticates(new.raw, grace_end + timedelta(days=365))


def test_the_grace_period_comes_from_the_key_then_the_organization(acme: Organization) -> None:
    acme.api_key_grace_period = timedelta(hours=2)
    acme.save()
    with time_machine.travel(T0, tick=False):
        org_default = ApiKeyFactory.create(organization=acme)
        services.api_key_rotate(key=org_default.key)
        per_key = ApiKeyFactory.create(organization=acme, grace_period=timedelta(minutes=5))
        services.api_key_rotate(key=per_key.key)

    assert authenticates(org_default.raw, T0 + timedelta(hours=2) - timedelta(seconds=1))
    assert not authenticates(org_default.raw, T0 + timedelta(hours=2))
    assert authenticates(per_key.raw, T0 + timedelta(minutes=5) - timedelta(seconds=1))
    assert not authenticates(per_key.raw, T0 + timedelta(minutes=5))


def test_rotating_twice_keeps_the_chain_and_every_deadline(acme: Organization) -> None:
    with time_machine.travel(T0, tick=False):
        first = ApiKeyFactory.create(organization=acme)
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        second = services.api_key_rotate(key=first.key)
    with time_machine.travel(T0 + timedelta(days=2), tick=False):
        third = services.api_key_rotate(key=second.key)

    assert first.key.pk == second.key.pk == third.key.pk
    assert [s.secret.rotation for s in (first, second, third)] == [0, 1, 2]
    matched = selectors.api_key_authenticate(raw=first.raw, now=T0 + timedelta(days=2))
    assert matched is not None
    assert matched.public_id == third.key.public_id
    # The second rotation must not extend the first secret's deadline.
    assert not authenticates(first.raw, T0 + timedelta(days=8))
    assert authenticates(second.raw, T0 + timedelta(days=9) - timedelta(seconds=1))
    assert not authenticates(second.raw, T0 + timedelta(days=9))
    assert authenticates(third.raw, T0 + timedelta(days=100))
    assert ApiKeySecret.objects.filter(key=first.key, valid_until__isnull=True).count() == 1


def test_revoking_stops_every_secret_at_once(acme_key: services.IssuedSecret) -> None:
    old = acme_key
    new = services.api_key_rotate(key=old.key)
    services.api_key_revoke(key=old.key)

    assert not authenticates(old.raw)
    assert not authenticates(new.raw)
    with pytest.raises(Conflict):
        services.api_key_rotate(key=old.key)


def test_an_expired_key_stops_at_its_expiry(acme: Organization) -> None:
    with time_machine.travel(T0, tick=False):
        issued = ApiKeyFactory.create(organization=acme, expires_at=T0 + timedelta(hours=1))
    assert authenticates(issued.raw, T0 + timedelta(minutes=59))
    assert not authenticates(issued.raw, T0 + timedelta(hours=1))


def test_a_zero_grace_rotation_stops_the_old_secret_immediately(acme_key: services.IssuedSecret) -> None:
    new = services.api_key_rotate(key=acme_key.key, grace_period=timedelta(0))
    assert not authenticates(acme_key.raw)
    assert authenticates(new.raw)


def test_a_scheduled_rotation_can_be_revealed_once(acme_key: services.IssuedSecret) -> None:
    issued = services.api_key_rotate(key=acme_key.key, sealed=True)
    assert services.api_key_reveal(key=acme_key.key) == issued.raw
    assert services.api_key_reveal(key=acme_key.key) is None
    assert authenticates(issued.raw)


@pytest.mark.django_db(transaction=True)
def test_concurrent_rotations_leave_exactly_one_current_secret(
    live_services: None, acme_key: services.IssuedSecret
) -> None:
    issued = acme_key
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def rotate() -> None:
        try:
            barrier.wait()
            services.api_key_rotate(key=issued.key)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    secrets = ApiKeySecret.objects.filter(key=issued.key)
    assert secrets.count() == 9
    assert secrets.filter(valid_until__isnull=True).count() == 1
    assert sorted(secrets.values_list("rotation", flat=True)) == list(range(9))
