"""Command line: `hybrid-router serve | bench | --version`. uvloop is installed here and nowhere else."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from router import __version__
from router.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from router.server import Server


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":  # the harness has its own argument parser
        from router.bench.cli import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="hybrid-router", description="Hybrid local/frontier inference router.")
    parser.add_argument("--version", action="version", version=f"hybrid-router {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the router")
    serve.add_argument("--config", help="YAML configuration file (default: the embedded local model)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080)")
    sub.add_parser("bench", help="load-test an OpenAI-compatible endpoint (see `hybrid-router bench --help`)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"hybrid-router: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        server = settings.server.model_copy(
            update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        )
        settings = settings.model_copy(update={"server": server})
        return serve_forever(settings)
    return 2


def serve_forever(settings: Settings) -> int:
    import uvloop

    logging.basicConfig(
        level=settings.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return uvloop.run(_serve(settings))
    except KeyboardInterrupt:
        return 0


async def _serve(settings: Settings) -> int:
    from router.server import Server

    server = Server(settings)
    try:
        await server.start()
    except OSError as exc:
        print(f"hybrid-router: cannot listen on {settings.server.host}:{settings.server.port}: {exc}", file=sys.stderr)
        return 1
    for name, why in server.failures.items():
        print(f"hybrid-router: model {name} failed to start: {why}", file=sys.stderr)
    print(f"hybrid-router {__version__} serving on {server.base_url}  ·  {_describe_models(server)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0


def _describe_models(server: Server) -> str:
    from router.app import REGISTRY

    engines = server.app[REGISTRY].engines
    parts = []
    for m in server.settings.models:
        where = getattr(engines[m.name], "model_path", None) or m.base_url or m.path or ""
        parts.append(f"{m.name} (engine {m.engine}: {where})")
    return f"models: {', '.join(parts)}  ·  local default: {server.settings.local_model}"


if __name__ == "__main__":
    raise SystemExit(main())
