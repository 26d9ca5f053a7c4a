"""Rate limits and circuit breakers in the hot path (DESIGN.md steps 2 and 4).

They add no round trip of their own: the admission scripts (limits, breaker
verdicts, health when the strategy needs it) ride in the credit hold's round
trip, and the completion scripts (limit corrections, breaker outcomes) in the
settle's. Each script is atomic on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from accounts.selectors import KeyCredentials
from gateway import breakers, limits, strategies
from gateway.breakers import BreakerPolicy, Checked, Outcome, Verdict
from gateway.errors import GatewayError
from gateway.limits import Decision, Demand
from gateway.reservations import Bounds
from oneflow.lib.config_version import Version
from oneflow.lib.scripts import Invocation
from providers.selectors import DeploymentView, ModelView

_VERDICT_HEALTH = {
    Verdict.CLOSED: "closed",
    Verdict.PROBE: "half_open",
    Verdict.OPEN: "open",
    Verdict.HALF_OPEN_BUSY: "open",
}


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
    policy: BreakerPolicy
    version: Version  # of the Config the rules were read from
    quota_deployments: list[DeploymentView] = field(default_factory=list)
    headroom: dict[int, bool] = field(default_factory=dict)  # provider quotas: False = would hit a 429
    decision: Decision | None = None
    verdicts: dict[int, Verdict] = field(default_factory=dict)
    health: dict[int, strategies.Health] = field(default_factory=dict)
    released: bool = False
    limits_pending: bool = True  # False once the limits admitted (or refused) this request

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
        policy: BreakerPolicy,
        version: Version,
    ) -> Guards:
        candidates = list(model.deployments)
        for name in model.fallback_models:
            fallback = catalog_find(name)
            candidates += fallback.deployments if fallback else ()
        ids = list(dict.fromkeys(d.id for d in candidates))
        wants_health = model.strategy == "fastest" or bool(model.max_latency_ms) or "provider" in body
        guards = cls(request_id, limits.rules_for(key), demand_of(bounds), ids, wants_health, policy, version)
        guards.quota_deployments = [d for d in candidates if d.rpm_quota is not None or d.tpm_quota is not None]
        return guards

    def admission(self) -> list[Invocation[Any]]:
        """The scripts that judge the request; ``take`` reads their replies in this order."""
        calls: list[Invocation[Any]] = []
        if self.rules and self.limits_pending:
            calls.append(limits.admit(self.rules, self.demand, request_id=self.request_id, version=self.version))
        if self.deployment_ids:
            calls.append(breakers.check(self.deployment_ids, request_id=self.request_id, policy=self.policy))
            if self.wants_health:
                calls.append(breakers.health(self.deployment_ids, policy=self.policy))
            if self.quota_deployments:
                calls.append(limits.headroom(self.quota_deployments, self.demand))
        return calls

    def take(self, replies: list[Any]) -> None:
        """Reads the admission scripts' replies, in the order ``admission`` sent them."""
        replies = list(replies)
        if self.rules and self.limits_pending:
            decision: Decision = replies.pop(0)
            # Rules of a stale Config judged nothing: the request is judged again on a newer one.
            self.decision = None if decision.stale else decision
        self.limits_pending = self.rules != [] and self.decision is None
        if not self.deployment_ids:
            return
        checked: Checked = replies.pop(0)
        self.verdicts = checked.verdicts
        measured: dict[int, breakers.Health] = replies.pop(0) if self.wants_health else {}
        if self.quota_deployments:
            self.headroom = replies.pop(0)
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
        if previous.limits_pending or previous.rules != self.rules:
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

    def completion(
        self, *, used: Demand | None, attempts: list[dict[str, Any]], ttft_ms: int | None
    ) -> list[Invocation[Any]]:
        """Releases the concurrency slot, moves token counts to what was used, and
        tells each deployment's breaker how its attempt went (once). Reading the
        breakers' replies reports their state changes to the metrics."""
        if self.released:
            return []
        self.released = True
        calls: list[Invocation[Any]] = []
        if self.decision is not None and self.decision.admitted:
            counted, spent = self.demand, used or Demand()
            calls.append(
                limits.complete(
                    self.rules, request_id=self.request_id, counted=counted, used=spent, version=self.version
                )
            )
        for deployment_id, outcome, latency in self._outcomes(attempts):
            success = outcome is Outcome.SUCCESS
            calls.append(
                breakers.record(
                    deployment_id,
                    request_id=self.request_id,
                    outcome=outcome,
                    policy=self.policy,
                    latency_ms=latency if success else None,
                    ttft_ms=ttft_ms if success else None,
                )
            )
        # Counted after the fact: provider quotas steer traffic, the provider enforces them.
        calls += [limits.count(deployment, used or Demand()) for deployment in self._quota_used(attempts)]
        return calls

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
