"""The format of OneFlow API keys: ``of_live_<12 base62 prefix>_<32 base62 secret>``.

The prefix finds the row; the SHA-256 of the whole key proves it. Keys carry
about 190 random bits, so a fast hash is enough (no password stretching).
"""

from __future__ import annotations

import hashlib
import re

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
