"""OneFlow settings, read from the environment (see README "Configuration").

With neither ``DATABASE_URL`` nor ``REDIS_URL`` set, OneFlow runs embedded:
SQLite, an in-process Redis, and Celery tasks plus the beat schedule in the web
process. The same code runs in production with the URLs set; only the
connections differ.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from oneflow.lib.env import Env, production_problems
from oneflow.lib.jsonlog import logger_levels
from oneflow.lib.redis import EMBEDDED_URL
from oneflow.lib.secrets import installation_secret

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
env = Env()

ONEFLOW_ENV = env.choice("ONEFLOW_ENV", ("development", "production"), "development")
PRODUCTION = ONEFLOW_ENV == "production"

# The defaults of earlier versions, public in their source: production refuses
# them, and nothing uses them any more.
INSECURE_SECRET_KEY = "oneflow-development-only-secret-key-never-use-in-production-0123456789"  # noqa: S105 - a known value that production refuses
INSECURE_JWT_SIGNING_KEY = "oneflow-development-only-jwt-signing-key-never-use-in-production"


def _installation_default(name: str) -> str:
    """Outside production, a variable left unset falls back to a random value made
    once per installation (var/<name>, mode 0600): a key known to everyone would let
    anyone forge a superuser's token. Production must set it (checked below)."""
    return "" if PRODUCTION else installation_secret(VAR_DIR / name.lower())


SECRET_KEY = env.secret("SECRET_KEY") or _installation_default("SECRET_KEY")
JWT_SIGNING_KEY = env.secret("JWT_SIGNING_KEY") or _installation_default("JWT_SIGNING_KEY")
# Seals secrets that must be read back (oneflow.lib.crypto); defaults to one
# derived from SECRET_KEY, so rotating SECRET_KEY then loses what was sealed.
ENCRYPTION_KEY = env.secret("ENCRYPTION_KEY") or SECRET_KEY
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"])
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS")

if PRODUCTION:
    problems = production_problems(
        secret_key=SECRET_KEY,
        jwt_signing_key=JWT_SIGNING_KEY,
        insecure_defaults={INSECURE_SECRET_KEY, INSECURE_JWT_SIGNING_KEY},
        debug=DEBUG,
        cors_origins=CORS_ALLOWED_ORIGINS,
        allowed_hosts=ALLOWED_HOSTS,
    )
    if problems:
        raise ImproperlyConfigured("refusing to start in production: " + "; ".join(problems))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_prometheus",
    "audit",
    "accounts",
    "providers",
    "billing",
    "routing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "oneflow.lib.middleware.ContentSecurityPolicyMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "oneflow.urls"
# The proxy API (/v1/*): a lean ASGI app beside Django, named here because
# nothing may import routing (see oneflow.asgi).
ONEFLOW_PROXY_APP = "gateway.asgi.GatewayApp"
ASGI_APPLICATION = "oneflow.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------

DATABASE_URL = env.secret("DATABASE_URL")
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if _db["ENGINE"] == "django.db.backends.postgresql" and env.bool("DB_POOL", default=True):
        # psycopg 3's pool replaces persistent connections; Django requires
        # CONN_MAX_AGE=0 with it.
        _db["OPTIONS"] = {
            "pool": {
                "min_size": env.int("DB_POOL_MIN", 1, minimum=0),
                "max_size": env.int("DB_POOL_MAX", 10, minimum=1),
                "timeout": env.int("DB_POOL_TIMEOUT", 10, minimum=1),
            },
        }
    DATABASES = {"default": _db}
else:
    VAR_DIR.mkdir(exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env.str("SQLITE_PATH", str(VAR_DIR / "oneflow.sqlite3")),
            "OPTIONS": {
                # WAL lets readers run beside the one writer; IMMEDIATE takes
                # the write lock at BEGIN so two writers queue instead of
                # failing with "database is locked" halfway through.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not memory: live-server tests reach it from other threads.
            # One per test process, so two test runs in one checkout never share it.
            "TEST": {"NAME": str(VAR_DIR / f"test-oneflow-{os.getpid()}.sqlite3")},
        },
    }

