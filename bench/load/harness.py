"""One run: start what it needs, play the plan, collect what it measured, stop everything.

The fake upstream always runs; the production shape of OneFlow only for the gateway
target ("direct" sends the same plan to the fake upstream alone, the harness's own
baseline). Generator processes start with the measured start ``t0`` in the future, so
they are all up and waiting when the first request is due.
"""

from __future__ import annotations

import http.client
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis

from bench.load import probes, report, system, traffic

ROOT = system.ROOT
STARTUP_SECONDS = 2.0  # for the generator processes to import and load the plan


@dataclass
class Config:
    profile: str
    shape: traffic.Shape
    mix: traffic.Mix
    target: str = "gateway"
    warmup: float = 5.0
    poisson: bool = True
    seed: int = 1
    generators: int = 1
    closed: int = 0  # connections of a closed-loop run, 0 for open loop
    redis: str = "private"  # "private": a Redis server of the run's own; "shared": db 14 of the machine's
    web_workers: int = 2
    celery_concurrency: int = 2
    timeout: float = 60.0
    port_base: int = 18000
    # Scratch space for logs and raw records, outside the repository.
    work: Path = field(default_factory=lambda: Path(os.environ.get("BENCH_BUILD", "/tmp/oneflow-load")))  # noqa: S108
    command: str = ""
    notes: list[str] = field(default_factory=list)
    # Called once with a function that takes (seconds after t0, action), to act during the run.
    during: Callable[[Callable[[float, Callable[[], None]], None]], None] | None = None


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        connection.close()


def host_line() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - read-only, wherever git is
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, load average {load} before the run, Python {platform.python_version()}, "
        f"commit {commit or 'unknown'} (plus the working tree)"
    )


