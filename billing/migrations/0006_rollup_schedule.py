"""Seeds the usage rollup's beat schedule (every minute); editable in the admin."""

from django.db import migrations

from oneflow.lib.schedules import seed_schedules

SCHEDULES = [("Roll usage up into hourly and daily buckets", "billing.rollup_usage", 60)]


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_usage_cost_and_rollups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [seed_schedules(SCHEDULES)]
