"""Seeds the schedule of the business figures /metrics serves (docs/metrics.md)."""

from django.db import migrations

from oneflow.lib.schedules import seed_schedules

SCHEDULES = [
    ("Publish the business metrics", "billing.publish_business_metrics", 60),
]


class Migration(migrations.Migration):
    dependencies = [("billing", "0017_server_tool_requests")]

    operations = [seed_schedules(SCHEDULES)]
