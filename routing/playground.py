"""The dashboard's playground: pick a model, send a prompt, watch the answer stream in.

The answer comes from the real gateway, called in process
(routing.playground_gateway) with the person's own playground key
(accounts.services.playground_key_for): limits, the credit hold, the charge,
the usage event and the request log apply exactly as to an API call, and the
key's secret never reaches the browser. Members may use it, as they may use
any key of their organization: it spends the organization's credits.

``chat`` answers the page's script with the gateway's own SSE stream (or its
JSON error, with its status); a browser without the script posts the form and
gets the whole answer on the page instead.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.contrib.auth.views import redirect_to_login
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import services
from accounts.views import Dashboard, dashboard_for, dashboard_view
from billing.selectors import credits_balance
from oneflow.lib import json, money
from providers.models import ModelAccess, PublicModel
from routing.playground_gateway import GatewayCall

CHAT_PATH = "/v1/chat/completions"
# Long enough for a real prompt; the gateway refuses bodies over 10 MB anyway.
MAX_PROMPT_CHARS = 100_000
# The gateway's own headers that mean nothing once Django sends the answer.
_NOT_PASSED = frozenset({"content-length", "content-type", "transfer-encoding", "connection", "x-request-id"})


# --- Reads ----------------------------------------------------------------------------


def playground_models(*, organization_id: int) -> list[str]:
    """Names of the chat models the organization may call: what GET /v1/models
    lists to its keys (gateway.snapshots.visible), read from the database."""
    granted = ModelAccess.objects.filter(organization_id=organization_id).values("public_model_id")
    models = PublicModel.objects.filter(kind=PublicModel.Kind.CHAT).filter(Q(is_public=True) | Q(pk__in=granted))
    return list(models.order_by("name").values_list("name", flat=True))


# --- The form ---------------------------------------------------------------------------


class PlaygroundForm(forms.Form):
    # Any name: the gateway judges it, with its own error, as for an API call.
    model = forms.CharField(max_length=200, widget=forms.Select)
    system = forms.CharField(
        label="System prompt",
        required=False,
        max_length=MAX_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Instructions the model follows for the whole answer.",
    )
    prompt = forms.CharField(max_length=MAX_PROMPT_CHARS, widget=forms.Textarea(attrs={"rows": 5}))
    max_tokens = forms.IntegerField(
        label="Max tokens",
        required=False,
        min_value=1,
        help_text="Caps the answer, and the credits held for it while it runs.",
    )
    temperature = forms.FloatField(
        required=False,
        min_value=0,
        max_value=2,
        widget=forms.NumberInput(attrs={"step": "0.1"}),
        help_text="0 to 2: higher answers vary more.",
    )

    def __init__(self, *args: Any, models: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].widget.attrs.pop("maxlength", None)  # CharField adds it; a <select> has none
        self.offer(models or [])

    def offer(self, models: list[str]) -> None:
        """The models the picker lists."""
        self.fields["model"].widget.choices = [(name, name) for name in models]

    def chat_body(self, *, stream: bool) -> dict[str, Any]:
        """The OpenAI chat request an API client would send."""
        data = self.cleaned_data
        messages = [{"role": "system", "content": data["system"]}] if data["system"] else []
        body: dict[str, Any] = {
            "model": data["model"],
            "messages": [*messages, {"role": "user", "content": data["prompt"]}],
        }
        if data["max_tokens"] is not None:
            body["max_completion_tokens"] = data["max_tokens"]
        if data["temperature"] is not None:
            body["temperature"] = data["temperature"]
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def first_error(self) -> tuple[str | None, str]:
        """The first problem, as (field name or None, message) for one error answer."""
        name, errors = next(iter(self.errors.items()))
        field = self.fields.get(name)
        if field is None:
            return None, str(errors[0])
        return name, f"{field.label or name.replace('_', ' ').capitalize()}: {errors[0]}"


# --- The page ----------------------------------------------------------------------------


def _render_page(
    request: HttpRequest,
    dashboard: Dashboard,
    form: PlaygroundForm,
    *,
    answer: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    models = form.fields["model"].widget.choices
    context = {
        "form": form,
        "has_models": bool(models),
        "balance": money.display_text(credits_balance(organization_id=dashboard.organization_id)),
        "answer": answer,
    }
    response = dashboard.render(request, "dashboard/playground.html", context, status=status)
    response["Cache-Control"] = "no-store"  # an answer page holds the person's prompt
    return response


@dashboard_view
def page(request: HttpRequest, dashboard: Dashboard) -> HttpResponseBase:
    form = PlaygroundForm(models=playground_models(organization_id=dashboard.organization_id))
    return _render_page(request, dashboard, form)


# --- The chat endpoint ---------------------------------------------------------------------


def _error(status: int, message: str, *, code: str, param: str | None = None) -> JsonResponse:
    """The gateway's error shape, so the page's script reads one format."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return JsonResponse({"error": error}, status=status)


