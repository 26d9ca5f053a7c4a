"""A recording pass-through: serves on loopback, records each request as the client sent it
(``tap.requests``), and forwards it to ``target``, streaming the answer back unchanged.

Put in front of OneFlow, it shows what a client (Claude Code, Codex CLI) really sent, so a
test can compare it with what the fake upstream behind OneFlow received.

    with FakeUpstream(app=tap_app(gateway_url)) as tap:
        ...  # point the client at tap.url
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

from tests.fakes.common import STATE, UpstreamState, record

# Hop-by-hop, and what aiohttp sets again itself on each side.
_NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "accept-encoding"}
_NOT_RETURNED = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


def tap_app(target: str) -> Callable[[UpstreamState], web.Application]:
    def build(state: UpstreamState) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[STATE] = state

        async def forward(request: web.Request) -> web.StreamResponse:
            await record(request)
            headers = {name: value for name, value in request.headers.items() if name.lower() not in _NOT_FORWARDED}
            timeout = aiohttp.ClientTimeout(total=120)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(
                    request.method, target + request.path_qs, data=await request.read(), headers=headers
                ) as upstream,
            ):
                kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_RETURNED}
                response = web.StreamResponse(status=upstream.status, headers=kept)
                await response.prepare(request)
                async for piece in upstream.content.iter_any():
                    await response.write(piece)
                await response.write_eof()
                return response

        app.router.add_route("*", "/{tail:.*}", forward)
        return app

    return build
