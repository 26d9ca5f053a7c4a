"""Settings come from the environment; production refuses unsafe values, naming each."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from oneflow.lib.env import Env

ROOT = Path(__file__).resolve().parent.parent
SAFE_PRODUCTION = {
    "ONEFLOW_ENV": "production",
    "SECRET_KEY": "p" * 30 + "roduction-secret-key-for-tests-0123456789",
    "JWT_SIGNING_KEY": "j" * 20 + "wt-signing-key-for-tests-0123456789",
    "ALLOWED_HOSTS": "gateway.example.com",
    "CORS_ALLOWED_ORIGINS": "https://app.example.com",
    "DEBUG": "false",
}


def run_django(extra_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Starts Django in a fresh process, as a server would, with only these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "JWT_", "ONEFLOW_", "DEBUG"))}
    env.update(extra_env)
    command = args or ("-c", "import django; django.setup(); print('started')")
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_production_with_safe_settings_starts() -> None:
    result = run_django(SAFE_PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"SECRET_KEY": "ab" * 40}, "SECRET_KEY"),
        ({"JWT_SIGNING_KEY": None}, "JWT_SIGNING_KEY"),
        ({"DEBUG": "true"}, "DEBUG"),
        ({"CORS_ALLOWED_ORIGINS": "https://app.example.com,*"}, "CORS_ALLOWED_ORIGINS"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_each_unsafe_setting_by_name(override: dict[str, str | None], named: str) -> None:
    env = {**SAFE_PRODUCTION, **override}
    result = run_django({k: v for k, v in env.items() if v is not None})
    assert result.returncode != 0
    assert "refusing to start in production" in result.stderr
    assert named in result.stderr


def test_check_deploy_reports_no_warnings_in_production() -> None:
    result = run_django(SAFE_PRODUCTION, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret_key"
    secret_file.write_text("s" * 60 + "\n")
    env = Env({"SECRET_KEY_FILE": str(secret_file)})
    assert env.secret("SECRET_KEY") == "s" * 60
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY_FILE: cannot read"):
        Env({"SECRET_KEY_FILE": str(tmp_path / "missing")}).secret("SECRET_KEY")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        Env({"SECRET_KEY": "x", "SECRET_KEY_FILE": str(secret_file)}).secret("SECRET_KEY")


@pytest.mark.parametrize(
    ("environ", "read", "message"),
    [
        ({"DEBUG": "maybe"}, lambda e: e.bool("DEBUG"), "DEBUG must be a boolean"),
        ({"DB_POOL_MAX": "ten"}, lambda e: e.int("DB_POOL_MAX", 10), "DB_POOL_MAX must be an integer"),
        ({"DB_POOL_MAX": "0"}, lambda e: e.int("DB_POOL_MAX", 10, minimum=1), "at least 1"),
        ({"ONEFLOW_ENV": "prod"}, lambda e: e.choice("ONEFLOW_ENV", ("development", "production"), "x"), "one of"),
    ],
)
def test_bad_values_fail_loudly_naming_the_variable(environ: dict, read, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        read(Env(environ))


def test_a_bad_value_stops_start_up() -> None:
    result = run_django({"DEBUG": "yes please"})
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_values_parse() -> None:
    env = Env({"A": "x, y ,,z", "B": "On", "C": "90"})
    assert env.list("A") == ["x", "y", "z"]
    assert env.bool("B") is True
    assert env.seconds("C", timedelta(0)) == timedelta(seconds=90)
    assert env.int("MISSING", 7) == 7
