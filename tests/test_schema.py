"""The OpenAPI schema validates, and its UIs are served without any CDN."""

from __future__ import annotations

import re

from django.core.management import call_command
from django.test import Client


def test_the_schema_validates_without_warnings(tmp_path) -> None:
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = target.read_text()
    assert "/api/organizations/{org_id}/keys/{key_id}/rotate" in schema
    assert "/v1/chat/completions" in schema and "/v1/messages" in schema  # the gateway, beside it


def assets_of(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


def test_swagger_ui_and_redoc_load_only_local_assets(client: Client) -> None:
    for path in ("/api/docs", "/api/redoc"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assets = assets_of(html)
        assert assets, path
        for asset in assets:
            assert asset.startswith("/"), f"{path} loads {asset}"
            if asset.startswith("/static/"):
                assert client.get(asset).status_code == 200, asset


def test_swagger_ui_runs_no_inline_script_so_the_csp_holds(client: Client) -> None:
    html = client.get("/api/docs").content.decode()
    inline = [s for s in re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S) if "src=" not in s[0]]
    assert [body for _, body in inline if body.strip()] == []
