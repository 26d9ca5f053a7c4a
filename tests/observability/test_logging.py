"""Logs that are safe and useful (issue 14 item 2).

Every line is JSON with the request id (and the trace and span ids inside a span);
one access line per /v1 call, without the prompt or the answer; each kind of secret,
logged in each position, never reaches the output; levels per logger come from the
environment. The lines are read from the handler that ``LOGGING`` installed, so the
real configuration (its filter and formatter) is what is tested.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from opentelemetry.sdk.trace import TracerProvider

from gateway import metrics as gateway_metrics
from oneflow.lib.crypto import random_token
from oneflow.lib.jsonlog import JsonFormatter, logger_levels
from oneflow.lib.redact import RULES, RedactingFilter, redact_text
from tests.conftest import LiveAsgiServer, free_port
from tests.gateway.conftest import Gateway, gateway
from tests.http import call

# The live gateway's fixture: pytest sees conftest fixtures only from a test's own folder.
__all__ = ["gateway"]

ROOT = Path(__file__).resolve().parent.parent.parent
logger = logging.getLogger("tests.observability")


class Output:
    """What the configured JSON handler wrote while the test ran."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.split("\n") if line]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == name]


@pytest.fixture
def output() -> Iterator[Output]:
    """The root logger's handler from ``LOGGING``, writing into a buffer for the test."""
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert isinstance(handler, logging.StreamHandler)
    assert any(isinstance(f, RedactingFilter) for f in handler.filters), "LOGGING installs the filter"
    stream = io.StringIO()
    previous = handler.setStream(stream)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield Output(stream)
    finally:
        logger.setLevel(level)
        if previous is not None:
            handler.setStream(previous)


# --- Redaction: each kind of secret, in each position --------------------------------


@dataclass(frozen=True)
class Secret:
    rule: str  # the row of oneflow.lib.redact.RULES that catches it
    text: str  # how it appears in what is logged
    secret: str  # the part that must never reach the output

    def __str__(self) -> str:
        return self.rule


