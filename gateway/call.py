"""The state of one proxied request, filled in as it goes: the one type every
stage of the hot path shares (front ends, admission, attempts, streaming,
settlement, metrics), kept in a module of its own so none of them has to import
another to name it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from accounts.selectors import KeyCredentials
from gateway import strategies
from gateway.core import Gateway
from gateway.guards import Guards
from gateway.protocol import Request
from gateway.reservations import Reservation
from gateway.snapshots import Config
from oneflow.lib.errors import InvalidInput
from providers.adapters import Relay
from providers.selectors import DeploymentView, ModelView


@dataclass
class Call:
    """The state of one proxied request, filled in as it goes."""

    request: Request
    endpoint: str
    requested_model: str = ""  # the model name as the client sent it
    key: KeyCredentials | None = None
    model: ModelView | None = None
    body: dict[str, Any] = field(default_factory=dict)  # the request in the internal (OpenAI chat) format
    stream: bool = False
    relay: Relay | None = None  # the request as the client sent it, for deployments that speak its protocol
    untranslatable: InvalidInput | None = None  # why ``body`` could not be made from ``relay`` (relay only)
    relayed: bool = False  # the answer is in the client's protocol, from a deployment that relayed it
    deployment: DeploymentView | None = None
    attempts: int = 0
    usage: dict[str, Any] | None = None
    usage_source: str = "void"
    status_code: int = 200
    error_type: str = ""
    ttft_ms: int | None = None
    upstream_ms: float | None = None
    generated: list[str] = field(default_factory=list)
    attempt_log: list[dict[str, Any]] = field(default_factory=list)
    preferences: strategies.Preferences = strategies.NO_PREFERENCES
    health: dict[int, strategies.Health] = field(default_factory=dict)
    route: str = ""
    config: Config | None = None  # the configuration the request was admitted on
    guards: Guards | None = None  # the request's rate limits and breaker verdicts
    client_disconnected: bool = False
    recorded: bool = False
    cost: Decimal | None = None  # credits, once usage is known
    reservation: Reservation | None = None  # credits held before the upstream call
    charged: Decimal = Decimal(0)  # what the ledger is asked to take: min(cost, hold)

    @property
    def gateway(self) -> Gateway:
        return self.request.gateway

    @property
    def provider(self) -> str:
        return self.deployment.target.provider_name if self.deployment else ""

    def response_headers(self) -> dict[str, str]:
        headers = {"x-oneflow-attempts": str(self.attempts)}
        if self.cost is not None:
            headers["x-oneflow-cost"] = str(self.cost)
        if self.deployment is not None:
            headers["x-oneflow-provider"] = self.deployment.target.provider_name
        if self.route:
            headers["x-oneflow-route"] = self.route
        if self.guards is not None:
            headers.update(self.guards.headers(anthropic=self.endpoint == "messages"))
        return headers
