"""A million usage events and 100 000 API keys: every admin list and change page and
every dashboard page answers 200 with a small, fixed number of queries.

The rows are written by set-based SQL (generate_series on PostgreSQL, a recursive
CTE on SQLite) once for the module, inside a transaction rolled back at its end.
On PostgreSQL each query of each page is also run under EXPLAIN ANALYZE and the
rows its scans went through are counted: a page that reads a whole table (a
COUNT(*), a DISTINCT for a filter, a sort of every row) reads a million where a
bounded one reads thousands, however fast the machine.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.db import connection, transaction
from django.db.models import Model
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, reverse

from accounts.models import ApiKey, ApiKeySecret, Membership, Organization, User
from billing.models import BillingAccount, Budget, BudgetAlert, LedgerEntry, UsageEvent, UsageRollup
from oneflow.lib.admin import COUNT_CAP
from providers.models import Deployment, Provider, PublicModel
from tests.test_admin import PROJECT_APPS, filter_choice_urls

ON_POSTGRESQL = connection.vendor == "postgresql"

EVENTS = 1_000_000
KEYS = 100_000
ACME_KEYS = 20_000  # one organization with many keys; the dashboard pages are its
OTHER_ORGANIZATIONS = 99  # sharing the other 80 000 keys
KEYS_WITH_SECRETS = 30_000
LEDGER_ENTRIES = 300_000
MEMBERS = 2_000
MODELS = ("gpt-4o-mini", "claude-3-5-haiku", "text-embedding-3-small")
DAYS = 30

# Queries a page may make: the session and user, the dashboard's memberships or the
# admin's permissions, then a handful of bounded reads. Never one per row.
ADMIN_QUERIES = 12
DASHBOARD_QUERIES = 12
# Rows one query may read (PostgreSQL): a fifth of the usage table. A capped count
# reads 5 000 rows, the last page of a list 5 000 more; a name search reads the
# 100 000 keys; a COUNT(*), a DISTINCT or a sort of the usage table reads a million.
ROWS_PER_QUERY = 200_000
# Pages that still read a window of raw usage events, with what would bound them: they
# are held to their query budget, and their reads are printed rather than asserted.
WINDOW_READS = {
    "/dashboard/billing": "a monthly budget's spend sums the month's usage events (billing.selectors."
    "budgets_spent); it needs the rollups to carry the charged credits, then sums hours plus the current one",
}


# --- Writing a million rows ----------------------------------------------------------------


def sql_time(moment: datetime) -> str:
    """A literal timestamp as the backend stores it (SQLite: Django's text form, UTC)."""
    if ON_POSTGRESQL:
        return f"TIMESTAMPTZ '{moment.isoformat()}'"
    return f"'{moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=' ')}'"


def minus(moment: datetime, amount: str, unit: str) -> str:
    """SQL for ``moment`` less ``amount`` (an SQL expression) ``unit``s (second, hour or day)."""
    if ON_POSTGRESQL:
        return f"({sql_time(moment)} - ({amount}) * INTERVAL '1 {unit}')"
    return f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', {sql_time(moment)}, '-' || ({amount}) || ' {unit}s')"


PLAIN_INDEXES = (
    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexdef NOT LIKE 'CREATE UNIQUE%%'"
)


def insert_series(model: type[Model], count: int, values: dict[str, str], *, fast: bool = False) -> None:
    """Inserts ``count`` rows in one statement, each column an SQL expression of
    ``i`` (1..count); columns not given take their default, or NULL.

    ``fast`` (PostgreSQL, with foreign key triggers off): the table's plain indexes
    are dropped for the insert and built again after it, which sorts once instead
    of descending a B-tree a million times.
    """
    columns, expressions, params = [], [], []
    for model_field in model._meta.concrete_fields:
        if model_field.primary_key:
            continue
        if model_field.name in values:
            expressions.append(values[model_field.name])
        elif model_field.has_default() or (model_field.empty_strings_allowed and not model_field.null):
            expressions.append("%s")
            params.append(model_field.get_db_prep_save(model_field.get_default(), connection))
        elif model_field.null:
            continue
        else:
            raise AssertionError(f"no value for {model._meta.label}.{model_field.name}")
        columns.append(connection.ops.quote_name(model_field.attname))
    # Built from this module's own constants, never from input.
    table = connection.ops.quote_name(model._meta.db_table)
    insert = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(expressions)}"
    if ON_POSTGRESQL:
        sql = f"{insert} FROM generate_series(1, {count}) AS s(i)"
    else:
        sql = f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {count}) {insert} FROM s"  # noqa: S608
    with connection.cursor() as cursor:
        indexes: list[tuple[str, str]] = []
        if fast:
            cursor.execute(PLAIN_INDEXES, [model._meta.db_table])
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
        cursor.execute(sql, params)
        for _, definition in indexes:
            cursor.execute(definition)


