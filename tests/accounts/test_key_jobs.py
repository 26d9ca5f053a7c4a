"""The scheduled key jobs, run as Celery tasks: in-process and through a real worker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import time_machine
from django.utils import timezone

from accounts import selectors, services, tasks
from accounts.models import ApiKey, ApiKeySecret, Organization
from oneflow.celery import app as celery_app
from tests.factories import ApiKeyFactory

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_the_expiry_job_revokes_secrets_whose_grace_ended(acme: Organization) -> None:
    with time_machine.travel(T0, tick=False):
        old = ApiKeyFactory.create(organization=acme)
        new = services.api_key_rotate(key=old.key)

    with time_machine.travel(T0 + timedelta(days=7) - timedelta(seconds=1), tick=False):
        assert tasks.expire_rotated_api_key_secrets.apply().get() == 0
        assert selectors.api_key_authenticate(raw=old.raw) is not None

    with time_machine.travel(T0 + timedelta(days=7, seconds=1), tick=False):
        assert tasks.expire_rotated_api_key_secrets.apply().get() == 1
        assert tasks.expire_rotated_api_key_secrets.apply().get() == 0
        assert selectors.api_key_authenticate(raw=old.raw) is None
        assert selectors.api_key_authenticate(raw=new.raw) is not None
    revoked = ApiKeySecret.objects.get(pk=old.secret.pk)
    assert revoked.revoked_at == T0 + timedelta(days=7)


def test_the_rotation_job_rotates_keys_whose_policy_is_due(acme: Organization) -> None:
    with time_machine.travel(T0, tick=False):
        due = ApiKeyFactory.create(organization=acme, rotation_interval_days=30)
        manual = ApiKeyFactory.create(organization=acme)

    with time_machine.travel(T0 + timedelta(days=30) - timedelta(seconds=1), tick=False):
        assert tasks.rotate_due_api_keys.apply().get() == 0

    with time_machine.travel(T0 + timedelta(days=30), tick=False):
        assert tasks.rotate_due_api_keys.apply().get() == 1
        assert tasks.rotate_due_api_keys.apply().get() == 0, "a second run must not rotate again"
        revealed = services.api_key_reveal(key=due.key)
        assert revealed is not None
        assert selectors.api_key_authenticate(raw=revealed) is not None
        assert selectors.api_key_authenticate(raw=due.raw) is not None, "old secret is in its grace period"

    key = ApiKey.objects.get(pk=due.key.pk)
    assert key.next_rotation_at == T0 + timedelta(days=60)
    assert ApiKeySecret.objects.filter(key=manual.key).count() == 1
    with time_machine.travel(T0 + timedelta(days=37), tick=False):
        assert selectors.api_key_authenticate(raw=due.raw) is None


def test_the_beat_schedule_is_seeded_and_editable(db: None) -> None:
    from django_celery_beat.models import PeriodicTask

    celery_app.loader.import_default_modules()
    tasks_by_name = dict(PeriodicTask.objects.values_list("task", "interval__every"))
    assert tasks_by_name["accounts.rotate_due_api_keys"] == 3600
    assert tasks_by_name["accounts.expire_rotated_api_key_secrets"] == 300
    assert set(tasks_by_name) <= set(celery_app.tasks)


def test_a_real_worker_revokes_secrets_past_their_grace(celery_worker: None, acme_key: services.IssuedSecret) -> None:
    old = acme_key
    new = services.api_key_rotate(key=old.key, grace_period=timedelta(hours=1))
    # The grace period ended a second ago.
    ApiKeySecret.objects.filter(pk=old.secret.pk).update(valid_until=timezone.now() - timedelta(seconds=1))

    tasks.expire_rotated_api_key_secrets.delay()

    deadline = time.monotonic() + 20
    while ApiKeySecret.objects.get(pk=old.secret.pk).revoked_at is None:
        assert time.monotonic() < deadline, "the worker did not run the job"
        time.sleep(0.1)
    assert selectors.api_key_authenticate(raw=old.raw) is None
    assert selectors.api_key_authenticate(raw=new.raw) is not None