def _b64(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _secrets() -> list[Secret]:
    """Fresh random secrets of every kind: nothing here is a value the rules could know."""
    one = {name: random_token(48) for name in ("key", "bearer", "basic", "token", "openai", "project", "password")}
    key_secret = random_token(32)
    jwt_tail = f"{_b64({'sub': random_token(12)})}.{random_token(43)}"
    anthropic, google, groq, xai, hf = (random_token(n) for n in (93, 35, 52, 80, 34))
    fernet = Fernet(Fernet.generate_key()).encrypt(b"a sealed provider credential").decode()
    pem_body = random_token(64)
    opaque = {name: random_token(24) for name in ("url", "named", "json", "api", "header", "client", "access")}
    return [
        Secret("oneflow_api_key", f"of_live_{random_token(12)}_{key_secret}", key_secret),
        Secret("oneflow_api_key", f"of_live_{one['key'][:20]}", one["key"][:20]),  # malformed, still a key
        Secret("bearer", f"Bearer {one['bearer']}", one["bearer"]),
        Secret("authorization", f"Authorization: Basic {one['basic']}", one["basic"]),
        Secret("authorization", f"{{'authorization': '{one['token']}'}}", one["token"]),
        Secret("authorization", f"[(b'authorization', b'{opaque['header']}')]", opaque["header"]),
        Secret("jwt", f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{jwt_tail}", jwt_tail),
        Secret("openai_key", f"sk-{one['openai']}", one["openai"]),
        Secret("openai_key", f"sk-proj-{one['project']}", one["project"]),
        Secret("anthropic_key", f"sk-ant-api03-{anthropic}", anthropic),
        Secret("google_key", f"AIza{google}", google),
        Secret("provider_key", f"gsk_{groq}", groq),
        Secret("provider_key", f"xai-{xai}", xai),
        Secret("provider_key", f"hf_{hf}", hf),
        Secret("fernet_token", fernet, fernet[6:]),
        Secret("url_password", f"redis://default:{opaque['url']}@redis:6379/0", opaque["url"]),
        Secret("named_secret", f"password={one['password']}", one["password"]),
        Secret("named_secret", f'{{"password": "{opaque["json"]}"}}', opaque["json"]),
        Secret("named_secret", f"api_key={opaque['api']}", opaque["api"]),
        Secret("named_secret", f"x-api-key: {opaque['named']}", opaque["named"]),
        Secret("named_secret", f"client_secret={opaque['client']}&grant_type=x", opaque["client"]),
        Secret("named_secret", f"{{'access_token': '{opaque['access']}'}}", opaque["access"]),
        Secret(
            "private_key",
            f"-----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----",
            pem_body,
        ),
    ]


SECRETS = _secrets()


def in_message(text: str) -> None:
    logger.warning(f"before {text} after")


def in_arguments(text: str) -> None:
    logger.warning("before %s after", text)


def in_extra(text: str) -> None:
    logger.warning("before after", extra={"detail": f"before {text} after"})


def in_nested_extra(text: str) -> None:
    logger.warning("before after", extra={"context": {"upstream": [{"said": f"before {text} after"}]}})


def in_exception(text: str) -> None:
    try:
        raise ValueError(f"before {text} after")
    except ValueError:
        logger.exception("before failed after")


def in_exception_cause(text: str) -> None:
    try:
        try:
            raise KeyError(text)
        except KeyError as error:
            raise RuntimeError("before wrapped after") from error
    except RuntimeError:
        logger.exception("before failed after")


POSITIONS: list[Callable[[str], None]] = [
    in_message,
    in_arguments,
    in_extra,
    in_nested_extra,
    in_exception,
    in_exception_cause,
]


def test_every_rule_has_secrets_to_prove_it() -> None:
    assert {secret.rule for secret in SECRETS} == {rule.name for rule in RULES}
    triggers = {rule.name: rule.triggers for rule in RULES}
    for secret in SECRETS:  # the cheap test before the pattern lets each of them through
        assert any(trigger in secret.text.lower() for trigger in triggers[secret.rule]), secret.text


@pytest.mark.parametrize("position", POSITIONS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("secret", SECRETS, ids=str)
def test_a_secret_never_reaches_the_output(output: Output, secret: Secret, position: Callable[[str], None]) -> None:
    position(secret.text)

    assert secret.secret not in output.text
    assert "before" in output.text
    assert "after" in output.text
    assert "[REDACTED]" in output.text
    [line] = output.lines()
    assert line["logger"] == "tests.observability"


@pytest.mark.parametrize("name", ["password", "api_key", "authorization", "x-api-key", "client_secret", "Cookie"])
def test_a_value_under_a_secret_name_goes_whatever_it_looks_like(output: Output, name: str) -> None:
    top, nested, header = random_token(8), random_token(8), random_token(8)
    logger.warning(
        "before after",
        extra={name: top, "context": {"deep": {name: nested}}, "headers": [(name.encode(), header.encode())]},
    )

    [line] = output.lines()
    assert line[name] == "[REDACTED]"
    assert line["context"] == {"deep": {name: "[REDACTED]"}}
    for value in (top, nested, header):
        assert value not in output.text


def test_a_redacted_key_keeps_its_public_prefix_and_other_text_is_left_alone(output: Output) -> None:
    prefix, secret = random_token(12), random_token(32)
    ordinary = (
        "POST /v1/chat/completions 200 model=gpt-4o-mini prompt_tokens=12 max_tokens: 100 key_id=key_AbC "
        "request req_0123456789abcdef authorization failed https://api.openai.com/v1 redis://redis:6379/0 "
        "claude-3-5-sonnet-20241022 disk-usage-0123456789abcdefgh"
    )

    logger.warning("%s key of_live_%s_%s", ordinary, prefix, secret)

    [line] = output.lines()
    assert line["message"] == f"{ordinary} key of_live_{prefix}_[REDACTED]"
    assert redact_text(ordinary) == ordinary


def test_arguments_that_do_not_fit_the_message_are_still_redacted(output: Output) -> None:
    secret = random_token(40)
    logger.warning("only %s", "one", f"sk-{secret}")  # noqa: PLE1205 - the mistake tested

    assert secret not in output.text
    [line] = output.lines()
    assert "unformattable arguments" in line["message"]


def test_a_third_party_logger_is_redacted_too(output: Output) -> None:
    secret = random_token(40)
    logging.getLogger("celery.worker").error("broker redis://:%s@redis:6379/0 unreachable", secret)
    logging.getLogger("uvicorn.error").error("Exception in ASGI application: Bearer %s", secret)

    assert secret not in output.text
    assert [line["logger"] for line in output.lines()] == ["celery.worker", "uvicorn.error"]


def test_loggers_with_handlers_of_their_own_hand_their_lines_to_the_json_handler() -> None:
    """Django's defaults write plain text to stderr; uvicorn's and gunicorn's their own format."""
    for name in ("django", "django.server", "gunicorn.error"):
        assert logging.getLogger(name).handlers == [], name
        assert logging.getLogger(name).propagate, name


# --- The access line ------------------------------------------------------------------


def test_one_access_line_per_v1_call_with_its_fields_and_neither_prompt_nor_answer(
    gateway: Gateway, output: Output
) -> None:
    prompt = f"Tell me about the {random_token(16)} project"
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
    )
    answer = raw.parse().choices[0].message.content
    [event] = gateway.events()

    [line] = output.of("oneflow.access")
    assert line["message"] == "POST /v1/chat/completions 200"
    assert line["request_id"] == raw.headers["x-request-id"] == event.request_id
    assert line["level"] == "INFO"
    assert {name: line[name] for name in ("endpoint", "status", "model", "requested_model", "stream")} == {
        "endpoint": "chat",
        "status": 200,
        "model": "gpt-4o-mini",
        "requested_model": None,
        "stream": False,
    }
    key = gateway.key.key
    assert (line["organization_id"], line["key_id"]) == (key.organization_id, key.public_id)
    assert (line["deployment_id"], line["provider"]) == (event.deployment_id, event.provider)
    tokens = ("prompt_tokens", "cached_tokens", "cache_write_5m_tokens", "completion_tokens", "reasoning_tokens")
    assert [line[name] for name in tokens] == [getattr(event, name) for name in tokens]
    assert line["prompt_tokens"] > 0
    assert line["completion_tokens"] > 0
    assert Decimal(line["charged"]) == event.charged > 0
    assert Decimal(line["cost"]) == event.charged
    assert (line["attempts"], line["usage_source"], line["client_disconnected"]) == (1, "reported", False)
    assert isinstance(line["latency_ms"], int)
    assert line["ttft_ms"] is None
    assert answer
    for private in (prompt, prompt.split()[-2], answer, gateway.key.raw):
        assert private not in output.text


def test_a_stream_has_its_time_to_first_token(gateway: Gateway, output: Output) -> None:
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)
    chunks = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True)
    answer = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    [line] = output.of("oneflow.access")
    assert (line["stream"], line["status"]) == (True, 200)
    assert isinstance(line["ttft_ms"], int)
    assert answer
    assert answer not in output.text


