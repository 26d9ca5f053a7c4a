"""bench/load.sh PROFILE [options]: a load run against OneFlow in its production shape.

Profiles (short defaults, for a smoke run; the target runs set --rate and --duration):

  steady     a fixed rate                       (default 300 req/s for 30 s)
  spike      baseline, 3x within 10 s, back     (default 100 -> 300 -> 100 req/s over 40 s)
  soak       a fixed rate for long; also checks memory and drain lag stay flat
             (default 300 req/s for 120 s; the real soak is --duration 3600)
  closed     closed loop, --connections at a time, as wrk does (capacity, not latency)
  selfcheck  the harness against its fake upstream alone: accuracy, ceiling, no
             coordinated omission

Writes bench/results/<date>-<profile>[-<label>].md, .png and .json, prints the checks and
exits 1 if one failed. docs/performance.md explains the report.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.load import harness, selfcheck, traffic

DEFAULTS = {  # profile: (rate, duration)
    "steady": (300.0, 30.0),
    "spike": (100.0, 40.0),
    "soak": (300.0, 120.0),
    "closed": (0.0, 15.0),
}


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/load.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("profile", choices=[*DEFAULTS, "selfcheck"])
    p.add_argument("--rate", type=float, help="requests per second (spike: the baseline)")
    p.add_argument("--duration", type=float, help="seconds measured, after the warm-up")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds at the first rate before measuring")
    p.add_argument("--spike-factor", type=float, default=3.0)
    p.add_argument("--ramp-seconds", type=float, default=10.0, help="spike: time to the peak and back")
    p.add_argument("--connections", type=int, default=64, help="closed: connections")
    p.add_argument("--mix", choices=sorted(traffic.MIXES), default="chat", help="chat: 20%% streamed")
    p.add_argument("--stream-share", type=float, help="share of streamed requests (overrides --mix)")
    p.add_argument("--error-share", type=float, default=0.02, help="upstream attempts answered 500/529")
    p.add_argument("--upstream-latency-ms", type=float, default=50.0, help="JSON answer time, median")
    p.add_argument("--ttft-ms", type=float, default=200.0, help="stream's first token, median")
    p.add_argument("--latency-sigma", type=float, default=0.5, help="lognormal shape; 0: fixed times")
    p.add_argument("--token-rate", type=float, default=100.0, help="streamed tokens per second")
    p.add_argument("--chunk-tokens", type=int, default=16, help="tokens per SSE event (OpenAI: 1)")
    p.add_argument("--prompt-bytes", type=_range, default=(1000, 4000), help="e.g. 1000-4000")
    p.add_argument("--answer-tokens", type=_range, default=(200, 800), help="e.g. 200-800")
    p.add_argument("--arrivals", choices=["poisson", "uniform"], default="poisson")
    p.add_argument("--generators", type=int, default=1, help="generator processes (about 3000 req/s each)")
    p.add_argument("--web-workers", type=int, default=2, help="WEB_CONCURRENCY")
    p.add_argument("--target", choices=["gateway", "direct"], default="gateway", help="direct: no OneFlow")
    p.add_argument(
        "--redis",
        choices=["private", "shared"],
        default="private",
        help="private: a redis-server of the run's own; shared: db 14 of the one on 6379",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    p.add_argument("--port-base", type=int, default=18000, help="gateway, upstream, metrics ports from here")
    p.add_argument("--label", default="", help="appended to the result's file name")
    p.add_argument("--note", action="append", default=[], help="a line quoted at the top of the report")
    p.add_argument("--out", type=Path, default=harness.ROOT / "bench" / "results")
    return p


def mix_of(args: argparse.Namespace) -> traffic.Mix:
    return traffic.Mix(
        stream_share=traffic.MIXES[args.mix] if args.stream_share is None else args.stream_share,
        prompt_bytes=args.prompt_bytes,
        answer_tokens=args.answer_tokens,
        latency_ms=args.upstream_latency_ms,
        ttft_ms=args.ttft_ms,
        sigma=args.latency_sigma,
        token_rate=args.token_rate,
        chunk_tokens=args.chunk_tokens,
        error_share=args.error_share,
    )


def shape_of(args: argparse.Namespace) -> traffic.Shape:
    rate, duration = DEFAULTS[args.profile]
    rate = args.rate or rate
    duration = args.duration or duration
    if args.profile == "spike":
        return traffic.spike(rate=rate, duration=duration, factor=args.spike_factor, ramp=args.ramp_seconds)
    return traffic.steady(rate=rate, duration=duration)


def _without_notes(argv: list[str]) -> list[str]:
    """The command line as the report shows it: the notes are quoted above it already."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        elif not arg.startswith("--note="):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = "bench/load.sh " + shlex.join(_without_notes(sys.argv[1:] if argv is None else argv))
    if args.profile == "selfcheck":
        return selfcheck.run(args, command)
    config = harness.Config(
        profile=args.profile,
        shape=shape_of(args),
        mix=mix_of(args),
        target=args.target,
        warmup=args.warmup,
        poisson=args.arrivals == "poisson",
        seed=args.seed,
        generators=args.generators,
        closed=args.connections if args.profile == "closed" else 0,
        redis=args.redis,
        web_workers=args.web_workers,
        timeout=args.timeout,
        port_base=args.port_base,
        command=command,
        notes=args.note,
    )
    run = harness.execute(config)
    name = "-".join(
        part
        for part in (datetime.now(UTC).strftime("%Y-%m-%d"), args.profile, "direct" * (args.target == "direct"))
        if part
    )
    name += f"-{args.label}" if args.label else ""
    figures, path = harness.publish(run, args.out, name)
    for check in figures.checks:
        print(f"{'PASS' if check.passed else 'FAIL'}  {check.name}: {check.measured} (limit {check.threshold})")
    print(f"{'PASS' if figures.passed else 'FAIL'}: {path} (+ .png, .json)")
    return 0 if figures.passed else 1


if __name__ == "__main__":
    sys.exit(main())
