"""JSON log lines, one object per record, and the levels loggers log at.

Each line carries the current request id (``request_id_var``, set for every HTTP
request by ``oneflow.lib.asgi.RequestIdMiddleware``, /v1 and Django alike) and, when a
span is active, the OpenTelemetry trace and span ids, so a line leads to its request's
usage row and trace. docs/logging.md describes a line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime

import orjson
from django.core.exceptions import ImproperlyConfigured
from opentelemetry import trace

from oneflow.lib.redact import STANDARD_ATTRIBUTES, redact_record

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# The id the client gave the request, if any (x-client-request-id): logged beside ours.
client_request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_request_id", default=None)

# uvicorn's copy of its message with terminal colour codes: noise in a JSON line.
_NOT_WRITTEN = STANDARD_ATTRIBUTES | {"color_message"}
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOGGER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, then
    ``request_id`` (and ``client_request_id``), ``trace_id`` and ``span_id`` when known,
    every ``extra`` field, and ``exc_info`` / ``stack_info`` as text.

    The record is redacted first (``oneflow.lib.redact``): by the handler's filter, or
    here when a handler was configured without it, so no configuration writes a raw one.
    The exception is the redacted ``exc_text`` the redaction left, never ``exc_info``
    formatted again.
    """

    def format(self, record: logging.LogRecord) -> str:
        redact_record(record)
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := request_id_var.get():
            entry["request_id"] = request_id
        if client_request_id := client_request_id_var.get():
            entry["client_request_id"] = client_request_id
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _NOT_WRITTEN and not key.startswith("_"):
                entry[key] = value
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        try:
            # orjson: about a tenth of the stdlib's time on an access line's thirty fields.
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # what orjson refuses (an int past 64 bits, a lone surrogate) the stdlib writes
            return json.dumps(entry, default=str, skipkeys=True)


def logger_levels(name: str, raw: str) -> dict[str, str]:
    """Levels per logger from a variable like ``gateway=DEBUG,celery=WARNING``; a bad
    entry stops start-up with a message naming the variable ``name``."""
    levels: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        logger, sep, level = (part.strip() for part in entry.partition("="))
        if not sep or not _LOGGER_NAME.match(logger) or level.upper() not in LEVELS:
            shape = f"logger=LEVEL[,logger=LEVEL...] with a level among {', '.join(LEVELS)}"
            raise ImproperlyConfigured(f"{name} must read {shape}, got {entry!r}")
        if logger == "root":
            raise ImproperlyConfigured(f"{name} cannot set the root logger's level: LOG_LEVEL does")
        if logger in levels:
            raise ImproperlyConfigured(f"{name} names the logger {logger!r} twice")
        levels[logger] = level.upper()
    return levels