def raise_file_limit() -> None:
    """Open loop means thousands of sockets at once: lift the soft limit on open files to the
    hard one, for this process and every process it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))


def execute(config: Config) -> report.Run:
    raise_file_limit()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    work = config.work / f"{stamp}-{config.profile}-{config.target}"
    work.mkdir(parents=True, exist_ok=True)
    ports = {
        "gateway": config.port_base,
        "upstream": config.port_base + 1,
        "metrics": config.port_base + 2,
        "redis": config.port_base + 3,
    }
    busy = [f"{name} {port}" for name, port in ports.items() if not port_free(port)]
    if busy:
        raise SystemExit(f"ports in use: {', '.join(busy)} (choose others with --port-base)")
    private = config.redis == "private" and config.target == "gateway"
    redis_url = f"redis://127.0.0.1:{ports['redis']}/14" if private else system.SHARED_REDIS_URL
    settings: dict[str, Any] = {
        "host": host_line(),
        "arrivals": "Poisson" if config.poisson else "uniform",
        "warmup": config.warmup,
        "seed": config.seed,
        "connections": config.closed,
        "generators": config.generators,
        "system": "fake upstream alone (direct)"
        if config.target == "direct"
        else f"gunicorn with {config.web_workers} uvicorn workers (deploy/gunicorn.conf.py), Celery worker "
        f"(concurrency {config.celery_concurrency}) and beat, PostgreSQL db {system.DATABASE}, "
        + (f"a Redis server of the run's own (port {ports['redis']})" if private else "the machine's Redis, db 14"),
    }
    helpers = [_upstream(config, work, ports["upstream"])]
    oneflow: system.OneFlow | None = None
    try:
        _wait(lambda: get(ports["upstream"], "/health")[0] == 200, "the fake upstream", helpers[0])
        key = "none"
        if private:
            helpers.append(system.private_redis(ports["redis"], work))
            _wait(lambda: _redis_pid(redis_url) > 0, "the Redis server", helpers[-1])
        if config.target == "gateway":
            oneflow = system.OneFlow(
                work=work,
                port=ports["gateway"],
                upstream_port=ports["upstream"],
                metrics_port=ports["metrics"],
                redis_url=redis_url,
                web_workers=config.web_workers,
                celery_concurrency=config.celery_concurrency,
            )
            print(f"# preparing {system.DATABASE} (migrate, seed) and starting OneFlow; logs in {work}", flush=True)
            key = oneflow.prepare()
            oneflow.start()
        run = _play(config, work=work, port=ports["upstream"], upstream=helpers[0], oneflow=oneflow, key=key)
        run.settings = settings
        return run
    finally:
        if oneflow is not None:
            oneflow.stop()
        for helper in helpers:
            helper.terminate()
            helper.wait(10)


def _upstream(config: Config, work: Path, port: int) -> subprocess.Popen[bytes]:
    mix = config.mix
    return subprocess.Popen(  # noqa: S603 - our own command line
        [
            *(sys.executable, "-m", "bench.load.upstream", "--port", str(port), "--seed", str(config.seed)),
            *("--error-share", str(mix.error_share), "--token-rate", str(mix.token_rate)),
            *("--chunk-tokens", str(mix.chunk_tokens)),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=(work / "upstream.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait(ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited at start")
        if ready():
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up within 30 s")


def _play(
    config: Config,
    *,
    work: Path,
    port: int,
    upstream: subprocess.Popen[bytes],
    oneflow: system.OneFlow | None,
    key: str,
) -> report.Run:
    if config.closed:
        # The closed loop cycles through a pool of request shapes drawn the same way.
        pool = traffic.steady(rate=1000, duration=20)
        plan = traffic.plan_draw(pool, config.mix, warmup=0, poisson=False, seed=config.seed)
    else:
        plan = traffic.plan_draw(
            config.shape, config.mix, warmup=config.warmup, poisson=config.poisson, seed=config.seed
        )
    plan.save(work / "plan.npz")
    t0 = time.monotonic() + STARTUP_SECONDS + config.warmup
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    generator_pids: list[int] = []
    redis_url = oneflow.redis_url if oneflow is not None else None
    redis_pid = _redis_pid(redis_url) if redis_url else 0

    def roles() -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        if oneflow is not None:
            found["web master"] = [oneflow.processes["web"].pid]
            found["celery worker"] = [oneflow.processes["worker"].pid]
            found["celery beat"] = [oneflow.processes["beat"].pid]
            found["redis-server"] = [redis_pid]
        found["fake upstream"] = [upstream.pid]
        found["generator"] = list(generator_pids)
        found["harness"] = [os.getpid()]
        return found

    probe = probes.Probe(roles, redis_url)
    probe.start()
    target = oneflow.port if oneflow is not None else port
    processes = [
        _generator(config, work=work, worker=worker, t0=t0, port=target, key=key) for worker in range(config.generators)
    ]
    generator_pids.extend(process.pid for process in processes)
    timers: list[threading.Timer] = []
    if config.during is not None:

        def at(seconds: float, action: Callable[[], None]) -> None:
            timer = threading.Timer(max(0.0, t0 + seconds - time.monotonic()), action)
            timer.start()
            timers.append(timer)

        config.during(at)
    span = traffic.seconds_to_text(config.shape.duration)
    planned = f"{config.closed} connections" if config.closed else f"{len(plan)} planned requests"
    print(f"# {config.profile} against {config.target}: {planned} over {span}", flush=True)
    summaries = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"a generator failed; see {work}/generator-*.log")
        summaries.append(orjson.loads(out.strip().splitlines()[-1]))
    for timer in timers:
        timer.cancel()
    settled = _await_drain(redis_url) if redis_url else None
    probe.stop()
    return report.Run(
        profile=config.profile,
        target=config.target,
        command=config.command,
        started=started,
        shape=config.shape,
        mix=config.mix,
        settings={},
        plan=plan,
        records=_merge([work / f"records-{worker}.npz" for worker in range(config.generators)]),
        closed=bool(config.closed),
        t0=t0,
        probe=probe,
        upstream_stats=orjson.loads(get(port, "/__fake/stats")[1] or b"{}"),
        generators=summaries,
        events_stored=system.usage_events_stored() if oneflow is not None else None,
        drain_settled_s=settled,
        notes=config.notes,
    )


def _generator(config: Config, *, work: Path, worker: int, t0: float, port: int, key: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.load.generator", "--plan", str(work / "plan.npz")]
    command += ["--out", str(work / f"records-{worker}.npz"), "--t0", repr(t0), "--port", str(port)]
    command += ["--worker", str(worker), "--workers", str(config.generators), "--timeout", str(config.timeout)]
    if config.closed:
        command += ["--closed", str(max(1, config.closed // config.generators))]
        command += ["--duration", str(config.shape.duration), "--warmup", str(config.warmup)]
    return subprocess.Popen(  # noqa: S603 - our own command line
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_KEY": key},
        stdout=subprocess.PIPE,
        stderr=(work / f"generator-{worker}.log").open("wb"),
    )


def _redis_pid(url: str) -> int:
    try:
        return int(redis.Redis.from_url(url).info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return 0


def _await_drain(redis_url: str) -> float | None:
    """Seconds until the usage stream is empty after the last answer, or None if it is not
    within twice the allowed time (the run goes on to its report either way)."""
    client = redis.Redis.from_url(redis_url)
    start = time.monotonic()
    while time.monotonic() - start < 2 * report.DRAIN_SETTLE_S:
        if client.xlen(probes.USAGE_STREAM) == 0:
            return time.monotonic() - start
        time.sleep(0.25)
    return None


def _merge(paths: list[Path]) -> dict[str, np.ndarray]:
    parts = [dict(np.load(path)) for path in paths]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def publish(run: report.Run, out: Path, name: str) -> tuple[report.Figures, Path]:
    """Writes ``name``.md, .png and .json into ``out``; returns the figures and the summary's path."""
    out.mkdir(parents=True, exist_ok=True)
    figures = report.figures(run)
    report.plot(figures, out / f"{name}.png")
    (out / f"{name}.md").write_text(report.markdown(figures, f"{name}.png"))
    (out / f"{name}.json").write_bytes(orjson.dumps(report.summary(figures), option=orjson.OPT_INDENT_2))
    return figures, out / f"{name}.md"
