"""One gateway per /v1 app, opened at lifespan startup and closed at shutdown (issue 12).

Nothing on the hot path lives in module globals: two apps in one process (or one
event loop) share no client, no snapshot and no journal, and stopping one leaves
the other serving.
"""

from __future__ import annotations

import ast
import asyncio
import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from gateway.asgi import GatewayApp
from oneflow.lib.asgi import LifespanMiddleware
from tests.gateway.asgi_client import call_app, tenant_key

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}


async def post(app: Any, path: str, body: dict[str, Any], key: str = "", **extra: str) -> tuple[int, dict[str, Any]]:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json", **extra}
    answer = await call_app(app, "POST", path, json.dumps(body).encode(), headers)
    return answer.status, answer.json()


def test_a_request_before_startup_is_a_503_in_the_clients_shape() -> None:
    app = GatewayApp()

    status, answer = asyncio.run(post(app, "/v1/chat/completions", CHAT))
    assert status == 503
    assert answer["error"]["code"] == "gateway_unavailable"

    status, answer = asyncio.run(post(app, "/v1/messages", {**CHAT, "max_tokens": 5}))
    assert status == 503
    assert answer["type"] == "error" and answer["error"]["type"] == "overloaded_error"

    # The wrappers' own answers follow the same rule as the gateway's: a client naming an
    # Anthropic API version gets Anthropic's shape on any path.
    status, answer = asyncio.run(post(app, "/v1/chat/completions", CHAT, **{"anthropic-version": "2023-06-01"}))
    assert (status, answer["type"], answer["error"]["type"]) == (503, "error", "overloaded_error")


@pytest.mark.django_db(transaction=True)
def test_two_gateways_share_nothing_and_stopping_one_leaves_the_other_serving() -> None:
    key = tenant_key()

    async def scenario() -> tuple[int, int]:
        first, second = GatewayApp(), GatewayApp()
        await first.start()
        await second.start()
        assert first.gateway is not None and second.gateway is not None
        a, b = first.gateway, second.gateway
        assert {id(a.http), id(a.redis), id(a.journal), id(a.snapshots)}.isdisjoint(
            {id(b.http), id(b.redis), id(b.journal), id(b.snapshots)}
        )
        assert (await post(first, "/v1/chat/completions", CHAT, key))[0] == 200
        await first.stop()
        served = (await post(second, "/v1/chat/completions", CHAT, key))[0]
        stopped = (await post(first, "/v1/chat/completions", CHAT, key))[0]
        await second.stop()
        return served, stopped

    assert asyncio.run(scenario()) == (200, 503)


def test_a_startup_that_fails_is_reported_to_the_server_which_then_does_not_serve() -> None:
    async def broken() -> None:
        raise RuntimeError("Redis is unreachable")

    async def nothing() -> None:
        return None

    async def scenario() -> list[MutableMapping[str, Any]]:
        app = LifespanMiddleware(GatewayApp(), on_startup=broken, on_shutdown=nothing)
        inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        outbox: list[MutableMapping[str, Any]] = []
        await inbox.put({"type": "lifespan.startup"})

        async def send(message: MutableMapping[str, Any]) -> None:
            outbox.append(message)

        await app({"type": "lifespan"}, inbox.get, send)
        return outbox

    [answer] = asyncio.run(scenario())
    assert answer == {"type": "lifespan.startup.failed", "message": "Redis is unreachable"}


# --- No state in module globals on the hot path ------------------------------------------------

HOT_PATH_FILES = [
    *sorted((ROOT / "gateway").glob("*.py")),
    ROOT / "oneflow/lib/http.py",
    ROOT / "oneflow/lib/redis.py",
    ROOT / "oneflow/lib/scripts.py",
    ROOT / "billing/journal.py",
]
# Module-level values that are not state anyone reads back: loggers, type variables,
# immutable definitions, and the random source that spreads unsticky requests.
ALLOWED_CALLS = {"getLogger", "TypeVar", "Script", "frozenset", "compile", "timedelta", "Decimal", "Random"}


def module_state(source: str) -> list[str]:
    """Module-level names bound to a mutable value: a container or an instance built
    at import. Constants (UPPER_CASE names) may hold tables; nothing may be lower case."""
    found = []
    for node in ast.parse(source).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if not isinstance(target, ast.Name) or target.id.isupper() or target.id == "__all__":
                continue
            mutable = isinstance(value, ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp | ast.SetComp)
            if isinstance(value, ast.Call):
                name = value.func.attr if isinstance(value.func, ast.Attribute) else getattr(value.func, "id", "")
                mutable = name not in ALLOWED_CALLS
            if mutable:
                found.append(f"{target.id} (line {node.lineno})")
    return found


def test_the_hot_path_keeps_no_state_in_module_globals() -> None:
    offences = {path.relative_to(ROOT).as_posix(): module_state(path.read_text()) for path in HOT_PATH_FILES}
    assert {path: names for path, names in offences.items() if names} == {}
    assert not any("weakref" in path.read_text() for path in HOT_PATH_FILES), "no per-loop caches"


def test_the_check_sees_a_singleton_and_a_per_loop_cache() -> None:
    source = "snapshots = Snapshots()\n_tasks: set[int] = set()\nlogger = logging.getLogger(__name__)\nLIMIT = 5\n"
    assert module_state(source) == ["snapshots (line 1)", "_tasks (line 2)"]
