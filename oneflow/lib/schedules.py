"""Seeding beat schedules from data migrations.

Schedules live in the database (django-celery-beat) so operators can edit them
in the admin; a migration only creates what is missing and never overwrites
an edited schedule.
"""

from __future__ import annotations

from typing import Any


def seed_interval_tasks(apps: Any, schedules: list[tuple[str, str, int]]) -> None:
    """Creates (name, task, every N seconds) periodic tasks that do not exist yet."""
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in schedules:
        interval, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
        task_model.objects.get_or_create(name=name, defaults={"task": task, "interval": interval})


def unseed_tasks(apps: Any, schedules: list[tuple[str, str, int]]) -> None:
    names = [name for name, _, _ in schedules]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=names).delete()
