"""Typed reads of the process environment.

Every setting OneFlow takes from outside comes through here, so a bad value
fails at start-up with a message naming the variable instead of surfacing later
as a confusing error. Secrets may be given inline (``NAME``) or as a path to a
file (``NAME_FILE``), the way Docker and Kubernetes secrets are mounted.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    """Reads variables from a mapping (``os.environ`` unless given one)."""

    def __init__(self, environ: Mapping[builtins.str, builtins.str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def str(self, name: builtins.str, default: builtins.str = "") -> builtins.str:
        return self.environ.get(name, default).strip()

    def bool(self, name: builtins.str, default: builtins.bool = False) -> builtins.bool:
        raw = self.environ.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")

    def int(self, name: builtins.str, default: builtins.int, *, minimum: builtins.int | None = None) -> builtins.int:
        raw = self.environ.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
        return value

    def seconds(self, name: builtins.str, default: timedelta) -> timedelta:
        return timedelta(
            seconds=self.int(name, int(default.total_seconds()), minimum=0),
        )

    def decimal(self, name: builtins.str, default: builtins.str) -> Decimal:
        raw = self.str(name, default)
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ImproperlyConfigured(f"{name} must be a decimal number, got {raw!r}") from None
        if not value.is_finite() or value <= 0:
            raise ImproperlyConfigured(f"{name} must be a positive number, got {raw!r}")
        return value

    def list(
        self, name: builtins.str, default: builtins.list[builtins.str] | None = None
    ) -> builtins.list[builtins.str]:
        raw = self.environ.get(name)
        if raw is None:
            return list(default or [])
        return [item.strip() for item in raw.split(",") if item.strip()]

    def choice(self, name: builtins.str, choices: tuple[builtins.str, ...], default: builtins.str) -> builtins.str:
        value = self.str(name, default)
        if value not in choices:
            raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def secret(self, name: builtins.str, default: builtins.str = "") -> builtins.str:
        """``NAME`` or the contents of the file at ``NAME_FILE`` (not both)."""
        inline = self.environ.get(name)
        path = self.environ.get(f"{name}_FILE")
        if inline is not None and path is not None:
            raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
        if path is not None:
            try:
                with open(path, encoding="utf-8") as handle:
                    return handle.read().strip()
            except OSError as exc:
                raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
        return default if inline is None else inline.strip()


def production_problems(
    *,
    secret_key: str,
    jwt_signing_key: str,
    insecure_defaults: set[str],
    debug: bool,
    cors_origins: list[str],
    allowed_hosts: list[str],
) -> list[str]:
    """Each unsafe production setting, named, so start-up can refuse them all at once."""
    problems = []
    if secret_key in insecure_defaults or len(secret_key) < 50 or len(set(secret_key)) < 5:
        problems.append("SECRET_KEY is the development default, shorter than 50 characters or not random")
    if jwt_signing_key in insecure_defaults or len(jwt_signing_key) < 32:
        problems.append("JWT_SIGNING_KEY is the development default or shorter than 32 characters")
    if secret_key == jwt_signing_key:
        problems.append("JWT_SIGNING_KEY must differ from SECRET_KEY")
    if debug:
        problems.append("DEBUG must be false")
    if any("*" in origin for origin in cors_origins):
        problems.append("CORS_ALLOWED_ORIGINS must list origins, not '*'")
    if not allowed_hosts or "*" in allowed_hosts:
        problems.append("ALLOWED_HOSTS must list this service's host names")
    return problems
