"""bench/load.sh selfcheck: the harness measured against its own fake upstream, no OneFlow.

1. Accuracy: a fixed 50 ms upstream at 500 req/s, uniform arrivals. The measured p50 must
   be within 3 ms of 50 ms and every planned request answered.
2. Ceiling: a 0 ms upstream at rising rates, one generator process: the highest rate it
   keeps on time (99 % answered, send lag p99 under 10 ms), and the CPU each request costs
   the generator and the upstream, then the default chat mix at 1000 req/s.
3. Coordinated omission: a 20 ms upstream stalls for 1 s in the middle of a 300 req/s run.
   Open loop, every request planned during the stall must show it (the p99 jumps to
   about a second); the same stall under a closed loop of 16 connections delays only the
   16 requests in flight, and the p99 stays near 20 ms: what a closed-loop tool reports.

The checks allow for a busy machine but are timing checks: a machine loaded enough to
delay the generator by tens of milliseconds fails them, as it should.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from bench.load import harness, report, traffic

FIXED = traffic.Mix(stream_share=0.0, latency_ms=50.0, sigma=0.0, error_share=0.0)
STALL_AT, STALL_MS = 4.0, 1000
CEILING_RATES = (1000, 2000, 4000, 8000, 12000, 16000)
ZERO = replace(FIXED, latency_ms=0.0)
STALLED = replace(FIXED, latency_ms=20.0)


def _direct(
    args: argparse.Namespace,
    name: str,
    shape: traffic.Shape,
    mix: traffic.Mix,
    *,
    closed: int = 0,
    during: Callable[[Callable[[float, Callable[[], None]], None]], None] | None = None,
) -> report.Figures:
    config = harness.Config(
        profile=name,
        shape=shape,
        mix=mix,
        target="direct",
        warmup=1.0,
        poisson=False,
        closed=closed,
        port_base=args.port_base,
        during=during,
    )
    return report.figures(harness.execute(config))


def _cpu_us(figures: report.Figures, role: str) -> float:
    seconds = sum(u.cpu_seconds for u in figures.usage if u.role == role)
    return seconds * 1e6 / max(1, figures.counts["ok"])


class SelfCheck:
    """Runs the three checks, printing as it goes, and keeps their Markdown."""

    def __init__(self, args: argparse.Namespace, command: str) -> None:
        self.args = args
        self.passed = True
        self.lines = [
            "# Load harness self-check",
            "",
            *(f"> {note}" for note in args.note),
            "",
            f"`{command}`: the generator against the fake upstream alone, no OneFlow; {harness.host_line()}.",
            "",
        ]

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def check(self, name: str, measured: str, ok: bool) -> None:
        self.passed &= ok
        self.say(f"| {name} | {measured} | {'PASS' if ok else '**FAIL**'} |")

    def accuracy(self) -> None:
        f = _direct(self.args, "accuracy", traffic.steady(rate=500, duration=10), FIXED)
        json = f.latency["JSON total"]
        self.lines += ["## 1. Accuracy", "", "| check | measured | |", "|---|---|---|"]
        self.check(
            "JSON p50 at a fixed 50 ms upstream, within 3 ms", f"{json['p50']:.2f} ms", abs(json["p50"] - 50) <= 3
        )
        share = f.counts["ok"] / max(1, f.counts["planned"])
        rate = f.counts["ok"] / f.duration
        self.check("achieved rate at 500 req/s planned", f"{rate:.1f} req/s ({share:.2%} answered)", share >= 0.999)
        lag = f.send_lag
        self.check("send lag p99 under 10 ms", f"p50 {lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms", lag["p99"] < 10)
        self.say(f"| (JSON p95 / p99 / max) | {json['p95']:.2f} / {json['p99']:.2f} / {json['max']:.2f} ms | |")

    def ceiling(self) -> None:
        self.lines += [
            "",
            "## 2. Ceiling of one generator process (0 ms upstream, JSON)",
            "",
            "| planned req/s | answered | send lag p99 ms | p99 ms | generator µs CPU / request | "
            "upstream µs CPU / request |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        ceiling = 0
        for target in CEILING_RATES:
            f = _direct(self.args, f"ceiling-{target}", traffic.steady(rate=target, duration=5), ZERO)
            answered = f.counts["ok"] / max(1, f.counts["planned"])
            on_time = answered >= 0.99 and f.send_lag["p99"] < 10
            ceiling = target if on_time else ceiling
            self.say(
                f"| {target} | {answered:.2%} | {f.send_lag['p99']:.2f} | {f.latency['JSON total']['p99']:.2f} | "
                f"{_cpu_us(f, 'generator'):.0f} | {_cpu_us(f, 'fake upstream'):.0f} |"
            )
            if not on_time:
                break
        self.lines.append("")
        self.say(f"Highest rate kept on time: **{ceiling} req/s** (steps: {', '.join(map(str, CEILING_RATES))}).")
        chat = _direct(self.args, "ceiling-chat", traffic.steady(rate=1000, duration=10), traffic.Mix())
        self.say(
            f"Default chat mix (20 % streamed in 16-token events) at 1000 req/s: generator "
            f"{_cpu_us(chat, 'generator'):.0f} µs, upstream {_cpu_us(chat, 'fake upstream'):.0f} µs CPU per request; "
            f"send lag p99 {chat.send_lag['p99']:.2f} ms, {chat.counts['ok'] / max(1, chat.counts['planned']):.2%} "
            "answered 200 (the upstream's 2 % errors are not retried here)."
        )
        self.lines.append("")

    def omission(self) -> None:
        port = self.args.port_base + 1

        def stall(at: Callable[[float, Callable[[], None]], None]) -> None:
            def begin() -> None:
                harness.get(port, f"/__fake/stall?ms={STALL_MS}", "POST")

            at(STALL_AT, begin)

        shape = traffic.steady(rate=300, duration=10)
        open_loop = _direct(self.args, "stall-open", shape, STALLED, during=stall)
        closed_loop = _direct(self.args, "stall-closed", shape, STALLED, closed=16, during=stall)
        self.lines += [
            "## 3. A 1 s upstream stall at 4 s, open and closed loop (20 ms upstream)",
            "",
            "| loop | requests | delayed over 100 ms | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        delayed = {}
        for name, f in (("open, 300 req/s", open_loop), ("closed, 16 connections", closed_loop)):
            total = f.run.records["total"][f.measured] * 1000
            delayed[name] = int((total > 100).sum())
            latency = f.latency["JSON total"]
            self.say(
                f"| {name} | {f.counts['planned']} | {delayed[name]} | {latency['p50']:.1f} | {latency['p99']:.1f} | "
                f"{latency['max']:.1f} |"
            )
        during = open_loop.measured & (open_loop.planned_at >= STALL_AT) & (open_loop.planned_at < STALL_AT + 0.9)
        shown = open_loop.run.records["total"][during] * 1000 > 100
        self.lines += ["", "| check | measured | |", "|---|---|---|"]
        self.check(
            "open loop: requests planned in the stall's first 0.9 s delayed over 100 ms",
            f"{int(shown.sum())} of {int(during.sum())}",
            bool(during.sum()) and shown.mean() >= 0.95,
        )
        worst = open_loop.latency["JSON total"]["max"]
        self.check("open loop: max near the stall", f"{worst:.0f} ms", worst >= 0.9 * STALL_MS)
        self.check(
            "closed loop: no more delayed requests than connections",
            f"{delayed['closed, 16 connections']} (p99 {closed_loop.latency['JSON total']['p99']:.1f} ms)",
            delayed["closed, 16 connections"] <= 16,
        )


def run(args: argparse.Namespace, command: str) -> int:
    check = SelfCheck(args, command)
    check.accuracy()
    check.ceiling()
    check.omission()
    check.lines += ["", f"Self-check: **{'PASS' if check.passed else 'FAIL'}**.", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    label = f"-{args.label}" if args.label else ""
    path = args.out / f"{datetime.now(UTC):%Y-%m-%d}-selfcheck{label}.md"
    path.write_text("\n".join(check.lines))
    print(f"{'PASS' if check.passed else 'FAIL'}: {path}")
    return 0 if check.passed else 1
