"""Seeding beat schedules from data migrations.

Schedules live in the database (django-celery-beat) so operators can edit them
in the admin; a migration only creates what is missing and never overwrites
an edited schedule.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


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


def seed_schedules(schedules: list[tuple[str, str, int]]) -> Any:
    """A migration operation creating these (name, task, every N seconds) tasks; reversible."""
    return migrations.RunPython(
        lambda apps, schema_editor: seed_interval_tasks(apps, schedules),
        lambda apps, schema_editor: unseed_tasks(apps, schedules),
    )
