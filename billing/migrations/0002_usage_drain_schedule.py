"""Seeds the usage drain's beat schedule (every 2 seconds); editable in the admin."""

from django.db import migrations

from oneflow.lib.schedules import seed_interval_tasks, unseed_tasks

SCHEDULES = [("Drain usage events into PostgreSQL", "billing.drain_usage", 2)]


def seed(apps, schema_editor):
    seed_interval_tasks(apps, SCHEDULES)


def unseed(apps, schema_editor):
    unseed_tasks(apps, SCHEDULES)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_usage_events"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
