"""Stored rows a book cannot use: reading a number stored as text without failing,
and the warning logged for each row set aside. The price and budget books share
them, so one bad row degrades its own owner, never the whole book.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

logger = logging.getLogger(__name__)


def _decimal(text: Any) -> Decimal | None:
    try:
        value = Decimal(str(text))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _log_broken(kind: str, broken: Mapping[Any, str]) -> None:
    for owner, reason in broken.items():
        logger.warning(
            "unusable %s row: its owner is refused until it is fixed", kind, extra={"owner": owner, "reason": reason}
        )
