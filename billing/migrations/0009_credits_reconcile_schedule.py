"""Seeds the schedule that expires dead holds and reconciles Redis credits with the ledger."""

from django.db import migrations

from oneflow.lib.schedules import seed_schedules

SCHEDULES = [
    ("Expire dead holds and reconcile free credits", "billing.reconcile_credits", 60),
]


class Migration(migrations.Migration):
    dependencies = [("billing", "0008_budgets")]

    operations = [seed_schedules(SCHEDULES)]
