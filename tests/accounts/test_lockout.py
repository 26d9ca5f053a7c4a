"""Brute-force limits on sign-in (accounts.throttle), the same on the dashboard and the
JWT API: guessers are slowed and refused, but nobody can lock the owner out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import User
from tests.conftest import PASSWORD

WRONG = "not the password at all"
DOORS = ["api", "dashboard"]


@pytest.fixture(autouse=True)
def _still_time(alice: User) -> Iterator[None]:
    """Time stands still: every attempt of a test falls in one rate-limit window."""
    with time_machine.travel(datetime(2026, 3, 1, 12, tzinfo=UTC), tick=False):
        yield


def attempt(door: str, address: str, password: str, email: str = "alice@example.com") -> str:
    """'ok', 'wrong' or 'refused', whichever door was used."""
    if door == "api":
        body = {"email": email, "password": password}
        status = APIClient(REMOTE_ADDR=address).post("/api/auth/token", body, format="json").status_code
        return {200: "ok", 401: "wrong", 429: "refused"}[status]
    status = Client(REMOTE_ADDR=address).post("/signin", {"username": email, "password": password}).status_code
    return {302: "ok", 200: "wrong", 429: "refused"}[status]


@pytest.mark.parametrize("door", DOORS)
@override_settings(LOGIN_RATE="10/m", LOGIN_FAILURE_RATE="3/15m", LOGIN_ACCOUNT_FAILURE_RATE="8/h")
def test_strangers_failing_from_many_addresses_cannot_lock_the_owner_out(door: str) -> None:
    for n in range(10):
        attempt(door, f"10.0.0.{n + 1}", WRONG)
    for _ in range(5):
        attempt(door, "10.6.6.6", WRONG)

    assert attempt(door, "192.0.2.7", PASSWORD) == "ok"


@pytest.mark.parametrize("door", DOORS)
@override_settings(LOGIN_RATE="100/m", LOGIN_FAILURE_RATE="3/15m")
def test_an_address_is_refused_for_an_account_after_its_failures(door: str, bob: User) -> None:
    outcomes = [attempt(door, "10.6.6.6", WRONG) for _ in range(4)]

    assert outcomes == ["wrong"] * 3 + ["refused"]
    assert attempt(door, "10.6.6.6", PASSWORD) == "refused"  # not even the right password is checked
    assert attempt(door, "10.6.6.6", PASSWORD, email=bob.email) == "ok"  # other accounts are not affected
    assert attempt(door, "192.0.2.7", PASSWORD) == "ok"


@pytest.mark.parametrize("door", DOORS)
@override_settings(LOGIN_ACCOUNT_FAILURE_RATE="5/h")
def test_an_account_under_attack_refuses_addresses_that_failed_but_not_the_owner(door: str) -> None:
    for n in range(5):
        assert attempt(door, f"10.0.0.{n + 1}", WRONG) == "wrong"

    assert attempt(door, "10.0.1.1", WRONG) == "wrong"  # a new address gets its one try
    assert attempt(door, "10.0.1.1", WRONG) == "refused"
    assert attempt(door, "10.0.1.1", PASSWORD) == "refused"
    assert attempt(door, "192.0.2.7", PASSWORD) == "ok"


@override_settings(LOGIN_RATE="5/m")
def test_every_attempt_from_an_address_counts_on_both_doors_together() -> None:
    outcomes = [attempt(door, "10.9.9.9", WRONG, email=f"nobody{n}@example.com") for n, door in enumerate(DOORS * 3)]

    assert outcomes == ["wrong"] * 5 + ["refused"]
    assert attempt("api", "10.9.9.9", PASSWORD) == "refused"
    assert attempt("dashboard", "10.9.9.10", PASSWORD) == "ok"


@override_settings(LOGIN_RATE="100/m", LOGIN_FAILURE_RATE="2/15m")
def test_failures_for_an_account_count_on_both_doors_together_and_ignore_case() -> None:
    assert attempt("api", "10.6.6.6", WRONG) == "wrong"
    assert attempt("dashboard", "10.6.6.6", WRONG, email="ALICE@example.com") == "wrong"
    assert attempt("api", "10.6.6.6", PASSWORD) == "refused"
