"""Seeds the usage rollup's beat schedule (every minute); editable in the admin."""

from django.db import migrations

from oneflow.lib.schedules import seed_interval_tasks, unseed_tasks

SCHEDULES = [("Roll usage up into hourly and daily buckets", "billing.rollup_usage", 60)]


def seed(apps, schema_editor):
    seed_interval_tasks(apps, SCHEDULES)


def unseed(apps, schema_editor):
    unseed_tasks(apps, SCHEDULES)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_usage_cost_and_rollups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