def _wants_page(request: HttpRequest) -> bool:
    """A browser posting the form itself (no script) navigates, and asks for HTML."""
    return "text/html" in request.headers.get("Accept", "")


def _input(request: HttpRequest) -> Any:
    if request.content_type == "application/json":
        try:
            return json.loads(request.body)
        except json.JSONDecodeError:
            return None
    return request.POST


class _Refused(Exception):
    """The request goes no further: ``response`` says why."""

    def __init__(self, response: HttpResponseBase) -> None:
        self.response = response


async def _dashboard(request: HttpRequest, *, wants_page: bool) -> Dashboard:
    user = await request.auser()
    if not user.is_authenticated:
        if wants_page:
            raise _Refused(redirect_to_login(reverse("dashboard-playground")))
        raise _Refused(_error(401, "Sign in to use the playground.", code="not_signed_in"))
    dashboard = await sync_to_async(dashboard_for)(request)
    if dashboard is None:
        raise _Refused(_error(403, "You belong to no organization.", code="no_organization"))
    return dashboard


async def _form(request: HttpRequest, dashboard: Dashboard, *, wants_page: bool) -> PlaygroundForm:
    data = _input(request)
    if not hasattr(data, "get"):
        raise _Refused(_error(400, "Send the form's fields as a JSON object.", code="invalid_json"))
    form = PlaygroundForm(data)
    if not form.is_valid():
        if wants_page:
            raise _Refused(await _page_with(request, dashboard, form, status=400))
        param, message = form.first_error()
        raise _Refused(_error(400, message, code="invalid_input", param=param))
    return form


@require_POST
async def chat(request: HttpRequest) -> HttpResponseBase:
    wants_page = _wants_page(request)
    try:
        dashboard = await _dashboard(request, wants_page=wants_page)
        form = await _form(request, dashboard, wants_page=wants_page)
    except _Refused as refused:
        return refused.response
    api_key = await sync_to_async(services.playground_key_for)(
        organization=dashboard.membership.organization, user=dashboard.user
    )
    call = await GatewayCall(path=CHAT_PATH, payload=form.chat_body(stream=not wants_page), api_key=api_key).start()
    if wants_page:
        return await _page_with(request, dashboard, form, answer=_answer(call, await call.read()), status=call.status)
    return await _passthrough(call)


async def _passthrough(call: GatewayCall) -> HttpResponseBase:
    """The gateway's answer as it is: its SSE stream as it comes, or its whole JSON error."""
    if call.status == 200 and call.is_stream:
        response: HttpResponseBase = StreamingHttpResponse(call.chunks(), content_type=call.headers["content-type"])
    else:
        response = HttpResponse(
            await call.read(), status=call.status, content_type=call.headers.get("content-type", "application/json")
        )
    for name, value in call.headers.items():
        if name not in _NOT_PASSED:
            response[name] = value
    # The request log's id of this call (x-request-id is this page's own request).
    response["x-oneflow-request-id"] = call.request_id
    return response


# --- The page without the script --------------------------------------------------------------


def _answer(call: GatewayCall, body: bytes) -> dict[str, Any]:
    """What the page shows of a whole (not streamed) answer, or of the gateway's error."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        payload = {}
    answer: dict[str, Any] = {"request_id": call.request_id, "status": call.status}
    if call.status != 200 or not isinstance(payload, dict) or "choices" not in payload:
        error = payload.get("error") if isinstance(payload, dict) else None
        answer["error"] = (error or {}).get("message") or f"The gateway answered {call.status}."
        return answer
    choices = payload.get("choices") or [{}]
    answer["text"] = (choices[0].get("message") or {}).get("content") or ""
    answer["usage"] = payload.get("usage") or {}
    try:
        cost = Decimal(call.headers.get("x-oneflow-cost", ""))
    except InvalidOperation:
        cost = None
    if cost is not None:
        answer["cost"] = money.display_text(cost)
        answer["cost_exact"] = f"{cost.normalize():f}"
    return answer


async def _page_with(
    request: HttpRequest,
    dashboard: Dashboard,
    form: PlaygroundForm,
    *,
    answer: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    def build() -> HttpResponse:
        form.offer(playground_models(organization_id=dashboard.organization_id))
        return _render_page(request, dashboard, form, answer=answer, status=status)

    return await sync_to_async(build)()