def fast_load_possible() -> bool:
    """Whether foreign key triggers can be turned off for the seeding (a PostgreSQL superuser,
    as in CI): with them on, every row queues a check, and an index cannot be built while
    checks are pending. The rows are rolled back unchecked; the pages' joins use them."""
    if not ON_POSTGRESQL:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = bool(cursor.fetchone()[0])
        if superuser:
            cursor.execute("SET LOCAL session_replication_role = replica")
    return superuser


def contiguous_ids(model: type[Model], **lookup: Any) -> int:
    """The first id of rows inserted together, checked to be consecutive (the SQL below counts on it)."""
    ids = model._default_manager.filter(**lookup).order_by("pk").values_list("pk", flat=True)
    first, last, count = ids.first(), ids.last(), ids.count()
    assert first is not None and last is not None and last - first + 1 == count, model
    return first


def case(index: str, names: tuple[str, ...]) -> str:
    whens = " ".join(f"WHEN {n} THEN '{name}'" for n, name in enumerate(names))
    return f"CASE {index} {whens} END"


@dataclass
class Scale:
    operator: User
    alice: User
    acme: Organization
    acme_key: ApiKey
    event: UsageEvent
    seeded_in: float = 0.0  # seconds
    timings: list[tuple[float, int, int, str]] = field(default_factory=list)  # seconds, queries, rows read, url


