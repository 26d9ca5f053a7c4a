"""Seeds the usage drain's beat schedule (every 2 seconds); editable in the admin."""

from django.db import migrations

from oneflow.lib.schedules import seed_schedules

SCHEDULES = [("Drain usage events into PostgreSQL", "billing.drain_usage", 2)]


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_usage_events"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [seed_schedules(SCHEDULES)]
