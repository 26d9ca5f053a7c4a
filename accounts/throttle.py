"""Brute-force protection for sign-in and password reset, shared by the dashboard
pages and the JWT API: attempts are counted per client address and per account."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited


def login_attempt_limited(request: HttpRequest, *, group: str, account: str | None = None) -> bool:
    """Counts this attempt; True once the address or the account is past LOGIN_RATE."""
    rate = settings.LOGIN_RATE
    limited = is_ratelimited(request, group=group, key="ip", rate=rate, increment=True)
    if account:
        by_account = is_ratelimited(
            request, group=f"{group}.account", key=lambda _g, _r: account.lower(), rate=rate, increment=True
        )
        limited = limited or by_account
    return bool(limited)
