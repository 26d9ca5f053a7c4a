"""Seeds the price catalog from billing/data/prices.json (only versions not there yet)."""

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from django.db import migrations

FILE = Path(__file__).resolve().parent.parent / "data" / "prices.json"


def seed(apps, schema_editor):
    Price = apps.get_model("billing", "Price")
    data = json.loads(FILE.read_text())
    effective_from = datetime.fromisoformat(data["effective_from"])
    for row in data["prices"]:
        Price.objects.get_or_create(
            public_model=row["model"],
            effective_from=effective_from,
            defaults={
                "input_per_1m": Decimal(row["input"]),
                "cached_input_per_1m": Decimal(row["cached_input"]),
                "output_per_1m": Decimal(row["output"]),
                "note": "list price (seed file)",
            },
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_prices_and_ledger")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
