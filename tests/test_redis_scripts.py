"""oneflow.lib.redis.run_scripts: several Lua scripts as one round trip."""

from __future__ import annotations

import asyncio
from typing import Any

from oneflow.lib import redis

ECHO = "return {KEYS[1], ARGV[1], #KEYS, #ARGV}"
COUNT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
NOTHING = "redis.call('SET', KEYS[1], ARGV[1])"


def run(calls: list[tuple[str, list[Any], list[Any]]], *, flush_scripts: bool = False) -> list[Any]:
    async def main() -> list[Any]:
        client = redis.async_client()
        try:
            if flush_scripts:
                await client.script_flush()
            scripts = [(client.register_script(source), keys, args) for source, keys, args in calls]
            return await redis.run_scripts(client, scripts)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_each_script_sees_only_its_own_keys_and_arguments_and_replies_in_order() -> None:
    redis.sync_client().delete("t:count", "t:set")
    replies = run(
        [
            (ECHO, ["t:a"], ["x"]),
            (COUNT, ["t:count"], [5]),
            (ECHO, ["t:b", "t:c"], ["y", "z", "w"]),
            (NOTHING, ["t:set"], ["v"]),
            (COUNT, ["t:count"], [2]),
        ]
    )
    assert replies == [[b"t:a", b"x", 1, 1], 5, [b"t:b", b"y", 2, 3], None, 7]
    assert redis.sync_client().get("t:set") == b"v"


def test_a_server_that_forgot_its_scripts_gets_them_again() -> None:
    redis.sync_client().delete("t:count")
    assert run([(COUNT, ["t:count"], [1])], flush_scripts=True) == [1]
