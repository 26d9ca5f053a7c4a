"""Grace periods written before today's bounds (an organization's of 1e12 seconds
made every rotation overflow the calendar) get the longest one allowed now,
which means the same: the old secret keeps working for years."""

from datetime import timedelta

from django.db import migrations

GRACE_MAX = timedelta(days=3650)  # accounts.keys.GRACE_MAX when this was written


def clamp(apps, schema_editor):
    for model, field in (("Organization", "api_key_grace_period"), ("ApiKey", "grace_period")):
        rows = apps.get_model("accounts", model).objects.filter(**{f"{field}__gt": GRACE_MAX})
        rows.update(**{field: GRACE_MAX})


class Migration(migrations.Migration):
    dependencies = [("accounts", "0006_user_token_generation")]

    operations = [migrations.RunPython(clamp, migrations.RunPython.noop)]
