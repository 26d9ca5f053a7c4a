"""Takes secrets out of log records before any handler writes them.

``RedactingFilter`` sits on every handler of ``LOGGING`` (and of gunicorn's log
configuration), so it covers every logger that reaches a handler, third-party ones
(Django, Celery, uvicorn, gunicorn) included; ``oneflow.lib.jsonlog.JsonFormatter``
runs it too when a record arrives unfiltered. It rewrites the record in place, once:

- the message, after its ``%`` arguments are interpolated (the arguments are then
  cleared, so no later formatter interpolates the raw ones again);
- every ``extra`` attribute: strings, and strings inside dicts, lists and tuples down to
  ``MAX_DEPTH``; a value under a secret-sounding key (``password``, ``token``,
  ``authorization``...) goes whole; other objects are rendered with ``str`` and redacted;
- the exception and stack text: the traceback is formatted into ``exc_text``, redacted.
  ``exc_info`` stays for handlers that want the exception object (pytest's ``caplog``);
  formatters render the cached ``exc_text``, as ``logging.Formatter`` does.

What it cannot know: a secret with no recognisable shape, in free text, under a key that
does not sound secret (a provider key of an unknown format, a password in prose). Those
never belong in a log call; the rules here are the net, not the habit. docs/logging.md
lists the rules and their limits.
"""

from __future__ import annotations

import functools
import logging
import re
from decimal import Decimal
from typing import Any, NamedTuple

REDACTED = "[REDACTED]"
MAX_DEPTH = 4  # below this, a nested value is rendered as text and redacted whole

# A value after ``name: `` or ``name=``: quoted (JSON, a repr, a bytes repr), or one bare word.
_QUOTED = r"""b?"[^"\n]*"|b?'[^'\n]*'"""
_WORD = r"""[^\s"',;&)}\]]+"""


class Rule(NamedTuple):
    name: str
    triggers: tuple[str, ...]  # lower-case; a text holding none of them cannot match (a cheap test first)
    pattern: str  # its group ``keep``, if any: a short non-secret lead kept before the marker


