"""oneflow.lib.scripts: invocations run alone or several as one round trip, through
the synchronous client (run, run_all) and the asyncio one (arun, arun_all) alike."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from oneflow.lib import redis, scripts
from oneflow.lib.scripts import Invocation, Script, answered, forgiving

T = TypeVar("T")

ECHO = Script("test.echo", "return {KEYS[1], ARGV[1], #KEYS, #ARGV}")
COUNT = Script("test.count", "return redis.call('INCRBY', KEYS[1], ARGV[1])")
NOTHING = Script("test.nothing", "redis.call('SET', KEYS[1], ARGV[1])")
COUNTER, STORED = "test:scripts:count", "test:scripts:set"


@dataclass(frozen=True)
class Seen:
    """What ECHO saw of its own keys and arguments."""

    first_key: str
    first_arg: str
    keys: int
    args: int


def _seen(reply: Any) -> Seen:
    return Seen(reply[0].decode(), reply[1].decode(), int(reply[2]), int(reply[3]))


def echo(keys: Sequence[str], args: Sequence[str]) -> Invocation[Seen]:
    return Invocation(ECHO, keys, args, _seen)


def count(by: int) -> Invocation[int]:
    return Invocation(COUNT, [COUNTER], [by], int)


def store(value: str) -> Invocation[Any]:
    return Invocation(NOTHING, [STORED], [value])


def unreadable(reply: Any) -> int:
    raise ValueError(f"unexpected reply {reply!r}")


class Runner:
    """The synchronous layer or the asyncio one, noting the commands its last call
    sent to Redis (each one a round trip)."""

    def __init__(self, *, asynchronous: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asynchronous = asynchronous
        self.monkeypatch = monkeypatch
        self.sent: list[str] = []  # command names, EVALSHA with the sha it named
        if not asynchronous:
            self._spy(redis.sync_client())

    def run(self, invocation: Invocation[T]) -> T:
        self.sent = []
        if self.asynchronous:
            return self._in_loop(lambda client: scripts.arun(client, invocation))
        return scripts.run(redis.sync_client(), invocation)

    def run_all(self, invocations: Sequence[Invocation[Any]]) -> list[Any]:
        self.sent = []
        if self.asynchronous:
            return self._in_loop(lambda client: scripts.arun_all(client, invocations))
        return scripts.run_all(redis.sync_client(), invocations)

    def _note(self, args: tuple[Any, ...]) -> None:
        self.sent.append(f"EVALSHA {args[1]}" if args[0] == "EVALSHA" else str(args[0]))

    def _spy(self, client: Any) -> None:
        original = client.execute_command

        def execute(*args: Any, **options: Any) -> Any:
            self._note(args)
            return original(*args, **options)  # the asyncio client's coroutine is awaited by its caller

        self.monkeypatch.setattr(client, "execute_command", execute)

    def _in_loop(self, call: Callable[[Any], Awaitable[T]]) -> T:
        async def main() -> T:
            client = redis.async_client()
            self._spy(client)
            try:
                return await call(client)
            finally:
                await client.aclose()

        return asyncio.run(main())


@pytest.fixture(params=["sync", "async"])
def runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Runner:
    redis.sync_client().delete(COUNTER, STORED)
    return Runner(asynchronous=request.param == "async", monkeypatch=monkeypatch)


def one_round_trip(runner: Runner) -> bool:
    return len(runner.sent) == 1 and runner.sent[0].startswith("EVALSHA ")


def test_each_script_sees_only_its_own_keys_and_arguments_and_replies_in_order(runner: Runner) -> None:
    invocations: list[Invocation[Any]] = [
        echo(["t:a"], ["x"]),
        count(5),
        echo(["t:b", "t:c"], ["y", "z", "w"]),
        store("v"),
        count(2),
    ]
    assert runner.run_all(invocations) == [Seen("t:a", "x", 1, 1), 5, Seen("t:b", "y", 2, 3), None, 7]
    assert redis.sync_client().get(STORED) == b"v"
    # The first run may have loaded the script; from then on, one EVALSHA does it all.
    assert runner.run_all(invocations) == [Seen("t:a", "x", 1, 1), 12, Seen("t:b", "y", 2, 3), None, 14]
    assert one_round_trip(runner), "several invocations, one round trip"


def test_a_single_invocation_runs_its_own_script_and_reads_its_reply(runner: Runner) -> None:
    assert runner.run(echo(["t:a", "t:b"], ["x"])) == Seen("t:a", "x", 2, 1)
    assert runner.sent[-1] == f"EVALSHA {ECHO.sha}", "no composite around a script run alone"
    assert runner.run(count(3)) == 3
    assert runner.run(store("w")) is None


def test_answered_invocations_cost_no_round_trip(runner: Runner) -> None:
    assert runner.run(answered("known")) == "known"
    assert runner.run_all([answered(1), answered([])]) == [1, []]
    assert runner.sent == [], "nothing asked of Redis"


def test_answered_invocations_mix_with_real_ones_in_order(runner: Runner) -> None:
    assert runner.run_all([answered("a"), count(4), answered("b")]) == ["a", 4, "b"]
    assert runner.sent[-1] == f"EVALSHA {COUNT.sha}", "one real invocation runs as its own script"

    mixed: list[Invocation[Any]] = [count(1), answered("between"), echo(["t:k"], ["v"]), answered(None)]
    assert runner.run_all(mixed) == [5, "between", Seen("t:k", "v", 1, 1), None]
    assert runner.run_all(mixed) == [6, "between", Seen("t:k", "v", 1, 1), None]
    assert one_round_trip(runner), "the answered ones add nothing to the round trip"


def test_a_server_that_forgot_a_single_script_gets_it_again(runner: Runner) -> None:
    assert runner.run(count(1)) == 1
    redis.sync_client().script_flush()
    assert runner.run(count(1)) == 2
    assert runner.sent == [f"EVALSHA {COUNT.sha}", "SCRIPT LOAD", f"EVALSHA {COUNT.sha}"]
    assert runner.run(count(1)) == 3
    assert runner.sent == [f"EVALSHA {COUNT.sha}"], "loaded once, known after"


def test_a_server_that_forgot_a_composite_script_gets_it_again(runner: Runner) -> None:
    both: list[Invocation[Any]] = [count(1), echo(["t:a"], ["x"])]
    assert runner.run_all(both) == [1, Seen("t:a", "x", 1, 1)]
    composite = runner.sent[0]
    redis.sync_client().script_flush()
    assert runner.run_all(both) == [2, Seen("t:a", "x", 1, 1)]
    assert runner.sent == [composite, "SCRIPT LOAD", composite]
    assert runner.run_all(both) == [3, Seen("t:a", "x", 1, 1)]
    assert runner.sent == [composite], "loaded once, known after"


def test_forgiving_reads_an_unreadable_reply_as_none_and_keeps_the_others(
    runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    rider = Invocation(COUNT, [COUNTER], [10], unreadable)
    with caplog.at_level(logging.ERROR, logger="oneflow.lib.scripts"):
        replies = runner.run_all([count(1), forgiving(rider), echo(["t:a"], ["x"])])

    assert replies == [1, None, Seen("t:a", "x", 1, 1)]
    assert int(redis.sync_client().get(COUNTER) or 0) == 11, "the rider ran; only its reply was lost"
    (logged,) = caplog.records
    assert logged.getMessage() == "a Redis script's reply could not be read"
    assert getattr(logged, "script", None) == "test.count"
    assert logged.exc_info is not None and isinstance(logged.exc_info[1], ValueError)


def test_without_forgiving_an_unreadable_reply_raises(runner: Runner) -> None:
    with pytest.raises(ValueError, match="unexpected reply"):
        runner.run_all([count(1), Invocation(COUNT, [COUNTER], [10], unreadable)])