def seed(now: datetime) -> Scale:
    """Acme (alice's) with 20 000 keys and most of the traffic, 99 other tenants, an operator."""
    fast = fast_load_possible()
    operator = User.objects.create_superuser("ops@scale.test", "operator password 123")
    alice = User.objects.create_user("alice@scale.test", "alice password 123", full_name="Alice")
    acme = Organization.objects.create(name="Acme", slug="acme")
    Membership.objects.create(organization=acme, user=alice, role=Membership.Role.OWNER)
    others = Organization.objects.bulk_create(
        Organization(name=f"Tenant {n}", slug=f"tenant-{n}") for n in range(OTHER_ORGANIZATIONS)
    )
    org_first = contiguous_ids(Organization, slug__startswith="tenant-")
    accounts = BillingAccount.objects.bulk_create(
        BillingAccount(organization=organization, balance=Decimal(1000)) for organization in [acme, *others]
    )
    account_first = contiguous_ids(BillingAccount, organization__slug__startswith="tenant-")
    provider = Provider.objects.create(name="Simulator", kind=Provider.Kind.SIMULATOR)
    deployments = [
        Deployment.objects.create(public_model=PublicModel.objects.create(name=name), provider=provider)
        for name in MODELS
    ]

    insert_series(User, MEMBERS, {"email": "'member' || i || '@scale.test'", "password": "'!'"})
    user_first = contiguous_ids(User, email__startswith="member")
    insert_series(
        Membership, MEMBERS, {"organization": str(acme.pk), "user": f"{user_first} - 1 + i", "role": "'member'"}
    )

    # Keys 1..ACME_KEYS are Acme's; key ACME_KEYS + 1 + k + 99 m is the other organization k's.
    other_org = f"{org_first} + ((i - {ACME_KEYS} - 1) %% {OTHER_ORGANIZATIONS})"
    organization = f"CASE WHEN i <= {ACME_KEYS} THEN {acme.pk} ELSE {other_org} END"
    insert_series(
        ApiKey,
        KEYS,
        {
            "public_id": "'key_scale' || i",
            "organization": organization,
            "name": "'key ' || i",
            "status": "CASE WHEN i %% 10 = 0 THEN 'revoked' ELSE 'active' END",
            "created_at": minus(now, "i * 60", "second"),
        },
    )
    key_first = contiguous_ids(ApiKey, public_id__startswith="key_scale")
    insert_series(
        ApiKeySecret,
        KEYS_WITH_SECRETS,
        {
            "key": f"{key_first} - 1 + i",
            "rotation": "0",
            "prefix": "'p' || (100000000000 + i)",
            "secret_hash": "'h' || i",
            "created_at": minus(now, "i * 60", "second"),
        },
    )

    # Six events in ten are Acme's, spread over its keys; the rest go to the other
    # organizations, each to one of its own keys. Newest first, one every 2.6 s.
    in_acme = "i %% 10 < 6"
    other = f"(i %% {OTHER_ORGANIZATIONS})"
    other_key = f"{key_first} + {ACME_KEYS} + {other} + {OTHER_ORGANIZATIONS} * (i %% 800)"
    deployment = f"CASE i %% 3 {' '.join(f'WHEN {n} THEN {d.pk}' for n, d in enumerate(deployments))} END"
    insert_series(
        UsageEvent,
        EVENTS,
        {
            "request_id": "'req_' || i",
            "organization": f"CASE WHEN {in_acme} THEN {acme.pk} ELSE {org_first} + {other} END",
            "api_key": f"CASE WHEN {in_acme} THEN {key_first} + (i %% {ACME_KEYS}) ELSE {other_key} END",
            "endpoint": "'chat'",
            "public_model": case("i %% 3", MODELS),
            "deployment_id": deployment,
            "provider": "'Simulator'",
            "status_code": "CASE WHEN i %% 50 = 0 THEN 502 WHEN i %% 20 = 0 THEN 429 ELSE 200 END",
            "prompt_tokens": "100 + i %% 500",
            "completion_tokens": "20 + i %% 300",
            "usage_source": "'reported'",
            "latency_ms": "150 + i %% 900",
            "cost": "(i %% 100) * 0.0001",
            "charged": "(i %% 100) * 0.0001",
            "created_at": minus(now, f"i * {DAYS * 86400 / EVENTS}", "second"),
        },
        fast=fast,
    )

    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
    sums = {"requests": "10 + i %% 90", "errors": "i %% 3", "prompt_tokens": "5000", "completion_tokens": "900"}
    acme_keys_per_day = 200
    insert_series(  # Acme's days: 200 keys x 3 models x 30 days
        UsageRollup,
        DAYS * acme_keys_per_day * len(MODELS),
        {
            "organization": str(acme.pk),
            "api_key": f"{key_first} + ((i - 1) / {len(MODELS)}) %% {acme_keys_per_day}",
            "public_model": case("i %% 3", MODELS),
            "provider": "'Simulator'",
            "period": "'day'",
            "bucket": minus(today, f"(i - 1) / {acme_keys_per_day * len(MODELS)}", "day"),
            "cost": "(i %% 50) * 0.01",
            **sums,
        },
    )
    insert_series(  # Acme's hours: 10 keys x 3 models x 720 hours
        UsageRollup,
        DAYS * 24 * 10 * len(MODELS),
        {
            "organization": str(acme.pk),
            "api_key": f"{key_first} + ((i - 1) / {len(MODELS)}) %% 10",
            "public_model": case("i %% 3", MODELS),
            "provider": "'Simulator'",
            "period": "'hour'",
            "bucket": minus(hour, f"(i - 1) / {10 * len(MODELS)}", "hour"),
            "cost": "(i %% 50) * 0.01",
            **sums,
        },
    )
    insert_series(  # everyone else's days, per organization and model
        UsageRollup,
        DAYS * OTHER_ORGANIZATIONS * len(MODELS),
        {
            "organization": f"{org_first} + ((i - 1) / {len(MODELS)}) %% {OTHER_ORGANIZATIONS}",
            "public_model": case("i %% 3", MODELS),
            "provider": "'Simulator'",
            "period": "'day'",
            "bucket": minus(today, f"(i - 1) / {OTHER_ORGANIZATIONS * len(MODELS)}", "day"),
            "cost": "(i %% 50) * 0.01",
            **sums,
        },
    )
    insert_series(  # charges: half Acme's
        LedgerEntry,
        LEDGER_ENTRIES,
        {
            "account": f"CASE WHEN i %% 2 = 0 THEN {accounts[0].pk} ELSE {account_first} + {other} END",
            "kind": "'charge'",
            "amount": "-0.01 - (i %% 100) * 0.0001",
            "idempotency_key": "'usage:req_' || i",
            "request_id": "'req_' || i",
            "created_at": minus(now, f"i * {DAYS * 86400 / LEDGER_ENTRIES}", "second"),
        },
        fast=fast,
    )

    acme_key = ApiKey.objects.get(pk=key_first)
    for period in Budget.Period.values:
        budget = Budget.objects.create(organization=acme, period=period, limit=Decimal(500))
        for threshold in (50, 80):
            BudgetAlert.objects.create(
                budget=budget, window_start=today, threshold=threshold, spent=Decimal(400), limit=Decimal(500)
            )
    for key_id in range(key_first, key_first + 10):
        Budget.objects.create(organization=acme, api_key_id=key_id, period=Budget.Period.MONTHLY, limit=Decimal(50))
    if ON_POSTGRESQL:
        with connection.cursor() as cursor:
            if fast:
                cursor.execute("SET LOCAL session_replication_role = origin")  # the pages run with triggers on
            cursor.execute("ANALYZE")  # plans as production's would be, on tables of this size
    return Scale(
        operator=operator,
        alice=alice,
        acme=acme,
        acme_key=acme_key,
        event=UsageEvent.objects.get(request_id="req_10"),
    )


