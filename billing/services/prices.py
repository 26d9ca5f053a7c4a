"""Price writes: importing price versions, and telling gateways that prices changed."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from billing import price_imports
from billing.models import Price
from oneflow.lib.errors import Conflict

logger = logging.getLogger(__name__)


def prices_import(*, rows: list[dict[str, Any]], created_by: User | None = None) -> list[Price]:
    """Creates one price version per row, all or none, and has gateways reload prices.

    Rows are the columns of Price as strings (see billing.price_imports). They
    are checked against the versions stored when the transaction starts, and
    every problem is reported at once, each with its row number, as one
    PriceRowsInvalid. Two imports racing for the same version meet at the
    database's unique constraint; the later one is a Conflict and creates nothing.
    """
    author = f"imported by {created_by}" if created_by is not None else "imported"
    try:
        with transaction.atomic(durable=True):
            existing = price_imports.existing_versions(models=price_imports.row_models(rows))
            checked = price_imports.price_rows_check(rows=rows, now=timezone.now(), existing=existing)
            prices = [row.price() for row in checked]
            for price in prices:
                price.note = price.note or author
            created = Price.objects.bulk_create(prices)
    except IntegrityError as exc:
        raise Conflict(
            "A version in this file was created meanwhile; nothing was imported.",
            code="price_version_exists",
            param="rows",
        ) from exc
    logger.info("prices imported", extra={"versions": len(created), "by": getattr(created_by, "pk", None)})
    return created
