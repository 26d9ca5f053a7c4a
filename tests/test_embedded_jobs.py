"""Embedded mode: the beat schedule runs in a thread of the web process, tasks eagerly."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from accounts import services
from accounts.models import ApiKeySecret
from oneflow.celery import app as celery_app
from oneflow.celery import embedded_beat_start, embedded_beat_stop


@pytest.mark.django_db(transaction=True)
def test_the_embedded_beat_runs_the_key_expiry_job(acme_key: services.IssuedSecret) -> None:
    if not celery_app.conf.task_always_eager:
        pytest.skip("embedded mode only (no broker configured)")
    old = acme_key
    services.api_key_rotate(key=old.key, grace_period=timedelta(hours=1))
    ApiKeySecret.objects.filter(pk=old.secret.pk).update(valid_until=timezone.now() - timedelta(seconds=1))
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    # Transactional tests empty every table, migration-seeded schedules included.
    PeriodicTask.objects.update_or_create(
        name="expire rotated key secrets",
        defaults={"task": "accounts.expire_rotated_api_key_secrets", "interval": every_second},
    )

    embedded_beat_start()
    try:
        deadline = time.monotonic() + 30
        while ApiKeySecret.objects.get(pk=old.secret.pk).revoked_at is None:
            assert time.monotonic() < deadline, "the embedded beat did not run the job"
            time.sleep(0.2)
    finally:
        embedded_beat_stop()
