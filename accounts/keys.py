"""The format of OneFlow API keys: ``of_live_<12 base62 prefix>_<32 base62 secret>``.

The prefix finds the row; the SHA-256 of the whole key proves it. Keys carry
about 190 random bits, so a fast hash is enough (no password stretching).
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from django.core.exceptions import ValidationError

from oneflow.lib.crypto import random_token

PREFIX = "of_live_"
PREFIX_LENGTH = 12
SECRET_LENGTH = 32
_RAW = re.compile(rf"^of_live_(?P<prefix>[A-Za-z0-9]{{{PREFIX_LENGTH}}})_[A-Za-z0-9]{{{SECRET_LENGTH}}}$")


def new_raw_key() -> tuple[str, str]:
    """A fresh key and its lookup prefix."""
    prefix = random_token(PREFIX_LENGTH)
    return f"{PREFIX}{prefix}_{random_token(SECRET_LENGTH)}", prefix


def raw_key_prefix(raw: str) -> str | None:
    """The lookup prefix of a well-formed key; None for anything else, before any lookup."""
    match = _RAW.match(raw)
    return match.group("prefix") if match else None


def hash_raw_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# What a key's settings may hold, the same for the REST API and the dashboard form.
ALLOWED_MODELS_MAX = 500
MODEL_NAME_MAX_LENGTH = 200
ROTATION_INTERVAL_MAX_DAYS = 3650
# The limit columns are 32-bit integers: a bigger limit is refused, not a crash.
LIMIT_MAX = 2_147_483_647
# Ten years, like the longest rotation interval (timedelta overflows far above).
GRACE_MAX_SECONDS = ROTATION_INTERVAL_MAX_DAYS * 24 * 3600
GRACE_MAX = timedelta(seconds=GRACE_MAX_SECONDS)


def validate_grace_period(value: timedelta | None) -> None:
    """The bound of every grace period (a key's, an organization's), for forms and the admin."""
    if value is not None and not timedelta(0) <= value <= GRACE_MAX:
        raise ValidationError(
            f"A grace period lasts from 0 to {ROTATION_INTERVAL_MAX_DAYS} days.", code="grace_period_out_of_range"
        )


def validate_allowed_models(value: object) -> None:
    """What a key's allowed models may hold, for input that bypasses the REST serializer and the dashboard form."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("Allowed models are a list of model names.", code="invalid")
    if len(value) > ALLOWED_MODELS_MAX or any(len(name) > MODEL_NAME_MAX_LENGTH for name in value):
        raise ValidationError(
            f"At most {ALLOWED_MODELS_MAX} names of at most {MODEL_NAME_MAX_LENGTH} characters.", code="invalid"
        )