# --- Redis, cache, Celery -----------------------------------------------------

REDIS_URL = env.secret("REDIS_URL")
# Connections one client may open (one client per web worker's gateway). A
# request needing one more waits up to REDIS_POOL_TIMEOUT_SECONDS for a free one
# rather than failing: redis-py's default pool raises at 100 in use, which a
# burst of 200 requests on one worker reached (the client then answered 500).
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", 256, minimum=1)
REDIS_POOL_TIMEOUT_SECONDS = env.int("REDIS_POOL_TIMEOUT_SECONDS", 5, minimum=1)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL or EMBEDDED_URL,
        "KEY_PREFIX": "oneflow:cache",
        "OPTIONS": {} if REDIS_URL else {"pool_class": "oneflow.lib.redis.EmbeddedConnectionPool"},
    },
}

CELERY_BROKER_URL = env.secret("CELERY_BROKER_URL") or REDIS_URL or "memory://"
# Embedded: no broker process exists, so tasks run where they are sent and the
# beat schedule runs in a thread of the web process (oneflow.asgi).
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL == "memory://"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Keep our JSON handler on the root logger in workers too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
ONEFLOW_EMBEDDED_BEAT = env.bool("ONEFLOW_EMBEDDED_BEAT", default=CELERY_TASK_ALWAYS_EAGER)

# --- Auth ---------------------------------------------------------------------

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Credits per US dollar of provider list price (1 credit = 1 cent with 100).
CREDITS_PER_USD = env.decimal("CREDITS_PER_USD", "1")

# Output tokens a request is assumed to ask for when it sets no max_tokens,
# when holding its worst-case cost.
HOLD_DEFAULT_MAX_OUTPUT_TOKENS = env.int("HOLD_DEFAULT_MAX_OUTPUT_TOKENS", 4096, minimum=1)

# Upstream attempts per request (across its fallbacks), the backoff between
# retries of one deployment (full jitter, doubling from the base up to the
# cap; a provider's Retry-After wins when longer), and the request's overall
# deadline. Per-attempt connect/read timeouts are set per provider.
UPSTREAM_MAX_ATTEMPTS = env.int("UPSTREAM_MAX_ATTEMPTS", 3, minimum=1)
UPSTREAM_RETRY_BASE_SECONDS = float(env.decimal("UPSTREAM_RETRY_BASE_SECONDS", "0.25"))
UPSTREAM_RETRY_MAX_SECONDS = float(env.decimal("UPSTREAM_RETRY_MAX_SECONDS", "4"))
UPSTREAM_DEADLINE_SECONDS = float(env.decimal("UPSTREAM_DEADLINE_SECONDS", "120"))

# Request limits of an organization whose plan and own settings name none
# (accounts.selectors resolves key -> organization -> plan -> these).
RATE_LIMIT_DEFAULT_RPM = env.int("RATE_LIMIT_DEFAULT_RPM", 60, minimum=1)
RATE_LIMIT_DEFAULT_RPH = env.int("RATE_LIMIT_DEFAULT_RPH", 1000, minimum=1)

# Circuit breaker per deployment (gateway.breakers): open after this many
# failures in a row, or when more than BREAKER_ERROR_RATE_PERCENT of at least
# BREAKER_MIN_SAMPLE calls in the last BREAKER_WINDOW_SECONDS failed; let one
# probe through after BREAKER_COOLDOWN_SECONDS.
BREAKER_CONSECUTIVE_FAILURES = env.int("BREAKER_CONSECUTIVE_FAILURES", 5, minimum=1)
BREAKER_ERROR_RATE_PERCENT = env.int("BREAKER_ERROR_RATE_PERCENT", 50, minimum=1)
BREAKER_MIN_SAMPLE = env.int("BREAKER_MIN_SAMPLE", 20, minimum=1)
BREAKER_WINDOW_SECONDS = env.int("BREAKER_WINDOW_SECONDS", 60, minimum=1)
BREAKER_COOLDOWN_SECONDS = env.int("BREAKER_COOLDOWN_SECONDS", 60, minimum=1)

