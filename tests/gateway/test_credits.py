"""Credits in the hot path: a request must fit its worst case, and pays what it cost."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pytest

from billing.models import BillingAccount, LedgerEntry
from billing.services import ledger_reconcile
from tests.gateway.conftest import Gateway

MESSAGES: Any = [{"role": "user", "content": "Hello"}]


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=2)


def set_balance(gateway: Gateway, amount: Decimal) -> None:
    organization = gateway.key.key.organization
    BillingAccount.objects.filter(organization=organization).update(balance=amount)
    LedgerEntry.objects.filter(account__organization=organization).update(amount=amount)


def test_a_request_whose_worst_case_does_not_fit_is_refused_without_retries(gateway: Gateway) -> None:
    # gpt-4o-mini at 0.60 per 1M output tokens: 4096 default max tokens need ~0.0025 credits.
    set_balance(gateway, Decimal("0.001"))
    with pytest.raises(openai.RateLimitError) as refused:
        sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    error: Any = refused.value
    assert error.code == "insufficient_quota"
    assert error.type == "insufficient_quota"
    assert error.response.headers["x-should-retry"] == "false"
    [event] = gateway.events()  # one attempt: the SDK did not retry
    assert (event.status_code, event.usage_source, event.cost) == (429, "void", 0)

    # Asking for fewer output tokens makes it fit.
    answer = sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)
    assert answer.choices[0].message.content


def test_a_served_request_is_charged_its_cost_once(gateway: Gateway) -> None:
    organization = gateway.key.key.organization
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    cost = Decimal(raw.headers["x-oneflow-cost"])
    [event] = gateway.events()
    gateway.events()  # draining again changes nothing
    [charge] = LedgerEntry.objects.filter(kind="charge")
    assert (charge.amount, charge.request_id) == (-cost, event.request_id)
    balance, ledger = ledger_reconcile(organization=organization)
    assert balance == ledger == Decimal(1000) - cost
