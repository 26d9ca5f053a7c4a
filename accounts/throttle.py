"""Brute-force protection for sign-in, sign-up and password reset, shared by the
dashboard pages and the JWT API (counters in the cache, django-ratelimit windows).

Sign-in (``sign_in_refused`` before the password is checked, ``sign_in_failed`` after a
wrong one) never lets a stranger lock the owner out:

- every attempt counts against the client address (LOGIN_RATE, any account);
- failed attempts count against the pair (account, client address)
  (LOGIN_FAILURE_RATE): past it, that address is refused for that account;
- failed attempts also count against the account from every address
  (LOGIN_ACCOUNT_FAILURE_RATE): past it the account is under attack, and each address
  that has already failed for it in the window is refused. That slows a distributed
  guesser tenfold and never refuses the right password typed first from an address of
  one's own.

Failures elsewhere never refuse an address that has not failed itself, so the right
password still signs in. The price: a guesser spread over many addresses gets a few
tries per address; passwords of 12+ characters that are not common ones keep that
useless, and an edge limit (deploy/README.md) bounds it further.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage, is_ratelimited

SIGN_IN = "signin"


def login_attempt_limited(request: HttpRequest, *, group: str, account: str | None = None) -> bool:
    """Counts this attempt; True once the address or the account is past LOGIN_RATE.

    For sign-up and password reset, where every attempt costs (an email, a row);
    sign-in uses ``sign_in_refused``.
    """
    rate = settings.LOGIN_RATE
    limited = is_ratelimited(request, group=group, key="ip", rate=rate, increment=True)
    if account:
        by_account = is_ratelimited(
            request, group=f"{group}.account", key=lambda _g, _r: account.lower(), rate=rate, increment=True
        )
        limited = limited or by_account
    return bool(limited)


def _account(account: str) -> str:
    return account.strip().lower()


def _pair_failures(request: HttpRequest, account: str, *, increment: bool) -> dict[str, Any] | None:
    # The account is in the group, the address is the key: one counter per pair.
    group = f"{SIGN_IN}.failures:{_account(account)}"
    return get_usage(request, group=group, key="ip", rate=settings.LOGIN_FAILURE_RATE, increment=increment)


def _account_failures(request: HttpRequest, account: str, *, increment: bool) -> dict[str, Any] | None:
    group = f"{SIGN_IN}.account-failures"
    key = _account(account)
    return get_usage(
        request, group=group, key=lambda _g, _r: key, rate=settings.LOGIN_ACCOUNT_FAILURE_RATE, increment=increment
    )


def _at_limit(usage: dict[str, Any] | None) -> bool:
    # Read without incrementing: the count so far, refused once it reaches the limit.
    # (An unreachable cache reads as limit 0: refused, fail closed.)
    return usage is not None and usage["count"] >= usage["limit"]


def sign_in_refused(request: HttpRequest, *, account: str | None) -> bool:
    """Counts a sign-in attempt against the client address; True when it must be refused
    before the password is checked (see the module docstring for the policy)."""
    if is_ratelimited(request, group=SIGN_IN, key="ip", rate=settings.LOGIN_RATE, increment=True):
        return True
    if not account:
        return False
    pair = _pair_failures(request, account, increment=False)
    if _at_limit(pair):
        return True
    failed_here = pair is not None and pair["count"] > 0
    return failed_here and _at_limit(_account_failures(request, account, increment=False))


def sign_in_failed(request: HttpRequest, *, account: str | None) -> None:
    """Counts a failed sign-in (wrong password or unknown account) for the pair and the account."""
    if account:
        _pair_failures(request, account, increment=True)
        _account_failures(request, account, increment=True)