# Raw usage events older than this are dropped (rollups keep the totals).
USAGE_RETENTION = timedelta(days=env.int("USAGE_RETENTION_DAYS", 90, minimum=1))

# How long a rotated API key keeps working beside its successor, unless the
# key or its organization says otherwise.
API_KEY_GRACE_PERIOD = env.seconds("API_KEY_GRACE_PERIOD_SECONDS", timedelta(days=7))

# How many organizations one person may own: creating more is refused (400).
MAX_ORGANIZATIONS_PER_USER = env.int("MAX_ORGANIZATIONS_PER_USER", 20, minimum=1)

# Provider credentials may reference their secret instead of storing it; OneFlow
# sends the value to the provider's base_url, so a reference must never reach
# OneFlow's own secrets (oneflow.lib.secrets): env:NAME only for variables starting
# with PROVIDER_SECRET_ENV_PREFIX or listed in PROVIDER_SECRET_ENV_ALLOWED (the
# demo catalog uses OPENAI_API_KEY); file:PATH only inside PROVIDER_SECRETS_DIR
# (symlinks and ".." resolved first; unset, file references are refused).
PROVIDER_SECRET_ENV_PREFIX = env.str("PROVIDER_SECRET_ENV_PREFIX", "ONEFLOW_PROVIDER_")
PROVIDER_SECRET_ENV_ALLOWED = env.list("PROVIDER_SECRET_ENV_ALLOWED", ["OPENAI_API_KEY"])
PROVIDER_SECRETS_DIR = env.str("PROVIDER_SECRETS_DIR", "")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.tokens.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["oneflow.lib.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "oneflow.lib.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Access tokens live 30 minutes, refresh tokens JWT_REFRESH_LIFETIME_SECONDS from
# sign-in: rotation blacklists the presented token and never extends the session
# past sign-in + that lifetime. A password change, reset or deactivation refuses
# every earlier token at its next use (accounts.tokens checks each token's stamp).
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=30),
    "REFRESH_TOKEN_LIFETIME": env.seconds("JWT_REFRESH_LIFETIME_SECONDS", timedelta(days=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "TOKEN_OBTAIN_SERIALIZER": "accounts.tokens.TokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "accounts.tokens.TokenRefreshSerializer",
}

RATELIMIT_VIEW = "oneflow.lib.errors.ratelimited_view"
# Brute-force limits (policy in accounts/throttle.py): attempts per client address
# (sign-in, sign-up, password reset; also per address asked for on sign-up and
# reset); failed sign-ins per account and client address; failed sign-ins per
# account from all addresses, past which each address that failed is refused.
# Failures never refuse an address that has not failed itself.
LOGIN_RATE = env.str("LOGIN_RATE", "10/m")
LOGIN_FAILURE_RATE = env.str("LOGIN_FAILURE_RATE", "10/15m")
LOGIN_ACCOUNT_FAILURE_RATE = env.str("LOGIN_ACCOUNT_FAILURE_RATE", "100/h")

SPECTACULAR_SETTINGS = {
    "TITLE": "OneFlow API",
    "DESCRIPTION": "The OneFlow AI gateway: the REST API (/api, JWT) for accounts, organizations, keys and billing, "
    "and the /v1 gateway (a OneFlow key) for OpenAI and Anthropic clients.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Ids in paths: at most 18 digits (oneflow.lib.converters), so always a valid bigint.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}},
    # The /v1 gateway is raw ASGI, invisible to drf-spectacular: routing.openapi adds it.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "routing.openapi.gateway_paths"],
}

# --- Security -----------------------------------------------------------------

# Anything larger is refused with 413 before Django reads it (oneflow.asgi).
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", 10 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Seconds a client gets to send its whole request body after its headers; a
# slower one gets 408 and the connection is closed (oneflow.asgi). Headers
# themselves are the proxy's to time out (deploy/README.md).
BODY_READ_TIMEOUT_SECONDS = float(env.decimal("BODY_READ_TIMEOUT_SECONDS", "30"))
# /metrics on the user-traffic port serves only the bearer of this token; without
# one it answers 404 in production (metrics have their own port there, METRICS_PORT
# in deploy/gunicorn.conf.py) and serves loopback peers only elsewhere.
METRICS_TOKEN = env.secret("METRICS_TOKEN")


def _project_version() -> str:
    try:
        return str(tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


# What oneflow_build_info states (docs/metrics.md); the image's build sets both.
ONEFLOW_VERSION = env.str("ONEFLOW_VERSION") or _project_version()
GIT_COMMIT = env.str("GIT_COMMIT", "unknown")
# The Celery queues whose depth /metrics reports (oneflow_celery_queue_depth).
METRICS_CELERY_QUEUES = env.list("METRICS_CELERY_QUEUES", ["celery"])

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
if PRODUCTION:
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Probes talk plain HTTP inside the cluster (/metrics is served outside Django).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    if env.bool("TRUST_X_FORWARDED_PROTO", default=True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Static files, i18n -------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
# Vendored front-end libraries and the dashboard's CSS (oneflow is no app, so
# the app-directories finder does not see oneflow/static).
STATICFILES_DIRS = [BASE_DIR / "oneflow" / "static"]
# Outside production whitenoise serves straight from the finders, so tests and
# `runserver` need no collectstatic; production serves the hashed, compressed
# copies (gzip and brotli) that collectstatic wrote, with far-future caching.
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns at start-up when it is missing
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

EMAIL_BACKEND = env.str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "OneFlow <noreply@oneflow.local>")

# --- Customer dashboard -------------------------------------------------------

LOGIN_URL = "signin"
LOGIN_REDIRECT_URL = "dashboard-overview"
LOGOUT_REDIRECT_URL = "signin"
# The overview warns when the balance falls below this many credits.
DASHBOARD_LOW_BALANCE_CREDITS = env.decimal("DASHBOARD_LOW_BALANCE_CREDITS", "5")
DASHBOARD_KEYS_PER_PAGE = 25

# --- Logging ------------------------------------------------------------------

LOG_LEVEL = env.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
# Levels per logger over LOG_LEVEL: "gateway=DEBUG,celery=WARNING,oneflow.access=WARNING".
LOG_LEVELS = logger_levels("LOG_LEVELS", env.str("LOG_LEVELS"))
# One line per /v1 call on the logger "oneflow.access" (gateway/access.py, docs/logging.md).
ACCESS_LOG = env.bool("ACCESS_LOG", default=True)
# Loggers that arrive with handlers of their own (Django's defaults: plain text on stderr;
# uvicorn's; gunicorn's inside a worker) give them up and propagate to the one handler,
# so that every line is JSON on stdout and passes the redaction filter.
_LOGGERS: dict[str, dict[str, object]] = {
    "django": {"handlers": [], "propagate": True},
    "django.server": {"handlers": [], "propagate": True},
    "django.db.backends": {"level": "INFO"},
    "uvicorn": {"handlers": [], "propagate": True},
    "uvicorn.error": {"handlers": [], "propagate": True},
    # Uvicorn's access log carries no request id and duplicates ours (oneflow.access).
    "uvicorn.access": {"handlers": [], "propagate": True, "level": "WARNING"},
    "gunicorn.error": {"handlers": [], "propagate": True},
    # A line per beat tick and per task run (every 2 s for the usage drain) is noise.
    "celery.beat": {"level": "WARNING"},
    "celery.app.trace": {"level": "WARNING"},
}
for _name, _level in LOG_LEVELS.items():
    _LOGGERS[_name] = {**_LOGGERS.get(_name, {"handlers": [], "propagate": True}), "level": _level}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "oneflow.lib.redact.RedactingFilter"}},
    "formatters": {"json": {"()": "oneflow.lib.jsonlog.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["redact"],
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": _LOGGERS,
}
