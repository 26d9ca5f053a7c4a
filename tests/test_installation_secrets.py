"""Outside production, an unset SECRET_KEY or JWT_SIGNING_KEY is a random value made
once per installation, never a key printed in the source code."""

from __future__ import annotations

import stat
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from django.conf import settings
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tokens import AUTH_TIME_CLAIM, STAMP_CLAIM, user_token_stamp
from oneflow import settings as oneflow_settings
from oneflow.lib.secrets import installation_secret

ROOT = Path(__file__).resolve().parent.parent


def test_it_creates_a_private_random_secret_once_per_installation(tmp_path: Path) -> None:
    first = installation_secret(tmp_path / "one" / "jwt_signing_key")
    other = installation_secret(tmp_path / "two" / "jwt_signing_key")

    assert len(first) >= 50
    assert first != other
    assert stat.S_IMODE((tmp_path / "one" / "jwt_signing_key").stat().st_mode) == 0o600
    assert installation_secret(tmp_path / "one" / "jwt_signing_key") == first  # a restart reads it back
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["jwt_signing_key"]  # no temporary file left


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        values = set(pool.map(lambda _: installation_secret(tmp_path / "secret_key"), range(32)))
    assert values == {(tmp_path / "secret_key").read_text().strip()}


def test_the_embedded_default_uses_the_installation_secrets_not_the_old_public_keys() -> None:
    assert (settings.VAR_DIR / "jwt_signing_key").read_text().strip() == settings.JWT_SIGNING_KEY
    assert (settings.VAR_DIR / "secret_key").read_text().strip() == settings.SECRET_KEY
    assert settings.JWT_SIGNING_KEY != settings.SECRET_KEY
    assert settings.JWT_SIGNING_KEY != oneflow_settings.INSECURE_JWT_SIGNING_KEY
    assert settings.SECRET_KEY != oneflow_settings.INSECURE_SECRET_KEY


def test_a_restarted_process_signs_with_the_same_key() -> None:
    script = "import django, hashlib; django.setup(); from django.conf import settings as s; " + (
        "print(hashlib.sha256(s.JWT_SIGNING_KEY.encode()).hexdigest())"
    )
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "oneflow.settings"}
    digests = {
        subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1
    assert jwt.encode({"a": 1}, settings.JWT_SIGNING_KEY, algorithm="HS256")  # the key is usable as is


def forged_access_token(user: User, key: str) -> str:
    """An access token with every claim OneFlow issues, signed with ``key``."""
    now = datetime.now(UTC)
    claims = {
        "token_type": "access",
        "exp": now + timedelta(minutes=5),
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": str(user.pk),
        STAMP_CLAIM: user_token_stamp(user),
        AUTH_TIME_CLAIM: int(now.timestamp()),
    }
    return jwt.encode(claims, key, algorithm="HS256")


def test_a_token_signed_with_the_old_development_key_is_refused(operator: User) -> None:
    old_key = oneflow_settings.INSECURE_JWT_SIGNING_KEY
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION=f"Bearer {forged_access_token(operator, old_key)}")
    genuine = APIClient()
    genuine.credentials(HTTP_AUTHORIZATION=f"Bearer {forged_access_token(operator, settings.JWT_SIGNING_KEY)}")

    assert forged.get("/api/me").status_code == 401
    assert genuine.get("/api/me").status_code == 200  # the same claims, signed with this installation's key