@pytest.fixture(scope="module")
def scale(django_db_setup: None, django_db_blocker: Any) -> Iterator[Scale]:
    """Seeded once for the module, in a transaction the module's tests run inside
    (each in a savepoint of its own) and that is rolled back when they are done."""
    with django_db_blocker.unblock(), transaction.atomic():
        started = time.perf_counter()
        seeded = seed(datetime.now(UTC))
        seeded.seeded_in = time.perf_counter() - started
        try:
            yield seeded
        finally:
            transaction.set_rollback(True)
        slowest = sorted(seeded.timings, reverse=True)[:15]
        print(f"\nseeded in {seeded.seeded_in:.1f} s; slowest pages (s, queries, most rows one read, url):")
        for seconds, queries, rows, url in slowest:
            print(f"  {seconds:6.3f} {queries:3d} {rows:8d}  {url}")


# --- Loading pages -------------------------------------------------------------------------


def rows_read(node: dict[str, Any]) -> int:
    """Rows the scans of a plan went through: those they returned and those their
    filters dropped, in every loop."""
    own = 0
    if "Scan" in node["Node Type"]:
        seen = (
            node["Actual Rows"] + node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        )
        own = seen * node["Actual Loops"]
    return own + sum(rows_read(child) for child in node.get("Plans", []))


class ScanCounter:
    """Runs each SELECT of a page again under EXPLAIN ANALYZE and keeps the most rows
    one of them read. Its own statements bypass Django's cursor, so they are not
    counted as the page's queries."""

    def __init__(self) -> None:
        self.worst = 0
        self.worst_sql = ""

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        result = execute(sql, params, many, context)
        if not many and sql.lstrip().upper().startswith("SELECT"):
            with context["connection"].connection.cursor() as raw:
                raw.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
                rows = rows_read(raw.fetchone()[0][0]["Plan"])
            if rows > self.worst:
                self.worst, self.worst_sql = rows, sql
        return result


def load(scale: Scale, client: Client, url: str, max_queries: int, assert_max_queries: Any) -> Any:
    """GETs a page within its query budget (and, on PostgreSQL, its rows budget); records its time."""
    counter = ScanCounter()
    started = time.perf_counter()
    try:
        with assert_max_queries(max_queries) as captured:
            if ON_POSTGRESQL:
                with connection.execute_wrapper(counter):
                    response = client.get(url)
            else:
                response = client.get(url)
    finally:
        scale.timings.append((time.perf_counter() - started, len(captured), counter.worst, url))
    assert response.status_code == 200, url
    if url.partition("?")[0] not in WINDOW_READS:
        assert counter.worst <= ROWS_PER_QUERY, f"{url} read {counter.worst} rows in: {counter.worst_sql}"
    return response


def load_all(scale: Scale, client: Client, urls: list[str], max_queries: int, assert_max_queries: Any) -> list[str]:
    """Loads every page, whatever the others do; returns what went wrong, page by page."""
    problems = []
    for url in urls:
        try:
            load(scale, client, url, max_queries, assert_max_queries)
        except (AssertionError, pytest.fail.Exception) as problem:
            problems.append(f"{url}: {str(problem)[:600]}")
    return problems


