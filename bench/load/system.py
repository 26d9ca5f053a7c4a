"""The system under test: OneFlow as production runs it (deploy/compose.yaml), on this machine.

gunicorn with uvicorn workers (deploy/gunicorn.conf.py), a Celery worker and beat draining
usage, PostgreSQL database ``oneflow_bench`` made afresh and migrated, Redis database 14
emptied, and bench/seed.py's tenant whose one deployment is the fake upstream. Every
process writes its log into the run's folder; nothing else on the machine is touched.
"""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "oneflow_bench"
POSTGRES = "postgres://postgres@127.0.0.1:5432"
SHARED_REDIS_URL = "redis://127.0.0.1:6379/14"  # db 15 is the test suite's, the others other people's
QUIET_WAIT_SECONDS = 300


@dataclass
class OneFlow:
    """Starts, watches and stops the production shape."""

    work: Path
    port: int
    upstream_port: int
    metrics_port: int
    redis_url: str = SHARED_REDIS_URL
    web_workers: int = 2
    celery_concurrency: int = 2
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # One pair per run: the seed seals the upstream credential with this SECRET_KEY.
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(64))
    jwt_signing_key: str = field(default_factory=lambda: secrets.token_urlsafe(64))

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DATABASE_", "CELERY_"))}
        env.update(
            ONEFLOW_ENV="production",
            DEBUG="false",
            SECURE_SSL_REDIRECT="false",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECRET_KEY=self.secret_key,
            JWT_SIGNING_KEY=self.jwt_signing_key,
            DATABASE_URL=f"{POSTGRES}/{DATABASE}",
            REDIS_URL=self.redis_url,
            PROMETHEUS_MULTIPROC_DIR=str(self.work / "prometheus"),
            WEB_CONCURRENCY=str(self.web_workers),
            LOG_LEVEL="WARNING",
            METRICS_ADDR="127.0.0.1",
            METRICS_PORT=str(self.metrics_port),
            BENCH_UPSTREAM=f"http://127.0.0.1:{self.upstream_port}/v1",
            PYTHONPATH=str(ROOT),
        )
        return env

    def prepare(self) -> str:
        """A fresh database and Redis db, migrated and seeded; returns the bench API key."""
        (self.work / "prometheus").mkdir(parents=True, exist_ok=True)
        # Someone else's breakers, limits and usage would mix with ours (seen on a shared
        # machine: the usage check caught it), so wait for them to finish.
        deadline = time.monotonic() + QUIET_WAIT_SECONDS
        while strangers := others_connected(self.redis_url):
            if time.monotonic() > deadline:
                raise SystemExit(f"{strangers}, for {QUIET_WAIT_SECONDS} s: stop them, then run again")
            print(f"# waiting: {strangers}", flush=True)
            time.sleep(5)
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            connection.execute(f"CREATE DATABASE {DATABASE}")
        redis.Redis.from_url(self.redis_url).flushdb()
        env = self.environment()
        self._run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env, "migrate")
        seeded = self._run([sys.executable, "bench/seed.py"], env, "seed")
        return seeded.strip().splitlines()[-1]

    def _run(self, command: list[str], env: dict[str, str], name: str) -> str:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        (self.work / f"{name}.log").write_text(done.stdout + done.stderr)
        if done.returncode:
            raise SystemExit(f"{name} failed (exit {done.returncode}); see {self.work / f'{name}.log'}")
        return done.stdout

    def start(self) -> None:
        env = self.environment()
        python = sys.executable
        gunicorn = [python, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}"]
        celery = [python, "-m", "celery", "-A", "oneflow"]
        commands = {
            "web": [*gunicorn, "oneflow.asgi:application"],
            "worker": [*celery, "worker", "--loglevel", "WARNING", "--concurrency", str(self.celery_concurrency)],
            "beat": [*celery, "beat", "-S", "django", "--loglevel", "WARNING"],
        }
        for name, command in commands.items():
            log = (self.work / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(  # noqa: S603 - our own command lines
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SystemExit(f"{name} exited at start; see {self.work / f'{name}.log'}")
            if _status(self.port, "/readyz") == 200 and len(self.web_worker_pids()) == self.web_workers:
                return
            time.sleep(0.3)
        raise SystemExit(f"OneFlow was not ready within 90 s; see {self.work / 'web.log'}")

    def web_worker_pids(self) -> list[int]:
        return children(self.processes["web"].pid)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(45)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _status(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path, headers={"Host": "localhost"})
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except OSError:
        return []


def usage_events_stored() -> int:
    with psycopg.connect(f"{POSTGRES}/{DATABASE}") as connection:
        row = connection.execute("SELECT count(*) FROM billing_usageevent").fetchone()
    return int(row[0]) if row else 0


def others_connected(redis_url: str) -> str:
    """Who else uses the bench's database or Redis db right now, as a sentence ('' for nobody)."""
    found = []
    with psycopg.connect(f"{POSTGRES}/postgres") as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [DATABASE]
        ).fetchone()
    if row and row[0]:
        found.append(f"{row[0]} connections to PostgreSQL database {DATABASE}")
    client = redis.Redis.from_url(redis_url)
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    clients = [c for c in client.client_list() if str(c.get("db")) == db]
    if len(clients) > 1:  # ourselves
        found.append(f"{len(clients) - 1} other clients on Redis db {db}")
    return " and ".join(found)


def private_redis(port: int, work: Path) -> subprocess.Popen[bytes]:
    """A Redis server of the run's own, as the platform's would be: nothing kept on disk."""
    return subprocess.Popen(  # noqa: S603 - our own command line
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(work)),
        ],
        stdout=(work / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
