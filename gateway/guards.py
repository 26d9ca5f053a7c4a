"""Rate limits and circuit breakers in the hot path (DESIGN.md steps 2 and 4).

They add no round trip of their own: the admission scripts (limits, breaker
verdicts, health when the strategy needs it) ride in the credit hold's round
trip, and the completion scripts (limit corrections, breaker outcomes) in the
settle's. Each script is atomic on its own.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from accounts.selectors import KeyCredentials
from gateway import breakers, limits, strategies
from gateway.breakers import AsyncBreakers, Outcome, Verdict
from gateway.errors import GatewayError
from gateway.limits import AsyncLimits, Decision, Demand
from gateway.reservations import Bounds
from oneflow.lib import redis
from oneflow.lib.redis import ScriptCall
from providers.selectors import DeploymentView, ModelView

_VERDICT_HEALTH = {
    Verdict.CLOSED: "closed",
    Verdict.PROBE: "half_open",
    Verdict.OPEN: "open",
    Verdict.HALF_OPEN_BUSY: "open",
}


@dataclass(frozen=True, slots=True)
class _Scripts:
    limits: AsyncLimits
    breakers: AsyncBreakers


_scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Scripts] = weakref.WeakKeyDictionary()


def _loop_scripts() -> _Scripts:
    loop = asyncio.get_running_loop()
    scripts = _scripts.get(loop)
    if scripts is None:
        client = redis.loop_client()
        scripts = _scripts[loop] = _Scripts(AsyncLimits(client), AsyncBreakers(client))
    return scripts


def demand_of(bounds: Bounds) -> Demand:
    """What a request asks of the token limits before anyone has counted it; corrected after."""
    return Demand(input_tokens=bounds.prompt // 4, output_tokens=bounds.completion)  # bytes to a token estimate


@dataclass
class Guards:
    """One request's limits and breaker verdicts, from admission to completion."""

    request_id: str
    rules: list[limits.Rule]
    demand: Demand
    deployment_ids: list[int]
    wants_health: bool
    quota_deployments: list[DeploymentView] = field(default_factory=list)
    headroom: dict[int, bool] = field(default_factory=dict)  # provider quotas: False = would hit a 429
    decision: Decision | None = None
    verdicts: dict[int, Verdict] = field(default_factory=dict)
    health: dict[int, strategies.Health] = field(default_factory=dict)
    released: bool = False
    limits_pending: bool = True  # False once the limits admitted (or refused) this request
    _completes_limits: bool = False
    _recorded: list[tuple[int, Outcome, float | None]] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        *,
        request_id: str,
        key: KeyCredentials,
        model: ModelView,
        catalog_find: Callable[[str], ModelView | None],
        body: dict[str, Any],
        bounds: Bounds,
    ) -> Guards:
        candidates = list(model.deployments)
        for name in model.fallback_models:
            fallback = catalog_find(name)
            candidates += fallback.deployments if fallback else ()
        ids = list(dict.fromkeys(d.id for d in candidates))
        wants_health = model.strategy == "fastest" or bool(model.max_latency_ms) or "provider" in body
        guards = cls(request_id, limits.rules_for(key), demand_of(bounds), ids, wants_health)
        guards.quota_deployments = [d for d in candidates if d.rpm_quota is not None or d.tpm_quota is not None]
        return guards

    def admission_calls(self) -> list[ScriptCall]:
        scripts = _loop_scripts()
        calls: list[ScriptCall] = []
        if self.rules and self.limits_pending:
            keys, args = limits.admit_call(self.rules, self.demand, request_id=self.request_id)
            calls.append((scripts.limits.admit_script, keys, args))
        if self.deployment_ids:
            policy = scripts.breakers.policy
            keys, args = breakers.check_call(self.deployment_ids, request_id=self.request_id, policy=policy)
            calls.append((scripts.breakers.check_script, keys, args))
            if self.wants_health:
                keys, args = breakers.health_call(self.deployment_ids, policy, None)
                calls.append((scripts.breakers.health_script, keys, args))
        if self.quota_deployments:
            rules = limits.all_quota_rules(self.quota_deployments)
            keys, args = limits.admit_call(rules, self.demand, request_id="", mode="peek")
            calls.append((scripts.limits.admit_script, keys, args))
        return calls

    def take(self, replies: list[Any]) -> None:
        """Reads the admission scripts' replies, in the order admission_calls() sent them."""
        replies = list(replies)
        if self.rules and self.limits_pending:
            self.decision = limits.admit_result(replies.pop(0), self.rules)
        self.limits_pending = False
        if self.deployment_ids:
            self.verdicts, moved = breakers.check_result(replies.pop(0), self.deployment_ids)
            breakers.observe(moved)
            measured = breakers.health_result(replies.pop(0), self.deployment_ids) if self.wants_health else {}
            if self.quota_deployments:
                peeked = limits.admit_result(replies.pop(-1), limits.all_quota_rules(self.quota_deployments))
                self.headroom = limits.headroom_of(peeked, self.quota_deployments)
            for deployment_id, verdict in self.verdicts.items():
                known = measured.get(deployment_id)
                self.health[deployment_id] = strategies.Health(
                    breaker=_VERDICT_HEALTH[verdict],  # type: ignore[arg-type]
                    latency_ewma_ms=known.latency_ms if known else None,
                    ttft_ewma_ms=known.ttft_ms if known else None,
                    error_rate=(known.error_rate or 0.0) if known else 0.0,
                )

    def carry_limits(self, previous: Guards) -> bool:
        """Keeps the limits' verdict of an earlier admission of the same request
        (judged again on a newer Config), so it is counted once; False, keeping
        nothing, when the newer Config has other rules (a limit just changed)."""
        if previous.rules != self.rules:
            return False
        self.rules, self.demand, self.decision = previous.rules, previous.demand, previous.decision
        self.limits_pending = False
        return True

    def refusal(self) -> GatewayError | None:
        if self.decision is not None and not self.decision.admitted:
            return limits.refusal(self.decision)
        return None

    def headers(self, *, anthropic: bool) -> dict[str, str]:
        if self.decision is None or not self.decision.states:
            return {}
        if anthropic:
            return limits.anthropic_limit_headers(self.decision)
        return limits.limit_headers(self.decision)

    def completion_calls(
        self, *, used: Demand | None, attempts: list[dict[str, Any]], ttft_ms: int | None
    ) -> list[ScriptCall]:
        """Releases the concurrency slot, moves token counts to what was used, and
        tells each deployment's breaker how its attempt went (once)."""
        if self.released:
            return []
        self.released = True
        scripts = _loop_scripts()
        calls: list[ScriptCall] = []
        admitted = self.decision is not None and self.decision.admitted
        if admitted:
            keys, args = limits.complete_call(
                self.rules, request_id=self.request_id, counted=self.demand, used=used or Demand()
            )
            if keys:
                calls.append((scripts.limits.complete_script, keys, args))
        self._completes_limits = bool(calls)
        self._recorded = self._outcomes(attempts)
        for deployment_id, outcome, latency in self._recorded:
            keys, args = breakers.record_call(
                deployment_id,
                request_id=self.request_id,
                outcome=outcome,
                policy=scripts.breakers.policy,
                latency_ms=latency if outcome is Outcome.SUCCESS else None,
                ttft_ms=ttft_ms if outcome is Outcome.SUCCESS else None,
            )
            calls.append((scripts.breakers.record_script, keys, args))
        for deployment in self._quota_used(attempts):
            # Counted after the fact: provider quotas steer traffic, the provider enforces them.
            keys, args = limits.admit_call(
                limits.quota_rules(deployment), used or Demand(), request_id="", mode="force"
            )
            calls.append((scripts.limits.admit_script, keys, args))
        return calls

    def completed(self, replies: list[Any]) -> None:
        """Reads the completion scripts' replies: breaker changes go to the metrics."""
        records = replies[1:] if self._completes_limits else replies
        transitions = [
            breakers.record_result(reply, deployment_id)
            for reply, (deployment_id, _, _) in zip(records, self._recorded, strict=False)
        ]
        breakers.observe(transitions)

    def prefer_headroom(self, deployments: list[DeploymentView]) -> list[DeploymentView]:
        """The plan with deployments whose provider quota is used up moved last."""
        return sorted(deployments, key=lambda d: not self.headroom.get(d.id, True))

    def _quota_used(self, attempts: list[dict[str, Any]]) -> list[DeploymentView]:
        tried = {attempt["deployment_id"] for attempt in attempts}
        return [d for d in self.quota_deployments if d.id in tried]

    def _outcomes(self, attempts: list[dict[str, Any]]) -> list[tuple[int, Outcome, float | None]]:
        outcomes: list[tuple[int, Outcome, float | None]] = []
        for attempt in attempts:
            if attempt["status"] == 200:
                outcomes.append((attempt["deployment_id"], Outcome.SUCCESS, float(attempt["ms"])))
            elif attempt["error"] != "request":  # the caller's own mistake says nothing of the deployment
                outcomes.append((attempt["deployment_id"], Outcome.FAILURE, None))
        tried = {deployment_id for deployment_id, _, _ in outcomes}
        # A probe this request was granted but never used goes to the next caller at once.
        outcomes += [
            (deployment_id, Outcome.UNUSED, None)
            for deployment_id, verdict in self.verdicts.items()
            if verdict is Verdict.PROBE and deployment_id not in tried
        ]
        return outcomes
