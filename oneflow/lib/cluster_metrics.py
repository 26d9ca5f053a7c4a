"""The collector of the cluster's figures, for whichever server answers a scrape: the
web's ``/metrics`` (``oneflow.lib.metrics.MetricsEndpoint``) and the gunicorn
master's metrics port (``ClusterFigures.from_environment``, without Django).

What it serves is listed in docs/metrics.md: the figures the jobs keep in Redis
(``oneflow.lib.figures``), the usage stream's depth and lag, Celery's queues.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import redis
import redis.exceptions
from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from oneflow.lib import redis as redis_seam
from oneflow.lib import redis_keys
from oneflow.lib.env import Env
from oneflow.lib.figures import FIGURES, FIGURES_KEY
from oneflow.lib.scripts import REDIS_ERRORS_BY_PHASE, REDIS_SECONDS_BY_PHASE

logger = logging.getLogger(__name__)

_SCRAPE_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


class ClusterFigures(Collector):
    """Serves the figures at scrape time: the ``FIGURES`` the jobs keep, the usage
    stream's depth and lag (one round trip), and each Celery queue's depth (one
    more when the broker is another server).

    A Redis that does not answer leaves these out of the scrape
    (``oneflow_metrics_redis_up`` 0) rather than failing it.
    """

    def __init__(self, client: redis.Redis | None, *, broker: redis.Redis | None, queues: Sequence[str]) -> None:
        self.client = client
        self.broker = broker
        self.queues = tuple(queues)

    @classmethod
    def from_settings(cls) -> ClusterFigures:
        """In a Django process: the Redis of ``oneflow.lib.redis``, embedded too."""
        client = redis_seam.sync_client()
        broker_url = settings.CELERY_BROKER_URL
        broker = client if broker_url == (settings.REDIS_URL or None) else _broker(broker_url)
        return cls(client, broker=broker, queues=settings.METRICS_CELERY_QUEUES)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ClusterFigures:
        """Outside Django (the gunicorn master's metrics server), from the variables
        ``oneflow/settings.py`` reads. Without ``REDIS_URL`` (embedded) each process has
        a Redis of its own that no other sees: there is nothing to serve."""
        env = Env(environ)
        url = env.secret("REDIS_URL")
        broker_url = env.secret("CELERY_BROKER_URL") or url
        client = redis.Redis.from_url(url, **_SCRAPE_TIMEOUTS) if url else None
        broker = client if url and broker_url == url else _broker(broker_url)
        return cls(client, broker=broker, queues=env.list("METRICS_CELERY_QUEUES", ["celery"]))

    def collect(self) -> Iterator[Metric]:
        if self.client is None:
            return
        up = GaugeMetricFamily("oneflow_metrics_redis_up", "Whether this scrape could read the cluster's figures.")
        try:
            stored, depth, oldest, clock = self._read(self.client)
        except redis.exceptions.RedisError:
            REDIS_ERRORS_BY_PHASE["metrics"].inc()
            logger.warning("the cluster's figures could not be read from Redis", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _figures(stored)
        yield GaugeMetricFamily(
            "oneflow_usage_journal_depth", "Usage events in the stream, not yet drained.", value=depth
        )
        yield GaugeMetricFamily(
            "oneflow_usage_drain_lag_seconds",
            "Age of the oldest usage event not yet drained (0 when none).",
            value=_lag(oldest, clock),
        )
        yield from self._queues()

    @staticmethod
    def _read(client: redis.Redis) -> list[Any]:
        started = time.perf_counter()
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.hgetall(FIGURES_KEY)
                pipe.xlen(redis_keys.USAGE_STREAM)
                pipe.xrange(redis_keys.USAGE_STREAM, "-", "+", count=1)
                pipe.time()  # the clock that stamped the stream's ids
                return list(pipe.execute())
        finally:
            REDIS_SECONDS_BY_PHASE["metrics"].observe(time.perf_counter() - started)

    def _queues(self) -> Iterator[Metric]:
        if self.broker is None or not self.queues:
            return
        try:
            with self.broker.pipeline(transaction=False) as pipe:
                for queue in self.queues:
                    for key in _queue_keys(queue):
                        pipe.llen(key)
                lengths = pipe.execute()
        except redis.exceptions.RedisError:
            REDIS_ERRORS_BY_PHASE["metrics"].inc()
            logger.warning("Celery's queues could not be read from the broker", exc_info=True)
            return
        family = GaugeMetricFamily("oneflow_celery_queue_depth", "Tasks waiting in a Celery queue.", labels=["queue"])
        steps = len(_queue_keys(""))
        for index, queue in enumerate(self.queues):
            family.add_metric([queue], sum(lengths[index * steps : (index + 1) * steps]))
        yield family


def _broker(url: str) -> redis.Redis | None:
    """A client of Celery's broker when it is a Redis (embedded: ``memory://``, no queue)."""
    return redis.Redis.from_url(url, **_SCRAPE_TIMEOUTS) if url.startswith(("redis://", "rediss://")) else None


def _queue_keys(queue: str) -> list[str]:
    # kombu's Redis transport keeps a queue in one list per priority step: the queue's
    # own name for the default priority, then name + "\x06\x16" + step (3, 6, 9).
    return [queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))]


def _lag(oldest: list[Any], clock: tuple[int, int]) -> float:
    """Seconds between the oldest event's stream id (the Redis clock when it was
    appended) and Redis's clock now."""
    if not oldest:
        return 0.0
    raw = oldest[0][0]
    millis = int((raw.decode() if isinstance(raw, bytes) else raw).split("-")[0])
    now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
    return max(0.0, (now_ms - millis) / 1000)


def _figures(stored: Mapping[Any, Any]) -> Iterator[Metric]:
    series: dict[str, list[tuple[str, float]]] = {name: [] for name in FIGURES}
    for raw_field, raw_value in stored.items():
        field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
        name, _, label_value = field.partition("|")
        if name not in series or bool(label_value) != bool(FIGURES[name].label):
            continue
        try:
            series[name].append((label_value, float(raw_value)))
        except ValueError:
            continue
    for name, values in series.items():
        figure = FIGURES[name]
        labels = [figure.label] if figure.label else []
        family: CounterMetricFamily | GaugeMetricFamily
        if figure.kind == "counter":
            family = CounterMetricFamily(name, figure.documentation, labels=labels)
        else:
            family = GaugeMetricFamily(name, figure.documentation, labels=labels)
        if figure.kind == "counter" and not figure.label and not values:
            family.add_metric([], 0.0)  # a counter nobody has moved yet is at 0, not absent
        for label_value, value in sorted(values):
            family.add_metric([label_value] if figure.label else [], value)
        yield family
