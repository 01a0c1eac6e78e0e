"""The floor of the design card's stack: the least an aiohttp-on-uvloop gateway can do per request.

It reads the body, decodes it with orjson, sets the upstream model, encodes it again, sends it to the upstream over
a pooled aiohttp client session (the router's engine settings) and relays the answer: the whole body, or the SSE
bytes as they arrive. No validation, routing, limits, metrics or accounting. `gateway_overhead.py --floor` measures
it in the same run as the router: router − floor is what the router's own work costs, and floor − direct is what
the stack (aiohttp server + aiohttp client + two loopback hops) costs before any router code runs.

    python benchmarks/floor_proxy.py --port 8090 --upstream http://127.0.0.1:8001/v1
"""

from __future__ import annotations

import argparse

import aiohttp
import orjson
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    body["model"] = "mock"
    stream = bool(body.get("stream"))
    url = request.app[UPSTREAM] + "/chat/completions"
    headers = {"content-type": "application/json"}
    async with request.app[SESSION].post(url, data=orjson.dumps(body), headers=headers) as upstream:
        if not stream:
            return web.Response(body=await upstream.read(), status=upstream.status, content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await response.prepare(request)
        async for data in upstream.content.iter_any():
            await response.write(data)
        await response.write_eof()
        return response


async def ready(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _session(app: web.Application):  # type: ignore[no-untyped-def]
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
    app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    yield
    await app[SESSION].close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="the upstream's /v1 base URL")
    args = p.parse_args()
    app = web.Application()
    app[UPSTREAM] = args.upstream.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/readyz", ready)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