# One row per kind of secret, each proved by tests/observability/test_logging.py.
RULES: tuple[Rule, ...] = (
    # accounts/keys.py: of_live_<12 base62: the public lookup prefix>_<32 base62: the secret>.
    Rule("oneflow_api_key", ("of_live_",), r"(?P<keep>of_live_[A-Za-z0-9]{12}_)[A-Za-z0-9]+|of_live_[A-Za-z0-9_]{6,}"),
    # A private key block (PEM), to its end or to the end of the text.
    Rule(
        "private_key",
        ("private key",),
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    ),
    # Authorization / Proxy-Authorization with its value: "Basic x", "Bearer x", a quoted value,
    # the (name, value) pairs of an ASGI scope.
    Rule(
        "authorization",
        ("authorization",),
        rf"""(?P<keep>(?i:(?<![A-Za-z0-9])(?:proxy-)?authorization)(?:["']?\s*[:=]|["']\s*,)\s*)"""
        rf"""(?:{_QUOTED}|(?:[A-Za-z]+[ \t]+)?{_WORD})""",
    ),
    Rule("bearer", ("bearer",), r"(?P<keep>(?i:\bbearer)\s+)[A-Za-z0-9._~+/=-]+"),
    # Three base64url segments, the header's JSON starting {" (eyJ).
    Rule("jwt", ("eyj",), r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    Rule("anthropic_key", ("sk-ant-",), r"(?<![A-Za-z0-9_-])(?P<keep>sk-ant-)[A-Za-z0-9_-]{8,}"),
    Rule("openai_key", ("sk-",), r"(?<![A-Za-z0-9_-])(?P<keep>sk-(?:proj-|svcacct-|admin-)?)[A-Za-z0-9_-]{16,}"),
    Rule("google_key", ("aiza",), r"(?P<keep>AIza)[A-Za-z0-9_-]{30,}"),
    # Groq, xAI, Hugging Face: served through openai_compatible deployments.
    Rule("provider_key", ("gsk_", "xai-", "hf_"), r"(?<![A-Za-z0-9])(?P<keep>gsk_|xai-|hf_)[A-Za-z0-9]{20,}"),
    # oneflow/lib/crypto.py seals with Fernet: version byte 0x80 and a timestamp, "gAAAAA...".
    Rule("fernet_token", ("gaaaaa",), r"gAAAAA[A-Za-z0-9_-]{40,}={0,2}"),
    # scheme://user:password@host (DATABASE_URL, REDIS_URL, a broker URL in an error).
    Rule("url_password", ("://",), r"(?P<keep>://[^\s:/@]*:)[^\s/@]+(?=@)"),
    # password=..., "api_key": "...", x-api-key: ..., client_secret=..., access_token=...
    Rule(
        "named_secret",
        ("password", "passwd", "secret", "token", "api_key", "api-key", "apikey", "sessionid"),
        r"""(?P<keep>(?i:(?<![A-Za-z0-9])(?:password|passwd|secret|token|api[-_]?key|sessionid|csrftoken)"""
        r"""(?:[-_]?(?:key|value|hash|\d))?)(?:["']?\s*[:=]|["']\s*,)\s*)"""
        rf"(?:{_QUOTED}|{_WORD})",
    ),
)


def _compiled() -> tuple[re.Pattern[str], dict[str, str]]:
    """The rules as one alternation (one pass over the text), each rule a named group,
    and for the rules with a kept lead, the name of its group."""
    keeps = {rule.name: f"{rule.name}_keep" for rule in RULES if "(?P<keep>" in rule.pattern}
    parts = [f"(?P<{name}>{pattern.replace('(?P<keep>', f'(?P<{name}_keep>')})" for name, _, pattern in RULES]
    return re.compile("|".join(parts)), keeps


_PATTERN, _KEEPS = _compiled()
_TRIGGERS = tuple(
    trigger  # one test each: none that holds another ("sk-ant-" is found by "sk-")
    for trigger in dict.fromkeys(trigger for rule in RULES for trigger in rule.triggers)
    if not any(other != trigger and other in trigger for rule in RULES for other in rule.triggers)
)

# A dict key (or an extra's name, or a header in a (name, value) pair) whose value is secret whatever it looks like.
_SECRET_KEY = re.compile(
    r"(?i)(?:.*[-_])?(?:password|passwd|secret|token|api[-_]?key|apikey|authorization|cookie|set-cookie"
    r"|sessionid|csrftoken|credentials|(?:private|signing|encryption)[-_]?key)(?:[-_]?(?:key|value|hash|\d))?"
)


def _replace(match: re.Match[str]) -> str:
    keep = _KEEPS.get(match.lastgroup or "")
    lead = match.group(keep) if keep else None
    return (lead or "") + REDACTED


def redact_text(text: str) -> str:
    """``text`` with every secret the rules recognise replaced by ``[REDACTED]``."""
    return _PATTERN.sub(_replace, text) if _may_hold_secrets(text) else text


def _may_hold_secrets(text: str) -> bool:
    """Whether ``text`` holds a rule's trigger. The alternation costs about 0.2 us a
    character; these substring tests a few percent of that, and most text holds none."""
    lowered = text.lower()
    return any(trigger in lowered for trigger in _TRIGGERS)


def is_secret_key(name: object) -> bool:
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if not isinstance(name, str):
        return False
    return _is_secret_name(name) if len(name) <= 64 else _SECRET_KEY.fullmatch(name) is not None


# A memo, not state: the names code logs under are few, and each test costs 0.5 us
# against 0.1 us here (an access line has thirty). Long names are not kept.
@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    return _SECRET_KEY.fullmatch(name) is not None


def redact_value(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` fit for a log line: numbers kept, strings redacted, containers
    walked to ``MAX_DEPTH``, anything else rendered as redacted text."""
    if value is None or isinstance(value, bool | int | float | Decimal):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if depth < MAX_DEPTH and isinstance(value, dict):
        return {key: _redact_item(key, item, depth + 1) for key, item in value.items()}
    if depth < MAX_DEPTH and isinstance(value, list | tuple | set | frozenset):
        if isinstance(value, tuple) and len(value) == 2:  # perhaps a (header, value) pair
            return [redact_value(value[0], depth + 1), _redact_item(value[0], value[1], depth + 1)]
        return [redact_value(item, depth + 1) for item in value]
    return redact_text(_text(value))


def _redact_item(key: object, value: Any, depth: int) -> Any:
    return REDACTED if value is not None and is_secret_key(key) else redact_value(value, depth)


def _text(value: object) -> str:
    try:
        return repr(value) if isinstance(value, bytes) else str(value)
    except Exception:  # a broken __str__ must not break logging
        return f"<unprintable {type(value).__name__}>"


_PLAIN = frozenset({type(None), bool, int, float, Decimal})  # never scanned
# Attributes every LogRecord has; anything else was passed through ``extra=``.
STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_TRACEBACKS = logging.Formatter()


def redact_record(record: logging.LogRecord) -> None:
    """Rewrites ``record`` in place, once (marked ``_redacted``), as the module docstring says."""
    fields = record.__dict__
    if fields.get("_redacted"):
        return
    fields["_redacted"] = True
    message = _message(record)
    extras = [name for name in fields if name not in STANDARD_ATTRIBUTES and not name.startswith("_")]
    # One trigger test over the message and every top-level string (an access line's
    # twenty fields) rather than one each; "\0" joins them, so no trigger spans two.
    texts = [message, *(value for name in extras if isinstance(value := fields[name], str))]
    scan = _may_hold_secrets("\0".join(texts))
    record.msg, record.args = redact_text(message) if scan else message, ()
    for name in extras:
        value = fields[name]
        if value is not None and is_secret_key(name):
            fields[name] = REDACTED
        elif type(value) is str:
            fields[name] = redact_text(value) if scan else value
        elif type(value) not in _PLAIN:
            fields[name] = redact_value(value)
    if record.exc_info:
        record.exc_text = redact_text(_TRACEBACKS.formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # arguments that do not fit the message: keep both, as text
        return f"{record.msg} (unformattable arguments: {redact_value(record.args)})"


class RedactingFilter(logging.Filter):
    """Install on a handler (``LOGGING["filters"]``): every record it writes is redacted first."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True
