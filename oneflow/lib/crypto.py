"""Symmetric encryption for secrets OneFlow must be able to read back.

Only for values that must be recovered (a provider credential, an API key
secret waiting to be shown once); everything else is hashed, never sealed.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    """A uniformly random base62 string from the OS's CSPRNG."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@cache
def _fernet(key_material: str) -> Fernet:
    digest = hashlib.sha256(b"oneflow-seal\x00" + key_material.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(plaintext: str) -> str:
    return _fernet(settings.ENCRYPTION_KEY).encrypt(plaintext.encode()).decode()


def unseal(token: str) -> str | None:
    """The plaintext, or None when the token was sealed under another key."""
    try:
        return _fernet(settings.ENCRYPTION_KEY).decrypt(token.encode()).decode()
    except InvalidToken:
        return None
