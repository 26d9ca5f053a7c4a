"""Seeds the health probe schedule (every 30 s); editable in the admin."""

from typing import Any

from django.db import migrations

from oneflow.lib.schedules import seed_schedules

PROBE_TASK = "routing.probe_deployments"
SCHEDULES = [("Probe deployment health", PROBE_TASK, 30)]


def expire_stale_probes(apps: Any, schema_editor: Any) -> None:
    # A probe that waited in the queue past the next run is worthless (a worker
    # back from an outage would otherwise run the whole backlog): let it expire,
    # unless an operator already chose an expiry.
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        task=PROBE_TASK, expires__isnull=True, expire_seconds__isnull=True
    ).update(expire_seconds=30)


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0003_route_results"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        seed_schedules(SCHEDULES),
        migrations.RunPython(expire_stale_probes, migrations.RunPython.noop),
    ]