def admin_pages(scale: Scale) -> list[str]:
    """Every list and one change page of each registered model, and the big tables' filters and searches."""
    pages = []
    for model, model_admin in admin.site._registry.items():
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        pages.append(reverse(f"{name}_changelist"))
        row = model._default_manager.order_by("-pk").first()
        if row is not None:
            pages.append(reverse(f"{name}_change", args=[row.pk]))
        if model_admin.has_add_permission(_operator_request(scale)):
            pages.append(reverse(f"{name}_add"))
    acme, key = scale.acme.pk, scale.acme_key.pk
    usage = reverse("admin:billing_usageevent_changelist")
    keys = reverse("admin:accounts_apikey_changelist")
    pages += [
        f"{usage}?organization={acme}",
        f"{usage}?apikey={key}",
        f"{usage}?status=5xx",
        f"{usage}?when=1h&status=4xx",
        f"{usage}?q=req_123456",
        f"{usage}?p=49",
        f"{reverse('admin:billing_ledgerentry_changelist')}?organization={acme}",
        f"{reverse('admin:billing_ledgerentry_changelist')}?q=req_222",
        f"{reverse('admin:billing_usagerollup_changelist')}?organization={acme}&period=day",
        f"{keys}?organization={acme}",
        f"{keys}?q=of_live_p100000000777",
        f"{keys}?q=key_scale4242",
        f"{keys}?q=key+12",
        f"{keys}?status=revoked&when=7d",
        f"{reverse('admin:accounts_membership_changelist')}?organization={acme}",
        f"{reverse('admin:autocomplete')}?app_label=billing&model_name=budget&field_name=api_key&term=",
        f"{reverse('admin:autocomplete')}?app_label=billing&model_name=budget&field_name=api_key&term=key_scale9",
        f"{reverse('admin:autocomplete')}?app_label=accounts&model_name=apikey&field_name=organization&term=Ten",
    ]
    return pages


def filter_choices(client: Client) -> list[str]:
    """Each choice of each list filter of the project's admin lists: what an operator clicks."""
    urls: set[str] = set()
    for model in admin.site._registry:
        if model._meta.app_label in PROJECT_APPS:
            changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            urls |= filter_choice_urls(changelist, client.get(changelist))
    return sorted(urls)


def _operator_request(scale: Scale) -> HttpRequest:
    request = RequestFactory().get("/admin/")
    request.user = scale.operator
    return request


def dashboard_pages(scale: Scale) -> list[str]:
    event, key = scale.event, scale.acme_key.public_id
    pages = [
        reverse("dashboard-overview"),
        reverse("dashboard-keys"),
        f"{reverse('dashboard-keys')}?page=2",
        f"{reverse('dashboard-keys')}?page=700",
        reverse("dashboard-usage"),
        f"{reverse('dashboard-usage')}?group_by=key",
        f"{reverse('dashboard-usage')}?group_by=model",
        f"{reverse('dashboard-usage-csv')}?group_by=key",
        reverse("dashboard-requests"),
        f"{reverse('dashboard-requests')}?status=5xx",
        f"{reverse('dashboard-requests')}?key={key}",
        f"{reverse('dashboard-requests')}?model={MODELS[1]}",
        reverse("dashboard-request-detail", args=[event.request_id]),
        reverse("dashboard-billing"),
        f"{reverse('dashboard-billing')}?page=3",
        reverse("dashboard-members"),
        f"{reverse('dashboard-members')}?page=30",
    ]
    # Pages that other work adds to the dashboard, when they are there.
    for name, args in (("dashboard-key-edit", [key]), ("dashboard-playground", [])):
        with contextlib.suppress(NoReverseMatch):
            pages.append(reverse(name, args=args))
    return pages


def test_every_admin_page_is_bounded_with_a_million_usage_rows(
    scale: Scale, db: None, client: Client, django_assert_max_num_queries: Any
) -> None:
    client.force_login(scale.operator)
    usage = load(
        scale, client, reverse("admin:billing_usageevent_changelist"), ADMIN_QUERIES, django_assert_max_num_queries
    )
    assert f"{COUNT_CAP}+ usage events" in usage.content.decode(), "the count stops at its cap"
    problems = load_all(scale, client, admin_pages(scale), ADMIN_QUERIES, django_assert_max_num_queries)
    problems += load_all(scale, client, filter_choices(client), ADMIN_QUERIES, django_assert_max_num_queries)
    assert problems == [], "\n".join(problems)


def test_every_dashboard_page_is_bounded_with_a_million_usage_rows(
    scale: Scale, db: None, client: Client, django_assert_max_num_queries: Any
) -> None:
    client.force_login(scale.alice)
    requests = load(scale, client, reverse("dashboard-requests"), DASHBOARD_QUERIES, django_assert_max_num_queries)
    assert reverse("dashboard-request-detail", args=["req_1"]) in requests.content.decode(), "the newest request"
    problems = load_all(scale, client, dashboard_pages(scale), DASHBOARD_QUERIES, django_assert_max_num_queries)
    assert problems == [], "\n".join(problems)