def test_a_refused_key_is_logged_without_it(gateway: Gateway, output: Output) -> None:
    """A provider key sent to OneFlow by mistake: 401, and the key is in no line."""
    provider_key = f"sk-proj-{random_token(48)}"
    reply = call(
        gateway.server.url,
        "POST",
        "/v1/chat/completions",
        body=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}).encode(),
        headers={"Authorization": f"Bearer {provider_key}", "Content-Type": "application/json"},
    )

    assert reply.status == 401
    [line] = output.of("oneflow.access")
    assert (line["status"], line["organization_id"], line["key_id"]) == (401, None, None)
    assert line["request_id"] == reply.headers["x-request-id"]
    assert provider_key[8:] not in output.text


def test_access_log_false_turns_the_line_off(gateway: Gateway, output: Output) -> None:
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)
    with override_settings(ACCESS_LOG=False):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])

    assert len(gateway.events()) == 1
    assert output.of("oneflow.access") == []


# --- Request, trace and span ids -------------------------------------------------------


def test_lines_logged_during_a_v1_request_carry_its_id(
    gateway: Gateway, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any line a gateway stage logs while it serves the request: here one beside its metrics."""
    count = gateway_metrics.request_done

    def counted(finished: Any) -> None:
        logging.getLogger("gateway.test").info("counted")
        count(finished)

    monkeypatch.setattr(gateway_metrics, "request_done", counted)
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    )

    [line] = output.of("gateway.test")
    assert line["request_id"] == raw.headers["x-request-id"]


def test_lines_logged_during_a_django_request_carry_its_id(live_asgi: LiveAsgiServer, output: Output) -> None:
    reply = call(live_asgi.url, "GET", "/no-such-page/", headers={"x-client-request-id": "client-42"})

    assert reply.status == 404
    [line] = output.of("django.request")
    assert line["message"] == "Not Found: /no-such-page/"
    assert line["request_id"] == reply.headers["x-request-id"]
    assert line["client_request_id"] == "client-42"


def test_lines_outside_a_request_have_no_request_id(output: Output) -> None:
    logger.info("between requests")

    [line] = output.lines()
    assert "request_id" not in line


def test_trace_and_span_ids_are_those_of_the_current_span(output: Output) -> None:
    tracer = TracerProvider().get_tracer("tests.observability")
    with tracer.start_as_current_span("work") as span:
        logger.info("inside")
    logger.info("outside")

    inside, outside = output.lines()
    context = span.get_span_context()
    assert (inside["trace_id"], inside["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert len(inside["trace_id"]) == 32
    assert len(inside["span_id"]) == 16
    assert "trace_id" not in outside
    assert "span_id" not in outside


# --- Levels per logger ---------------------------------------------------------------


def test_log_levels_name_a_level_per_logger() -> None:
    levels = logger_levels("LOG_LEVELS", " gateway=DEBUG, celery=warning,oneflow.access=WARNING ,")

    assert levels == {"gateway": "DEBUG", "celery": "WARNING", "oneflow.access": "WARNING"}
    assert logger_levels("LOG_LEVELS", "") == {}


@pytest.mark.parametrize(
    "raw", ["gateway", "gateway=LOUD", "=DEBUG", "two words=INFO", "gateway=DEBUG,gateway=INFO", "root=DEBUG"]
)
def test_a_bad_log_levels_value_is_refused_by_name(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^LOG_LEVELS "):
        logger_levels("LOG_LEVELS", raw)


def run_django(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-c", f"import django, logging; django.setup(); {code}"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_settings_apply_log_levels_and_refuse_a_bad_one() -> None:
    levels = "gateway=DEBUG,oneflow.access=WARNING,gunicorn.error=ERROR"
    show = "print([logging.getLogger(n).getEffectiveLevel() for n in ('gateway', 'oneflow.access', 'gunicorn.error')])"
    good = run_django(show, LOG_LEVELS=levels)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == str([logging.DEBUG, logging.WARNING, logging.ERROR])

    bad = run_django("print('started')", LOG_LEVELS="gateway=LOUD")
    assert bad.returncode != 0
    assert "LOG_LEVELS" in bad.stderr
    assert "started" not in bad.stdout


# --- Under gunicorn, as production runs it ----------------------------------------------


@pytest.mark.live_server
def test_under_gunicorn_every_line_is_json_and_redacted(tmp_path: Path) -> None:
    port, secret = free_port(), random_token(32)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "METRICS_"))}
    env = {
        **inherited,
        "ONEFLOW_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "METRICS_PORT": "0",
        "ONEFLOW_EMBEDDED_BEAT": "false",
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "INFO",
        "LOG_LEVELS": "gateway=DEBUG",
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    stdout, stderr = (tmp_path / "stdout").open("w+"), (tmp_path / "stderr").open("w+")
    process = subprocess.Popen(  # noqa: S603 - our own server
        [*command, "oneflow.asgi:application"], cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True
    )
    url, host = f"http://127.0.0.1:{port}", {"Host": "localhost"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if call(url, "GET", "/healthz", headers=host).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        assert call(url, "GET", f"/of_live_{random_token(12)}_{secret}/", headers=host).status == 404
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    text = (tmp_path / "stdout").read_text()
    lines = [json.loads(line) for line in text.split("\n") if line]
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "uvicorn.error", "django.request"} <= loggers
    [not_found] = [line for line in lines if line["logger"] == "django.request"]
    assert not_found["message"].endswith("_[REDACTED]/")
    assert not_found["request_id"].startswith("req_")
    assert secret not in text
    assert secret not in (tmp_path / "stderr").read_text()
