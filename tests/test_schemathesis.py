"""The REST API against its own OpenAPI schema, over HTTP on the live server.

schemathesis generates requests from ``/api/schema`` for every operation, as each
persona: alice (owner of Acme), bob (a member), carol (an outsider) and anonymous.
No answer may be a 5xx, and every documented answer must match its schema.

Bounded so the suite stays fast: a fixed number of examples per operation,
derandomized (the same requests every run, so CI is reproducible), no shrinking.
Nothing is fetched from outside: the schema comes from the live server.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from accounts.models import Membership, Organization, User
from accounts.tokens import RefreshToken
from tests.conftest import LiveAsgiServer
from tests.factories import ApiKeyFactory, BudgetFactory

EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def real_ids(acme: Organization, alice: User, bob: User) -> dict[str, Any]:
    """Ids of rows that exist, swapped into half the generated paths so requests reach the
    views' real work, not only their 404s."""
    key = ApiKeyFactory.create(organization=acme, created_by=alice)
    budget = BudgetFactory.create(organization=acme)
    return {
        "org_id": acme.pk,
        "member_id": Membership.objects.get(organization=acme, user=bob).pk,
        "key_id": key.key.public_id,
        "budget_id": budget.pk,
    }


def with_real_ids(case: Any, ids: dict[str, Any]) -> None:
    for name, value in (case.path_parameters or {}).items():
        if name in ids and len(str(value)) % 2 == 0:
            case.path_parameters[name] = ids[name]


def run_operation(
    operation: Any, *, base_url: str, headers: dict[str, str], ids: dict[str, Any], statuses: Counter[int]
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        with_real_ids(case, ids)
        response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
        statuses[response.status_code] += 1

    check()


@pytest.mark.parametrize("persona", ["alice", "bob", "carol", "anonymous"])
def test_every_operation_answers_as_its_schema_says_and_never_5xx(
    live_asgi: LiveAsgiServer, acme: Organization, carol: User, persona: str
) -> None:
    alice, bob = (Membership.objects.get(organization=acme, role=role).user for role in ("owner", "member"))
    ids = real_ids(acme, alice, bob)
    user = {"alice": alice, "bob": bob, "carol": carol}.get(persona)
    headers = {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"} if user else {}
    # The REST API only: the document also describes the /v1 gateway (routing.openapi), whose
    # answers tests/test_openapi_gateway.py checks against it with a key and a catalog.
    schema = schemathesis.openapi.from_url(f"{live_asgi.url}/api/schema").include(path_regex="^/api/")
    failures = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 25, "the schema lists every operation"
    assert all(operation.path.startswith("/api/") for operation in operations)
    for operation in operations:
        try:
            run_operation(operation, base_url=live_asgi.url, headers=headers, ids=ids, statuses=statuses)
        except Exception as exc:  # every operation's failure, not only the first one's
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert sum(statuses.values()) >= len(operations) * EXAMPLES_PER_OPERATION // 2, statuses
    if persona in ("alice", "bob"):
        assert statuses[200] + statuses[201] + statuses[204] > 0, f"no request reached a view's work: {statuses}"
    if persona == "anonymous":
        assert set(statuses) <= {400, 401, 429}, statuses
