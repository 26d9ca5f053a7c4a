"""What the run costs and how far the drain lags, sampled once a second from /proc and Redis.

Processes are named by their role: each web worker apart, the gunicorn master, the Celery
worker (its pool children summed in) and beat, the PostgreSQL backends serving
``oneflow_bench`` (summed), redis-server, the fake upstream, the generator processes
(summed) and the harness itself. CPU is utime + stime; RSS is sampled, and the kernel's
own high-water mark (VmHWM) gives each process's true peak between samples.

Drain lag is the age of the oldest usage event still in the stream: the drain deletes
what it stored (billing/holds.py::_ACK), so the first entry left is the oldest one not yet
in PostgreSQL, and its id is the millisecond Redis took it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
USAGE_STREAM = "oneflow:usage"  # oneflow/lib/redis_keys.py::USAGE_STREAM, read without importing Django


@dataclass(frozen=True, slots=True)
class Stat:
    pid: int
    ppid: int
    name: str
    cpu: float  # seconds
    rss: float  # MB
    born: float  # seconds since boot


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as source:
            raw = source.read().decode()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22, rss 24.
    return Stat(
        pid=pid,
        ppid=int(rest[1]),
        name=name,
        cpu=(int(rest[11]) + int(rest[12])) / CLOCK_TICKS,
        rss=int(rest[21]) * PAGE_MB,
        born=int(rest[19]) / CLOCK_TICKS,
    )


def peak_rss(pid: int) -> float:
    """The kernel's high-water mark of the process's RSS, in MB."""
    try:
        with open(f"/proc/{pid}/status") as source:
            for line in source:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def uptime() -> float:
    with open("/proc/uptime") as source:
        return float(source.read().split()[0])


def postgres_backend(pid: int, database: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as source:
            return f" {database} ".encode() in source.read()
    except OSError:
        return False


@dataclass
class Sample:
    at: float  # time.monotonic()
    processes: dict[int, tuple[str, float, float]]  # pid: (role, CPU seconds, RSS MB)
    drain_lag: float | None  # seconds; None when Redis did not answer
    backlog: int  # events in the stream


@dataclass
class Probe:
    """Samples in a thread of its own until stopped. ``roles`` names the root pids to follow
    (descendants included) and is called on every sample, so late processes are found."""

    roles: Callable[[], dict[str, list[int]]]
    redis_url: str | None
    database: str = "oneflow_bench"
    interval: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    peaks: dict[int, float] = field(default_factory=dict)  # pid: VmHWM MB
    born: dict[int, float] = field(default_factory=dict)  # pid: start, as time.monotonic()
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._client = redis.Redis.from_url(self.redis_url) if self.redis_url else None
        self._boot_offset = time.monotonic() - uptime()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def sample(self) -> None:
        at = time.monotonic()
        stats = [s for s in (read_stat(int(p)) for p in os.listdir("/proc") if p.isdigit()) if s is not None]
        by_parent: dict[int, list[Stat]] = {}
        for stat in stats:
            by_parent.setdefault(stat.ppid, []).append(stat)
        by_pid = {stat.pid: stat for stat in stats}
        processes: dict[int, tuple[str, float, float]] = {}
        for role, roots in self.roles().items():
            for root in roots:
                if root not in by_pid:
                    continue
                if role == "web master":
                    # Each worker apart: a worker that leaks or spins shows as itself.
                    for number, worker in enumerate(sorted(by_parent.get(root, []), key=lambda s: s.pid), 1):
                        processes[worker.pid] = (f"web worker {number}", worker.cpu, worker.rss)
                    processes[root] = (role, by_pid[root].cpu, by_pid[root].rss)
                    continue
                # The harness is the parent of everything here: it counts only itself.
                family = [by_pid[root]] if role == "harness" else _descendants(by_pid[root], by_parent)
                for stat in family:
                    processes.setdefault(stat.pid, (role, stat.cpu, stat.rss))
        for stat in stats:
            if stat.name == "postgres" and stat.pid not in processes and postgres_backend(stat.pid, self.database):
                processes[stat.pid] = ("postgres backends", stat.cpu, stat.rss)
        for pid in processes:
            self.peaks[pid] = max(self.peaks.get(pid, 0.0), peak_rss(pid))
            if pid not in self.born:
                self.born[pid] = by_pid[pid].born + self._boot_offset
        lag, backlog = self._drain()
        self.samples.append(Sample(at, processes, lag, backlog))

    def _drain(self) -> tuple[float | None, int]:
        if self._client is None:
            return None, 0
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.time()
                pipe.xlen(USAGE_STREAM)
                pipe.xrange(USAGE_STREAM, "-", "+", count=1)
                (seconds, micros), backlog, oldest = pipe.execute()
        except redis.RedisError:
            return None, 0
        if not oldest:
            return 0.0, int(backlog)
        taken = int(oldest[0][0].split(b"-")[0]) / 1000
        return max(0.0, seconds + micros / 1e6 - taken), int(backlog)


def _descendants(root: Stat, by_parent: dict[int, list[Stat]]) -> list[Stat]:
    found, todo = [], [root]
    while todo:
        stat = todo.pop()
        found.append(stat)
        todo.extend(by_parent.get(stat.pid, []))
    return found


@dataclass(frozen=True)
class Usage:
    """One role's cost over a window."""

    role: str
    cpu_seconds: float
    peak_rss_mb: float  # the largest single process (VmHWM), or the largest sampled sum for summed roles
    processes: int


SUMMED = {"postgres backends", "celery worker", "generator"}


def usage(probe: Probe, start: float, end: float) -> list[Usage]:
    """CPU each role spent between ``start`` and ``end`` (time.monotonic()), and its peak RSS."""
    inside = [s for s in probe.samples if start <= s.at <= end]
    before = [s for s in probe.samples if s.at < start]
    if not inside:
        return []
    baseline = before[-1].processes if before else {}
    first: dict[int, float] = {}
    last: dict[int, tuple[str, float]] = {}
    summed_rss: dict[str, float] = {}
    for sample in inside:
        totals: dict[str, float] = {}
        for pid, (role, seconds, rss) in sample.processes.items():
            first.setdefault(pid, seconds)
            last[pid] = (role, seconds)
            totals[role] = totals.get(role, 0.0) + rss
        for role, total in totals.items():
            summed_rss[role] = max(summed_rss.get(role, 0.0), total)
    cpu: dict[str, float] = {}
    peak: dict[str, float] = {}
    count: dict[str, int] = {}
    for pid, (role, cpu_last) in last.items():
        if pid in baseline:
            since = baseline[pid][1]
        elif probe.born.get(pid, 0.0) >= start:
            since = 0.0  # born during the window: all of its CPU is the window's
        else:
            since = first[pid]
        cpu[role] = cpu.get(role, 0.0) + cpu_last - since
        peak[role] = max(peak.get(role, 0.0), probe.peaks.get(pid, 0.0))
        count[role] = count.get(role, 0) + 1
    return [
        Usage(role, cpu[role], summed_rss[role] if role in SUMMED else peak[role], count[role]) for role in sorted(cpu)
    ]
