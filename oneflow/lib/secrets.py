"""Where secrets come from outside the environment.

Two sources, each with one rule:

- **Installation secrets** (``installation_secret``): a random value created once per
  installation in ``var/`` and read back at every start, so an embedded OneFlow never
  signs with a key that is printed in the source code.
- **Secret references** (``env:NAME``, ``file:/path``) of provider credentials: OneFlow
  sends their value to a host that staff chose, so a reference may only name a
  variable with the provider-secret prefix (or one listed explicitly) or a file inside
  the provider-secrets directory, never ``JWT_SIGNING_KEY`` or ``/etc/shadow``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# 64 url-safe bytes make ~86 characters: above SECRET_KEY's 50 and JWT's 32.
_INSTALLATION_SECRET_BYTES = 64


def installation_secret(path: Path) -> str:
    """The secret stored at ``path``, created on first use (mode 0600).

    Creation is atomic and the first writer wins: the value is written to a
    private temporary file, then hard-linked to ``path``, which fails if another
    process (a second worker starting at the same moment) got there first; that
    one's value is then read. A reader never sees a half-written file.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(_INSTALLATION_SECRET_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: read its value
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ValueError(f"{path} is empty: delete it to generate a new secret")
    return value


# --- Secret references --------------------------------------------------------------


class ReferenceRefused(Exception):
    """A reference that names a place OneFlow may not read, or that is unreadable.

    The message names the reference and the rule, never a value.
    """


# OneFlow's own secrets: never a provider's, whatever the prefix or the allowed list say.
_ONEFLOW_SECRETS = frozenset(
    {"SECRET_KEY", "JWT_SIGNING_KEY", "ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
)


@dataclass(frozen=True)
class ReferencePolicy:
    """What ``env:`` and ``file:`` references may name (settings PROVIDER_SECRET_*)."""

    env_prefix: str
    env_allowed: Collection[str]
    secrets_dir: Path | None

    def check(self, reference: str) -> None:
        """Raises ReferenceRefused unless the reference is allowed (it is not read)."""
        if reference.startswith("env:"):
            self._check_env(reference[4:])
        elif reference.startswith("file:"):
            self._resolved_file(reference[5:])
        else:
            raise ReferenceRefused("a reference is env:NAME or file:/path")

    def read(self, reference: str, environ: Mapping[str, str] | None = None) -> str:
        """The value the reference names, or ReferenceRefused (disallowed, missing or empty)."""
        self.check(reference)
        if reference.startswith("env:"):
            value = (os.environ if environ is None else environ).get(reference[4:], "")
        else:
            try:
                value = self._resolved_file(reference[5:]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ReferenceRefused(f"{reference}: cannot read the file ({type(exc).__name__})") from None
        if not value.strip():
            raise ReferenceRefused(f"{reference}: empty or not set")
        return value.strip()

    def _check_env(self, name: str) -> None:
        if not name:
            raise ReferenceRefused("env: needs a variable name")
        if name.removesuffix("_FILE") in _ONEFLOW_SECRETS:
            raise ReferenceRefused(f"env:{name} is one of OneFlow's own secrets")
        if name in self.env_allowed or (self.env_prefix and name.startswith(self.env_prefix)):
            return
        raise ReferenceRefused(
            f"env:{name} is not allowed: provider secrets must be variables starting with "
            f"{self.env_prefix!r} (PROVIDER_SECRET_ENV_PREFIX) or listed in PROVIDER_SECRET_ENV_ALLOWED"
        )

    def _resolved_file(self, raw: str) -> Path:
        """The real path (symlinks and ``..`` resolved), refused unless inside the secrets directory."""
        if self.secrets_dir is None:
            raise ReferenceRefused("file: references are disabled: set PROVIDER_SECRETS_DIR to allow them")
        if not raw or "\x00" in raw:
            raise ReferenceRefused("file: needs a path")
        root = self.secrets_dir.resolve()
        path = (root / raw).resolve()  # an absolute raw path replaces root
        if not path.is_relative_to(root) or path == root:
            raise ReferenceRefused(f"file:{raw} is outside PROVIDER_SECRETS_DIR ({root})")
        return path


def provider_reference_policy() -> ReferencePolicy:
    """The policy for provider credentials, from settings (read at each call: cheap)."""
    secrets_dir = settings.PROVIDER_SECRETS_DIR
    return ReferencePolicy(
        env_prefix=settings.PROVIDER_SECRET_ENV_PREFIX,
        env_allowed=frozenset(settings.PROVIDER_SECRET_ENV_ALLOWED),
        secrets_dir=Path(secrets_dir) if secrets_dir else None,
    )
