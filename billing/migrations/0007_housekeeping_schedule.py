"""Seeds the schedules of ledger reconciliation and usage retention; editable in the admin."""

from django.db import migrations

from oneflow.lib.schedules import seed_schedules

SCHEDULES = [
    ("Reconcile ledgers with balances", "billing.reconcile_ledgers", 300),
    ("Drop raw usage past the retention window", "billing.apply_usage_retention", 86400),
]


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_rollup_schedule")]

    operations = [seed_schedules(SCHEDULES)]
