"""Command line: `hybrid-router serve | bench | --version`. uvloop is installed here and nowhere else."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, TextIO

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
    serve.add_argument("--workers", type=int, help="server processes sharing the port (default server.workers, 1)")
    sub.add_parser("bench", help="load-test an OpenAI-compatible endpoint (see `hybrid-router bench --help`)")
    route = sub.add_parser("route", help="print the routing decision for a prompt, without running any model")
    route.add_argument("prompt", nargs="?", help="the user prompt (or use --file)")
    route.add_argument("--file", help="a chat completion request body (JSON)")
    route.add_argument("--config", help="YAML configuration file")
    route.add_argument("--model", default="auto", help="model or alias (default: auto)")
    route.add_argument("--task", help="task hint, as metadata.task")
    route.add_argument("--quality", help="quality hint: low | standard | high")
    calibrate = sub.add_parser("calibrate", help="pick the learned router's threshold for a target on your traffic")
    source = calibrate.add_mutually_exclusive_group()
    source.add_argument("--data", help='JSON lines: {"prompt"} or {"messages"}, optional "label": local|frontier')
    source.add_argument("--ledger", help="the ledger (default: accounting.ledger_path of --config)")
    calibrate.add_argument("--config", help="YAML configuration file (model, prices, ledger)")
    target = calibrate.add_mutually_exclusive_group(required=True)
    target.add_argument("--frontier-share", type=float, help="at most this fraction of requests to the frontier")
    target.add_argument("--max-cost-per-1k", type=float, help="estimated frontier USD per 1,000 requests, at most")
    target.add_argument("--min-recall", type=float, help="labelled data: frontier-labelled share kept on frontier")
    calibrate.add_argument(
        "--completion-tokens", type=int, default=400, help="--data: assumed answer length for costs (default 400)"
    )
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    add = keys_sub.add_parser("add", help="create a key for a tenant; the key is printed once")
    add.add_argument("--tenant", required=True)
    add.add_argument("--name", default="", help="a label for the key")
    add.add_argument("--keys-file", help="keys file (default: auth.keys_file of --config)")
    add.add_argument("--config", help="YAML configuration file")
    usage = sub.add_parser("usage", help="per-task cost table from the ledger")
    usage.add_argument("--config", help="YAML configuration file (for accounting.ledger_path)")
    usage.add_argument("--ledger", help="ledger file (default: from the config)")
    for flag in ("--tenant", "--workflow", "--task", "--since", "--until"):
        usage.add_argument(flag)
    usage.add_argument("--json", action="store_true", help="print JSON instead of a table")
    drain = sub.add_parser("ledger-drain", help="copy the shared ledger (state.url: redis://) into the SQL ledger")
    drain.add_argument("--config", help="YAML configuration file (state.url, accounting.ledger_path)")
    drain.add_argument("--ledger", help="SQL ledger file (default: accounting.ledger_path of --config)")
    drain.add_argument("--once", action="store_true", help="drain what is there now and exit (else: run until killed)")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        return _calibrate(args)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"hybrid-router: {exc}", file=sys.stderr)
        return 2
    if args.command == "route":
        return _route(args, settings)
    if args.command == "keys":
        return _keys_add(args, settings)
    if args.command == "usage":
        return _usage(args, settings)
    if args.command == "ledger-drain":
        return _ledger_drain(args, settings)
    if args.command == "serve":
        server = settings.server.model_copy(
            update={
                k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v is not None
            }
        )
        settings = settings.model_copy(update={"server": server})
        return serve_forever(settings)
    return 2


def _route(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from router.errors import RouterError
    from router.http.openai import parse_chat_request, parse_json
    from router.routing.policy import RoutingPolicy

    try:
        if args.file:
            with open(args.file, "rb") as fh:
                body = parse_json(fh.read())
        elif args.prompt is not None:
            body = {"messages": [{"role": "user", "content": args.prompt}]}
        else:
            print("hybrid-router route: give a prompt or --file", file=sys.stderr)
            return 2
        body.setdefault("model", args.model)
        metadata = body.setdefault("metadata", {})
        if isinstance(metadata, dict):
            metadata.update({k: v for k, v in (("task", args.task), ("quality", args.quality)) if v})
        request = parse_chat_request(body)
        # The frontier models the config names, as the server sees them (no provider is started for a dry run).
        policy = RoutingPolicy(settings, frontier_models=tuple(m.name for m in settings.frontier.models))
        decision = policy.decide(request)
    except OSError as exc:
        print(f"hybrid-router route: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except RouterError as exc:
        print(f"hybrid-router route: {exc.message}", file=sys.stderr)
        return 2
    out = {**decision.as_dict(), "features": policy.explain(request)}
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import orjson

    from router.routing import learned
    from router.routing.calibrate import CalibrationError, calibrate, sample_from_jsonl, sample_from_ledger

    try:
        settings = load_settings(args.config) if args.config else Settings()
        model = learned.shared(settings.routing.model_file or str(learned.DEFAULT_MODEL))
        acc = settings.accounting
        if args.data:
            sample = sample_from_jsonl(
                args.data, model, acc.reference_input_per_mtok, acc.reference_output_per_mtok, args.completion_tokens
            )
        elif args.ledger or acc.ledger_path:
            sample = sample_from_ledger(args.ledger or acc.ledger_path)
        else:
            raise CalibrationError("give --data, --ledger, or a --config with accounting.ledger_path")
        result = calibrate(sample, args.frontier_share, args.max_cost_per_1k, args.min_recall)
    except (OSError, ConfigError, CalibrationError, ValueError) as exc:
        print(f"hybrid-router calibrate: {exc}", file=sys.stderr)
        return 2
    print(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode())
    return 0


def _keys_add(args: argparse.Namespace, settings: Settings) -> int:
    from router.accounting.keys import append_key, new_key

    path = args.keys_file or settings.auth.keys_file
    if not path:
        print("hybrid-router keys add: give --keys-file or set auth.keys_file in --config", file=sys.stderr)
        return 2
    key, stored = new_key(args.tenant, args.name)
    try:
        append_key(path, stored)
    except (OSError, ValueError) as exc:
        print(f"hybrid-router keys add: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(f"key {stored.id} for tenant {args.tenant!r} added to {path}; it is shown only now", file=sys.stderr)
    return 0


def _usage(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from router.accounting.ledger import Ledger
    from router.accounting.service import ledger_path

    path = args.ledger or ledger_path(settings)
    if not path:
        print("hybrid-router usage: the ledger is off (accounting.ledger_path: '')", file=sys.stderr)
        return 2

    def when(raw: str | None) -> float | None:
        if raw is None:
            return None
        from datetime import datetime

        try:
            return float(raw)
        except ValueError:
            return datetime.fromisoformat(raw).timestamp()

    rows = Ledger(path).usage(args.tenant, args.workflow, args.task, when(args.since), when(args.until))
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    head = f"{'task':<15}{'requests':>9}{'local':>7}{'front.':>7}{'cache':>7}{'escal.':>7}{'tokens':>10}"
    head += f"{'cost $':>11}{'all-frontier $':>16}{'saved $':>11}"
    print(head)
    for r in rows:
        tokens = (r["prompt_tokens"] or 0) + (r["completion_tokens"] or 0)
        cost = (r["cost_usd"] or 0) + (r["local_cost_usd"] or 0)
        print(
            f"{r['task'] or '-':<15}{r['requests']:>9}{r['local']:>7}{r['frontier']:>7}{r['cache_hits']:>7}"
            f"{r['escalations']:>7}{tokens:>10}{cost:>11.4f}{r['counterfactual_usd'] or 0:>16.4f}"
            f"{r['saved_usd'] or 0:>11.4f}"
        )
    return 0


def _ledger_drain(args: argparse.Namespace, settings: Settings) -> int:
    """One drainer (by a lock in Redis): rows are committed to SQLite before they are acknowledged."""
    import asyncio

    from router.accounting.service import ledger_path
    from router.state.connect import ledger_drainer

    path = args.ledger or ledger_path(settings)
    if settings.state.url == "memory" or not path:
        print("hybrid-router ledger-drain: needs state.url: redis://… and a ledger path", file=sys.stderr)
        return 2

    async def run() -> int:
        drainer = ledger_drainer(settings.state, path, settings.accounting.retention_days, None)
        try:
            if not await drainer.take_lock():
                print("hybrid-router ledger-drain: another drainer holds the lock", file=sys.stderr)
                return 1
            if args.once:
                await drainer.drain_all()
            else:
                await drainer.run_forever()
        finally:
            await drainer.aclose()
        print(f"hybrid-router ledger-drain: {drainer.written} rows written to {path}", file=sys.stderr)
        return 0

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 0


def serve_forever(settings: Settings) -> int:
    if settings.server.workers > 1:
        from router.workers import serve_workers

        return serve_workers(settings, _serve_one)
    return _serve_one(settings)


def _serve_one(settings: Settings) -> int:
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
    for line in _loading(settings):
        _say(line, sys.stderr)
    started = time.monotonic()
    try:
        await server.start()
    except OSError as exc:
        _say(f"hybrid-router: cannot listen on {settings.server.host}:{settings.server.port}: {exc}", sys.stderr)
        return 1
    for name, why in server.failures.items():
        _say(f"hybrid-router: model {name} failed to start: {why}", sys.stderr)
    _say(f"hybrid-router {__version__} serving on {server.base_url}  ·  {_describe_models(server)}", sys.stdout)
    url = server.base_url
    _say(
        f"hybrid-router: ready in {time.monotonic() - started:.1f} s\n"
        f"  API        {url}/v1  (OpenAI /v1/chat/completions, Anthropic /v1/messages, /v1/embeddings)\n"
        f"  dashboard  {url}/dashboard\n"
        f"  metrics    {url}/metrics{'' if settings.auth.metrics_public else '  (admin key or scrape token)'}\n"
        f"  health     {url}/readyz",
        sys.stderr,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0


def _say(text: str, stream: TextIO) -> None:
    """Write `text` and its newline in one write: `print` makes two, and `--workers` processes share the stream
    (with PYTHONUNBUFFERED each write is a syscall, so two workers' lines would interleave)."""
    stream.write(text + "\n")
    stream.flush()


def _loading(settings: Settings) -> list[str]:
    """What start-up is about to load, with file sizes: a big model takes a while, so say so first."""
    from router.engines.embedded import default_chat_model

    lines = []
    for m in settings.models:
        if m.engine == "openai_http":
            lines.append(f"hybrid-router: model {m.name}: remote engine at {m.base_url}")
            continue
        where = m.path or (str(default_chat_model()) if m.engine == "llamacpp" else "")
        size = ""
        if where and os.path.isfile(where):
            size = f", {os.path.getsize(where) / 2**20:,.0f} MiB"
        lines.append(f"hybrid-router: loading model {m.name} (engine {m.engine}: {where or 'default'}{size}) ...")
    if settings.embeddings.enabled:
        lines.append("hybrid-router: loading the embedding model (all-MiniLM-L6-v2 int8, ONNX) ...")
    return lines


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
