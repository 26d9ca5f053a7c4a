"""Health probes: one tiny real chat request to each enabled chat deployment, so
breakers and health figures follow a deployment even when no customer calls it.

A probe obeys the breaker like any caller: it asks ``check`` first and calls
only deployments whose breaker is closed or whose one half-open probe it was
granted; a probe it was granted but did not send is handed back (UNUSED) so
the next caller may probe. Probes go straight to the adapter, outside the
proxy: no hold, no charge, no usage event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis as redis_lib

from gateway import breakers
from gateway.breakers import Outcome
from oneflow.lib import http, redis, scripts
from providers.adapters import ErrorKind, UpstreamError, adapter_for, connection_error
from providers.models import PublicModel
from providers.selectors import Catalog, DeploymentView, catalog_build
from providers.services import credential_flag

logger = logging.getLogger(__name__)

PROBE_CONCURRENCY = 16  # probes in flight at once: one slow provider must not hold up the run
PROBE_TIMEOUT_CAP_SECONDS = 10.0  # a probe that needs longer has failed, whatever the provider's timeouts
PROBE_BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
REFUSED_STATUSES = (401, 403)  # the provider refused the credential


class ProbeResult(StrEnum):
    OK = "ok"  # answered: a success, with its latency
    REACHABLE = "reachable"  # refused the request itself (a 400): a success, without latency
    FAILED = "failed"  # a transient or deployment error: a failure
    REFUSED = "refused"  # the provider refused the credential: a failure, and the credential is flagged
    SKIPPED = "skipped"  # its breaker is open or another caller is probing it: not called
    UNUSED = "unused"  # granted a call but not sent (the run broke off): handed back to the breaker


_OUTCOMES = {
    ProbeResult.OK: Outcome.SUCCESS,
    ProbeResult.REACHABLE: Outcome.SUCCESS,
    ProbeResult.FAILED: Outcome.FAILURE,
    ProbeResult.REFUSED: Outcome.FAILURE,
    ProbeResult.UNUSED: Outcome.UNUSED,
}


@dataclass(frozen=True, slots=True)
class Answer:
    result: ProbeResult
    latency_ms: float | None = None
    upstream_status: int | None = None


def deployments_probe(*, now: float | None = None) -> dict[int, str]:
    """Probes every enabled deployment of a chat model, concurrently; records each
    outcome in its breaker and flags credentials the provider refused.

    Returns a ProbeResult per deployment id. ``now`` (unix seconds) is the
    breakers' clock; None means Redis time. Safe to run twice at once: each run
    is its own caller, so a half-open breaker still lets exactly one through.
    """
    deployments = _chat_deployments(catalog_build())
    client = redis.sync_client()
    caller = f"probe-{uuid.uuid4().hex}"
    verdicts = scripts.run(client, breakers.check([d.id for d in deployments], request_id=caller, now=now)).verdicts
    allowed = [d for d in deployments if verdicts[d.id].allows]
    results = {d.id: ProbeResult.SKIPPED.value for d in deployments if not verdicts[d.id].allows}
    answers: dict[int, Answer] = {}
    try:
        answers = http.run_apart(lambda session: _probe_all(session, allowed))
    finally:
        # Whatever happened, every granted call is reported: a half-open
        # breaker whose probe never reports would wait out its lease.
        for deployment in allowed:
            answer = answers.get(deployment.id, Answer(ProbeResult.UNUSED))
            results[deployment.id] = _record(client, deployment, answer, caller=caller, now=now)
    return results


def _chat_deployments(catalog: Catalog) -> list[DeploymentView]:
    """The catalog's callable deployments of chat models (it leaves out disabled ones), each once."""
    found = {d.id: d for model in catalog.listed if model.kind == PublicModel.Kind.CHAT for d in model.deployments}
    return list(found.values())


async def _probe_all(session: http.HttpClient, deployments: Sequence[DeploymentView]) -> dict[int, Answer]:
    slots = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def bounded(deployment: DeploymentView) -> tuple[int, Answer]:
        async with slots:
            return deployment.id, await _deployment_probe(session, deployment)

    return dict(await asyncio.gather(*(bounded(d) for d in deployments)))


async def _deployment_probe(session: http.HttpClient, deployment: DeploymentView) -> Answer:
    """One minimal chat request through the deployment's real adapter, classified."""
    target = deployment.target
    started = time.perf_counter()
    try:
        async with asyncio.timeout(min(target.connect_timeout + target.read_timeout, PROBE_TIMEOUT_CAP_SECONDS)):
            await adapter_for(target.kind).chat(session, target, dict(PROBE_BODY))
    except UpstreamError as error:
        return Answer(_answer_of(error), upstream_status=error.upstream_status)
    except TimeoutError as exc:
        return Answer(_answer_of(connection_error(exc)))
    except Exception:
        # A bug of ours, not a fault of the deployment: say nothing about it.
        logger.exception("health probe broke", extra={"deployment_id": deployment.id})
        return Answer(ProbeResult.UNUSED)
    return Answer(ProbeResult.OK, latency_ms=(time.perf_counter() - started) * 1000)


def _answer_of(error: UpstreamError) -> ProbeResult:
    if error.kind is ErrorKind.REQUEST:
        # The provider took our credential, found the model and read the
        # request far enough to object to it (some models refuse max_tokens=1
        # or want max_completion_tokens): it is up and serving, and a failure
        # would open the breaker of a healthy deployment. Its speed says
        # nothing about answering, so no latency is recorded.
        return ProbeResult.REACHABLE
    if error.kind is ErrorKind.DEPLOYMENT and error.upstream_status in REFUSED_STATUSES:
        return ProbeResult.REFUSED
    return ProbeResult.FAILED


def _record(
    client: redis_lib.Redis, deployment: DeploymentView, answer: Answer, *, caller: str, now: float | None
) -> str:
    outcome, latency = _OUTCOMES[answer.result], answer.latency_ms
    scripts.run(client, breakers.record(deployment.id, request_id=caller, outcome=outcome, latency_ms=latency, now=now))
    if answer.result is ProbeResult.REFUSED and deployment.credential_id is not None:
        credential_flag(credential_id=deployment.credential_id, reason=f"refused by provider: {answer.upstream_status}")
    return answer.result.value
