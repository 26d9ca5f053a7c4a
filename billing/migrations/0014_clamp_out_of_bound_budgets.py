"""Budgets written before the bounds of 0013 with a limit above them (up to 1e28
credits: SQLite then cannot read the row back into its DECIMAL(38, 10) column,
which broke every budget read) get the bound itself, which means the same: no
practical limit. The comparison runs in SQL, so unreadable rows are fixed too."""

from decimal import Decimal

from django.db import migrations

CREDITS_MAX = Decimal(10**9)  # billing.models.CREDITS_MAX when this was written


def clamp(apps, schema_editor):
    Budget = apps.get_model("billing", "Budget")
    Budget.objects.filter(limit__gt=CREDITS_MAX).update(limit=CREDITS_MAX)


class Migration(migrations.Migration):
    dependencies = [("billing", "0013_money_bounds")]

    operations = [migrations.RunPython(clamp, migrations.RunPython.noop)]
